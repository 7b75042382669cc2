"""``ase-mlgen logan train|generate``: train a LoGAN (or an ensemble) and generate structures.

    ase-mlgen logan train DATA.extxyz --composition C5H12O --out runs/logan1 [--ensemble K]
                          [--members JSON|@FILE] [--epochs N] [--cell a b c | --cell 9 numbers]
                          [--background] [--resume]
    ase-mlgen logan generate MODEL -n 1000 -o out.extxyz [--select k] [--seed S]

MODEL is a model file, an ensemble directory or a finished run directory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _cell(values):
    if values is None:
        return None
    if len(values) == 3:
        return [float(v) for v in values]
    if len(values) == 9:
        return [[float(v) for v in values[i:i + 3]] for i in (0, 3, 6)]
    raise ValueError("--cell takes 3 lengths or 9 numbers (a 3x3 matrix, row by row)")


def run_train(args: argparse.Namespace) -> int:
    from ase_mlgen.generators.logan.training import read_variations, train

    params = {}
    for key in ("epochs", "batch_size", "r_cut", "n_max", "max_neighbours", "radial",
                "lr_generator", "lr_critic", "device", "snapshot_every", "snapshot_start",
                "penalty_mode", "penalty_weight", "cell_margin", "repulsion",
                "repulsion_scale", "rattle"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    variations, n_models = None, args.ensemble
    if args.members:
        variations = read_variations(args.members)
        n_models = args.ensemble if args.ensemble > 1 else len(variations)
    job = train(args.data, args.composition, _cell(args.cell), run_dir=args.out,
                n_models=n_models, random_state=args.seed, variations=variations,
                background=args.background, resume=args.resume, threads=args.threads, **params)
    if args.background:
        print(f"training in the background: run {job.run_dir.path} (pid {job.pid}); "
              f"follow it with: ase-mlgen status {job.run_dir.path}")
        return 0
    status = job.status()
    print(json.dumps({"run": str(job.run_dir.path), "state": status["state"],
                      "result": job.run_dir.read_result()}, indent=2, default=str))
    return 0 if status["state"] == "done" else 1


def _pairs(text: str | None, what: str) -> dict:
    """``"Si=4,O=2"`` → ``{"Si": 4, "O": 2}``; ``"Si-O=2.0"`` → ``{("Si", "O"): 2.0}``."""
    out: dict = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--{what}: expected KEY=VALUE items separated by commas, "
                             f"got {item!r}")
        if what == "bonds":
            a, dash, b = key.partition("-")
            if not dash:
                raise ValueError(f"--bonds: a pair is written A-B, got {key!r}")
            out[(a.strip(), b.strip())] = float(value)
        else:
            out[key.strip()] = int(value)
    return out


def _coordination_preference(coordination: str | None, bonds: str | None,
                             margin: float = 0.0):
    """``prefer`` for :func:`representatives`: the coordination defects of a structure
    (borderline contacts within ``margin`` Å of a cutoff counted as defects), or None when
    ``--coordination`` was not given."""
    if not coordination:
        if bonds:
            raise ValueError("--bonds only counts with --coordination")
        return None
    from ase_mlgen.structures.coordination import coordination_defects

    ideal = _pairs(coordination, "coordination")
    cutoffs = _pairs(bonds, "bonds")
    if not cutoffs:
        raise ValueError("--coordination needs --bonds, e.g. --bonds Si-O=2.0")

    def prefer(atoms):
        return coordination_defects(atoms, ideal, cutoffs, margin)

    return prefer


def run_generate(args: argparse.Namespace) -> int:
    from ase.io import write

    from ase_mlgen.generators.logan.training import load_model

    model = load_model(args.model, device=args.device)
    t0 = time.perf_counter()
    images = model.generate(args.n, random_state=args.seed, snapshots=args.snapshots)
    t_gen = time.perf_counter() - t0
    info = {"model": str(args.model), "composition": model.formula, "generated": len(images),
            "generate_seconds": round(t_gen, 3)}
    if args.rebuild_hydrogens and not args.molecules:
        raise ValueError("--rebuild-hydrogens works on the skeleton picks of --molecules")
    if args.molecules and not args.select:
        raise ValueError("--molecules chooses the --select K structures; give --select")
    if args.select:
        from ase_mlgen.select import molecule_representatives, representatives

        t0 = time.perf_counter()
        md = args.min_distance
        min_distance = "covalent" if md is None else (None if md <= 0 else md)
        prefer = _coordination_preference(args.coordination, args.bonds, args.bond_margin)
        if args.molecules:
            if prefer is not None or md is not None:
                raise ValueError("--molecules chooses by bond graph; it takes neither "
                                 "--coordination nor --min-distance")
            images, chosen = molecule_representatives(images, args.select,
                                                      random_state=args.seed, return_info=True,
                                                      rebuild=args.rebuild_hydrogens)
            info["molecule_filter"] = chosen
        else:
            images = representatives(images, args.select, random_state=args.seed,
                                     min_distance=min_distance, prefer=prefer)
        info.update({"selected": len(images), "select_seconds": round(time.perf_counter() - t0, 3)})
        if not images:
            why = ("no generated structure is one plausible molecule; train longer"
                   if args.molecules else
                   "every generated structure had overlapping atoms; train longer or pass "
                   "--min-distance 0")
            print(f"ase-mlgen logan generate: {why}", file=sys.stderr)
            return 1
    write(args.output, images, format="extxyz")
    info["output"] = str(args.output)
    print(json.dumps(info))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("logan", help="LoGAN: train a local-environment WGAN, generate "
                                            "molecules or crystals")
    sub = p.add_subparsers(dest="logan_command", metavar="ACTION")

    t = sub.add_parser("train", help="train a LoGAN (or an ensemble) on structures")
    t.add_argument("data", help="training structures (any file ASE reads, e.g. extxyz)")
    t.add_argument("--composition", help="target composition, e.g. C5H12O (default: the "
                                         "training composition when there is only one)")
    t.add_argument("--cell", nargs="+", help="target cell (crystals) or box (molecules): 3 "
                                             "lengths or 9 numbers")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K models with different seeds and descriptor settings")
    t.add_argument("--members", metavar="JSON|@FILE",
                   help="per-member settings of an ensemble: a JSON list of objects (LoGAN "
                        "parameters and random_state, over the other options), or @FILE; "
                        "one member per entry unless --ensemble K says otherwise")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--r-cut", dest="r_cut", type=float)
    t.add_argument("--n-max", dest="n_max", type=int)
    t.add_argument("--max-neighbours", dest="max_neighbours", type=int)
    t.add_argument("--radial", choices=["bessel", "gaussian"])
    t.add_argument("--rattle", type=int,
                   help="rattled copies of each training structure in the pools (default 20)")
    t.add_argument("--lr-generator", dest="lr_generator", type=float)
    t.add_argument("--lr-critic", dest="lr_critic", type=float)
    t.add_argument("--snapshot-every", dest="snapshot_every", type=int,
                   help="keep the generator every N epochs (generate --snapshots samples them)")
    t.add_argument("--snapshot-start", dest="snapshot_start", type=int,
                   help="first epoch whose snapshot is kept")
    t.add_argument("--penalty-mode", dest="penalty_mode", choices=["separate", "joint"],
                   help="separate penalty steps (paper's code) or in every critic step")
    t.add_argument("--penalty-weight", dest="penalty_weight", type=float)
    t.add_argument("--cell-margin", dest="cell_margin", type=float,
                   help="crystals: fractional coordinates span (-m, 1+m) and are wrapped "
                        "(default 0.5; 0 = the paper's sigmoid into the cell)")
    t.add_argument("--repulsion", type=float,
                   help="weight of the generator's penalty on contacts shorter than "
                        "--repulsion-scale x the shortest training distance of each species "
                        "pair (default 0: the paper's loss)")
    t.add_argument("--repulsion-scale", dest="repulsion_scale", type=float,
                   help="fraction of the shortest training pair distance (default 0.9)")
    t.add_argument("--device", help="auto (default), cpu or cuda")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--background", action="store_true", help="return at once; see "
                                                             "'ase-mlgen status RUN'")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run; with a larger --epochs, finished members "
                        "train on")
    t.set_defaults(func=run_train)

    g = sub.add_parser("generate", help="generate structures with a trained LoGAN")
    g.add_argument("model", help="model file, ensemble directory or finished run directory")
    g.add_argument("-n", type=int, default=1000, help="number of structures (default 1000)")
    g.add_argument("-o", "--output", required=True, help="output file (extxyz)")
    g.add_argument("--select", type=int, metavar="K",
                   help="keep K representatives (PCA + k-means, overlapping atoms dropped)")
    g.add_argument("--min-distance", dest="min_distance", type=float,
                   help="with --select: drop structures with atoms closer than this (Å); "
                        "default 0.5 x the sum of covalent radii; 0 keeps all")
    g.add_argument("--coordination", metavar="EL=N,...",
                   help="with --select: prefer structures in which every atom has this "
                        "coordination, e.g. Si=4,O=2 (the fewest defects when too few do)")
    g.add_argument("--bonds", metavar="A-B=R,...",
                   help="with --coordination: bonded pairs and their cut-offs in Å, "
                        "e.g. Si-O=2.0")
    g.add_argument("--bond-margin", type=float, default=0.0, metavar="Å",
                   help="with --coordination: a contact within this distance of its cut-off "
                        "counts as a defect (borderline bonds break or form on relaxation), "
                        "e.g. 0.1")
    g.add_argument("--molecules", action="store_true",
                   help="with --select: choose molecules by their unrelaxed bond graphs (one "
                        "per valid molecule, then one per new heavy-atom skeleton, then PCA + "
                        "k-means among plausible others)")
    g.add_argument("--rebuild-hydrogens", dest="rebuild_hydrogens", action="store_true",
                   help="with --molecules: put the hydrogens of each skeleton pick back on its "
                        "heavy-atom skeleton, so that a relaxation keeps the skeleton")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--snapshots", action="store_true",
                   help="sample all generator snapshots kept in training, not only the last")
    g.add_argument("--device", default=None)
    g.set_defaults(func=run_generate)

    def _help(args):
        p.print_help()
        return 1

    p.set_defaults(func=_help)
