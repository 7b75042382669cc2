"""``ase-mlgen ding train|generate|walk``: compositions with target properties (DING).

    ase-mlgen ding train CSV --out runs/ding1 [--background] [--resume] [--epochs N] [--vae]
    ase-mlgen ding generate MODEL --delta-e -2.0 --energy-pa -6.5 --volume-pa 12 -n 1000
                                  [--out file.csv] [--tol-delta-e 0.2 ...] [--novel-only]
                                  [--latent posterior|prior] [--sampling argmax|categorical]
                                  [--min-elements 2] [--guidance 0.5]
    ase-mlgen ding walk MODEL Ba1Pt1U1 Fe2O3 [--steps 11]

MODEL is a model file (``DING.save``) or a finished run directory. Units: eV/atom for
``delta_e`` and ``energy_pa``, Å³/atom for ``volume_pa``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _load(path, device):
    from ase_mlgen.ding.model import DING

    return DING.load(path, device=device)


def run_generate(args: argparse.Namespace) -> int:
    model = _load(args.model, args.device)
    tolerance = {p: getattr(args, f"tol_{p}") for p in ("delta_e", "energy_pa", "volume_pa")
                 if getattr(args, f"tol_{p}") is not None}
    t0 = time.perf_counter()
    cands = model.generate(args.n, delta_e=args.delta_e, energy_pa=args.energy_pa,
                           volume_pa=args.volume_pa, tolerance=tolerance or None,
                           novel_only=args.novel_only, random_state=args.seed,
                           temperature=args.temperature,
                           **{k: getattr(args, k) for k in ("latent", "sampling",
                                                             "decode_temperature",
                                                             "min_elements", "guidance")
                              if getattr(args, k) is not None})
    info = {"model": str(args.model), "generated": len(cands),
            "novel_fraction": cands.fraction_novel() if cands else None,
            "seconds": round(time.perf_counter() - t0, 3)}
    if args.out:
        cands.write_csv(args.out)
        info["output"] = str(args.out)
        print(json.dumps(info))
    else:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.csv"
            cands.write_csv(path)
            sys.stdout.write(path.read_text())
        print(json.dumps(info), file=sys.stderr)
    return 0


def run_walk(args: argparse.Namespace) -> int:
    model = _load(args.model, args.device)
    cands = model.walk(args.start, args.end, steps=args.steps, unique=args.unique)
    for c in cands:
        props = " ".join(f"{k}={v:.3f}" for k, v in c.properties.items())
        print(f"{c.info['step']:3d}  t={c.info['t']:.2f}  {c.format():16s} {props}")
    return 0


def register(subparsers) -> None:
    from ase_mlgen.ding.cli_hooks import add_train_arguments

    p = subparsers.add_parser("ding", help="DING: generate compositions with target formation "
                                           "enthalpy, energy and volume per atom")
    sub = p.add_subparsers(dest="ding_command", metavar="ACTION")

    t = sub.add_parser("train", help="train DING on an OQMD CSV (same as 'ase-mlgen train ding')")
    add_train_arguments(t)

    g = sub.add_parser("generate", help="generate unique compositions for target properties")
    g.add_argument("model", help="model file or finished run directory")
    g.add_argument("--delta-e", type=float, help="formation enthalpy target, eV/atom")
    g.add_argument("--energy-pa", type=float, help="energy per atom target, eV/atom")
    g.add_argument("--volume-pa", type=float, help="volume per atom target, Å³/atom")
    g.add_argument("-n", type=int, default=1000, help="number of unique compositions")
    g.add_argument("--out", "-o", help="CSV file (default: CSV on stdout)")
    for prop, unit in (("delta-e", "eV/atom"), ("energy-pa", "eV/atom"),
                       ("volume-pa", "Å³/atom")):
        g.add_argument(f"--tol-{prop}", type=float, dest=f"tol_{prop.replace('-', '_')}",
                       help=f"keep only candidates predicted within this of the target ({unit})")
    g.add_argument("--novel-only", action="store_true", help="drop training compositions")
    g.add_argument("--temperature", type=float, default=1.0, help="latent sampling spread")
    g.add_argument("--latent", choices=("prior", "posterior"), default=None,
                   help="latent points from N(0, T^2) or the training compositions' "
                        "posteriors (default: DING.generate's)")
    g.add_argument("--sampling", choices=("argmax", "categorical"), default=None,
                   help="decode each element by argmax or by sampling its softmax "
                        "(default: DING.generate's)")
    g.add_argument("--decode-temperature", type=float, default=None,
                   help="softmax temperature of categorical decoding")
    g.add_argument("--guidance", type=float, default=None,
                   help="strengthen the targets' effect on a CVAE's decoding (classifier-free "
                        "guidance against the training mean; default: DING.generate's, 0.5 "
                        "for a CVAE)")
    g.add_argument("--min-elements", type=int, default=None,
                   help="fewest different elements of a valid composition (default 2: "
                        "compounds; 1: any composition with atoms)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None)
    g.set_defaults(func=run_generate)

    w = sub.add_parser("walk", help="latent walk between two compositions (paper Fig. 9)")
    w.add_argument("model")
    w.add_argument("start", help="e.g. Ba1Pt1U1")
    w.add_argument("end")
    w.add_argument("--steps", type=int, default=11)
    w.add_argument("--unique", action="store_true", help="drop consecutive repeats")
    w.add_argument("--device", default=None)
    w.set_defaults(func=run_walk)

    def _help(args):
        p.print_help()
        return 1

    p.set_defaults(func=_help)
