"""LoGAN benchmark: C5H12O isomers from C4H10O/C6H14O training molecules (and, optionally, a
scaled-down SiO2 crystal experiment).

    nice -n 10 python bench/logan.py [--data ../shared/data/logan] [--models 4] [--epochs 1500]
                                     [--sio2 mp-546546] [--out bench/results]

C5H12O: an ensemble of LoGAN models is trained (as background jobs, two at a time, one CPU
thread each) on the 39 QM9 molecules of composition C4H10O and C6H14O; each member generates
``--per-model`` structures; for each k in 14…50 the union is filtered to k representatives
(PCA + k-means), those are relaxed with GFN2-xTB (tblite) through ``relax_many``, and the distinct
C5H12O constitutional isomers (bond-graph isomorphism; 14 exist: 8 alcohols, 6 ethers) are
counted. Relaxations of a structure picked for several k are done once.

SiO2 (``--sio2 TARGET ...``): train on the polymorphs in ``mp-TARGET_training.extxyz`` except
the held-back target (the file's last structure), generate the target's atom count in its cell,
filter ``--sio2-k`` candidates, relax them and an equal number of random structures (atoms no
closer than 0.9 × the shortest training distance) the same way, and report the lowest and median
energies, space groups and coordination numbers.

Writes ``logan.json`` and ``logan_pca.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _relax_one(job):
    """Fallback relaxation of one structure (BFGS) when ase_mlgen.search.relax is absent."""
    atoms, spec, fmax, steps = job
    from ase.optimize import BFGS

    from ase_mlgen.calculators.specs import CalculatorSpec

    atoms = atoms.copy()
    if not atoms.pbc.any():
        atoms.set_cell(np.zeros((3, 3)))
    try:
        atoms.calc = CalculatorSpec(spec)()
        BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)
        energy = float(atoms.get_potential_energy())
    except Exception:  # noqa: BLE001 - SCF failures of wild structures count as failed
        return None, None
    atoms.calc = None
    return atoms, energy


RELAX_BACKEND = {"name": None}


def _relax(images, calculator, fmax, steps, workers):
    """Relax through ase_mlgen.search.relax.relax_many when it exists, else a process pool of
    BFGS runs; returns one (atoms or None, energy or None) per structure."""
    try:
        from ase_mlgen.search.relax import relax_many
    except ImportError:
        relax_many = None
    if relax_many is not None:
        RELAX_BACKEND["name"] = "ase_mlgen.search.relax.relax_many"
        from ase.optimize import BFGS

        prepared = []
        for a in images:
            a = a.copy()
            if not a.pbc.any():
                a.set_cell(np.zeros((3, 3)))
            prepared.append(a)
        return relax_many(prepared, calculator, fmax=fmax, steps=steps, max_workers=workers,
                          optimizer=BFGS, progress=False, errors="skip")
    RELAX_BACKEND["name"] = "fallback: BFGS in a process pool (relax_many was not available)"
    jobs = [(a, calculator, fmax, steps) for a in images]
    if workers <= 1:
        return [_relax_one(j) for j in jobs]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(_relax_one, jobs, chunksize=1)


def _unpack(result):
    """(atoms, energy) from whatever relax_many returns per structure."""
    if result is None:
        return None, None
    if isinstance(result, tuple):
        atoms = result[0]
        energy = result[1] if len(result) > 1 else None
    elif hasattr(result, "atoms"):
        atoms = result.atoms
        energy = getattr(result, "energy", None)
    else:
        atoms = result
        energy = None
    if energy is None and atoms is not None:
        energy = atoms.info.get("energy")
        if energy is None:
            try:
                energy = atoms.get_potential_energy()
            except Exception:  # noqa: BLE001
                energy = None
    return atoms, energy


# ----------------------------------------------------------------------------------------------
def c5h12o(args, report):
    from ase.io import read

    from ase_mlgen.generators.logan import LoGANEnsemble, train
    from ase_mlgen.generators.logan.training import DEFAULT_VARIATIONS
    from ase_mlgen.select import representatives
    from ase_mlgen.structures.molecules import C5H12O_ISOMERS, classify_c5h12o

    path = Path(args.data) / "C5H12O" / "C5H12O_training.extxyz"
    if not path.is_file():
        print(f"skipping C5H12O: {path} not found", file=sys.stderr)
        report["c5h12o"] = {"skipped": f"{path} not found"}
        return
    images = read(path, ":")
    runs = Path(args.workdir) / "c5h12o"
    t0 = time.perf_counter()
    params = {"epochs": args.epochs, "lr_generator": args.lr, "lr_critic": args.lr,
              "max_neighbours": 12, "n_penalty": args.n_penalty, "device": "cpu"}
    jobs = []
    n_parallel = max(1, args.parallel)
    per_job = int(np.ceil(args.models / n_parallel))
    member = 0
    for j in range(n_parallel):
        n = min(per_job, args.models - member)
        if n <= 0:
            break
        variations = [DEFAULT_VARIATIONS[(member + i) % len(DEFAULT_VARIATIONS)]
                      for i in range(n)]
        run = runs / f"job{j}"
        resume = run.exists() and args.resume
        if run.exists() and not resume:
            import shutil

            shutil.rmtree(run)
        jobs.append(train(images, "C5H12O", None, run_dir=run, n_models=n,
                          random_state=args.seed + member, variations=variations,
                          background=True, resume=resume, threads=1, **params))
        member += n
    models = []
    for job in jobs:
        res = job.result()
        models += res.models if isinstance(res, LoGANEnsemble) else [res]
    train_s = time.perf_counter() - t0
    ensemble = LoGANEnsemble(models)
    print(f"trained {len(models)} models in {train_s:.0f} s", flush=True)

    t0 = time.perf_counter()
    ensemble.models[0].generate(10_000, random_state=1)
    gen10k_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool = ensemble.generate(args.per_model * len(models), random_state=args.seed)
    gen_s = time.perf_counter() - t0
    # raw quality of the generated structures before any relaxation
    raw_valid = Counter(classify_c5h12o(a) for a in pool[:2000])
    print(f"generated {len(pool)} in {gen_s:.2f} s; unrelaxed, already valid isomers in the "
          f"first 2000: {sum(v for k, v in raw_valid.items() if k)}", flush=True)

    from ase_mlgen.select import structure_features

    t0 = time.perf_counter()
    features = structure_features(pool)
    feature_s = time.perf_counter() - t0
    relaxed: dict[int, tuple] = {}
    per_k = []
    filter_s = feature_s
    relax_s = 0.0
    pca_info = None
    for k in args.ks:
        t0 = time.perf_counter()
        picked, info = representatives(pool, k, return_info=True, random_state=args.seed,
                                       features=features)
        filter_s += time.perf_counter() - t0
        if k == args.plot_k:
            pca_info = (info, picked)
        todo = [a for a in picked if a.info["source_index"] not in relaxed]
        if todo:
            t0 = time.perf_counter()
            results = _relax(todo, args.calculator, args.fmax, args.steps, args.workers)
            relax_s += time.perf_counter() - t0
            for a, r in zip(todo, results):
                atoms, energy = _unpack(r)
                name = classify_c5h12o(atoms) if atoms is not None else None
                relaxed[a.info["source_index"]] = (name, energy)
        names = [relaxed[a.info["source_index"]][0] for a in picked]
        found = sorted({n for n in names if n})
        per_k.append({"k": k, "relaxations": len(picked), "distinct_isomers": len(found),
                      "isomers": found,
                      "alcohols": sum(C5H12O_ISOMERS[n]["kind"] == "alcohol" for n in found),
                      "ethers": sum(C5H12O_ISOMERS[n]["kind"] == "ether" for n in found),
                      "invalid_after_relaxation": sum(n is None for n in names)})
        print(json.dumps(per_k[-1]), flush=True)

    all_found = sorted({v[0] for v in relaxed.values() if v[0]})
    first_all = next((r["k"] for r in per_k if r["distinct_isomers"] == 14), None)
    at15 = next((r["distinct_isomers"] for r in per_k if r["k"] == 15), None)
    report["c5h12o"] = {
        "training_structures": len(images),
        "training_compositions": dict(Counter(a.get_chemical_formula() for a in images)),
        "ensemble_models": len(models),
        "model_settings": [{"random_state": m.random_state,
                            **{k: m.params[k] for k in ("r_cut", "n_max", "max_neighbours",
                                                        "epochs", "lr_generator",
                                                        "batch_size", "n_critic",
                                                        "n_penalty")}} for m in models],
        "parallel_training_jobs": len(jobs),
        "training_seconds_wall": round(train_s, 1),
        "training_seconds_per_model": [round(m.fit_seconds or 0, 1) for m in models],
        "generated": len(pool),
        "generate_seconds": round(gen_s, 3),
        "generate_10000_seconds_one_model": round(gen10k_s, 3),
        "filter_seconds_all_k": round(filter_s, 1),
        "relax_seconds_all_k": round(relax_s, 1),
        "relaxations_total_distinct": len(relaxed),
        "calculator": args.calculator, "fmax": args.fmax, "max_steps": args.steps,
        "relaxation_backend": RELAX_BACKEND["name"],
        "load_average_at_end": os.getloadavg(),
        "unrelaxed_valid_fraction_first_2000": round(
            sum(v for k, v in raw_valid.items() if k) / max(1, min(2000, len(pool))), 4),
        "per_k": per_k,
        "isomers_found_any_k": all_found,
        "isomers_missing": sorted(set(C5H12O_ISOMERS) - set(all_found)),
        "smallest_k_with_all_14": first_all,
        "isomers_at_k15": at15,
        "experiment_seconds_train_generate_filter": round(train_s + gen_s + filter_s, 1),
        "targets": {"all_14_with_at_most_30": bool(first_all is not None and first_all <= 30),
                    "at_least_12_with_15": bool(at15 is not None and at15 >= 12),
                    "under_20_min": bool(train_s + gen_s + filter_s < 1200)},
    }
    if pca_info is not None:
        _plot_pca(pca_info, relaxed, Path(args.out) / "logan_pca.png", args.plot_k)


def _plot_pca(pca_info, relaxed, path, k):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info, picked = pca_info
    coords = info["pca"]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    if coords.shape[1] >= 2:
        ax.scatter(coords[:, 0], coords[:, 1], c=info["labels"], s=3, cmap="tab20", alpha=0.5)
        index = {s: i for i, s in enumerate(info["unique_kept"])}
        for a in picked:
            src = a.info["source_index"]
            x, y = coords[index[src], :2]
            name = relaxed.get(src, (None,))[0]
            ax.scatter([x], [y], marker="*", s=90, c="k" if name else "r")
            ax.annotate(name or "invalid", (x, y), fontsize=5)
        ev = info.get("explained_variance_ratio", [0, 0])
        ax.set_xlabel(f"PC1 ({ev[0]:.0%})")
        ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
    ax.set_title(f"LoGAN C5H12O: {len(coords)} generated structures, k={k} clusters\n"
                 "stars: representatives (label = isomer after xTB relaxation)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
def _coordination(atoms, cutoff=2.0):
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    si = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Si"]
    o = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "O"]
    cn_si = [int(np.sum(d[i, o] < cutoff)) for i in si]
    cn_o = [int(np.sum(d[i, si] < cutoff)) for i in o]
    return {"si_4_fold": int(sum(c == 4 for c in cn_si)), "n_si": len(si),
            "o_2_fold": int(sum(c == 2 for c in cn_o)), "n_o": len(o),
            "all_ideal": bool(all(c == 4 for c in cn_si) and all(c == 2 for c in cn_o))}


def _random_crystal(template, dmin, rng, tries=20000):
    from ase import Atoms

    pos = []
    cell = template.cell
    for z in template.numbers:
        for _ in range(tries):
            p = rng.random(3) @ cell.array
            if not pos:
                pos.append(p)
                break
            trial = Atoms(numbers=[1] * (len(pos) + 1), positions=pos + [p], cell=cell, pbc=True)
            d = trial.get_distances(len(pos), list(range(len(pos))), mic=True)
            if d.min() >= dmin:
                pos.append(p)
                break
        else:
            return None
    return Atoms(numbers=template.numbers, positions=pos, cell=cell, pbc=True)


def sio2(args, report):
    import spglib
    from ase.io import read

    from ase_mlgen.generators.logan import LoGAN
    from ase_mlgen.select import representatives

    out = {}
    for target in args.sio2:
        path = Path(args.data) / "SiO2" / f"{target}_training.extxyz"
        if not path.is_file():
            out[target] = {"skipped": f"{path} not found"}
            continue
        images = read(path, ":")
        held = images[-1]
        train = images[:-1]
        train = [a for a in train if len(a) <= args.sio2_max_atoms] or train
        dmin = min(np.min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)])
                   for a in train if len(a) > 1)
        t0 = time.perf_counter()
        model = LoGAN(random_state=args.seed, epochs=args.sio2_epochs, lr_generator=args.lr,
                      lr_critic=args.lr, r_cut=5.0, n_max=4, max_neighbours=12,
                      rattle=args.sio2_rattle)
        model.params["device"] = "cpu"
        model.fit(train, composition=held, cell=held.cell.array, pbc=True)
        train_s = time.perf_counter() - t0
        pool = model.generate(args.sio2_pool, random_state=args.seed)
        picked = representatives(pool, args.sio2_k, min_distance=0.9 * dmin)
        if len(picked) < args.sio2_k:
            picked += representatives(pool, args.sio2_k - len(picked), min_distance=None)
        rng = np.random.default_rng(args.seed)
        randoms = []
        while len(randoms) < len(picked):
            r = _random_crystal(held, 0.9 * dmin, rng)
            if r is not None:
                randoms.append(r)

        def evaluate(structs):
            results = _relax(structs, args.sio2_calculator, args.fmax, args.sio2_steps,
                             args.workers)
            rows = []
            for r in results:
                atoms, energy = _unpack(r)
                if atoms is None or energy is None:
                    rows.append(None)
                    continue
                sg = spglib.get_spacegroup((atoms.cell.array, atoms.get_scaled_positions(),
                                            atoms.numbers), symprec=0.1)
                rows.append({"energy_per_atom": float(energy) / len(atoms), "spacegroup": sg,
                             **_coordination(atoms)})
            return rows

        t0 = time.perf_counter()
        logan_rows = evaluate(picked)
        random_rows = evaluate(randoms)
        relax_s = time.perf_counter() - t0

        def stats(rows):
            e = [r["energy_per_atom"] for r in rows if r]
            if not e:
                return {"n": 0}
            best = min((r for r in rows if r), key=lambda r: r["energy_per_atom"])
            return {"n": len(e), "failed": sum(r is None for r in rows),
                    "lowest_energy_per_atom": min(e), "median_energy_per_atom": float(np.median(e)),
                    "best": best, "all_ideal_coordination": sum(r["all_ideal"] for r in rows if r)}

        out[target] = {"atoms": len(held), "training_structures": len(train),
                       "train_seconds": round(train_s, 1), "relax_seconds": round(relax_s, 1),
                       "min_distance_random": round(0.9 * dmin, 3),
                       "logan": stats(logan_rows), "random": stats(random_rows)}
        print(json.dumps({target: out[target]}), flush=True)
    report["sio2"] = {"calculator": args.sio2_calculator, "targets": out,
                      "note": "scaled down: few targets, short training, cheap calculator"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "logan"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--workdir", default=str(ROOT / "runs" / "bench_logan"))
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-penalty", dest="n_penalty", type=int, default=10)
    p.add_argument("--per-model", type=int, default=2000)
    p.add_argument("--ks", type=int, nargs="+", default=[14, 15, 20, 25, 30, 38, 50])
    p.add_argument("--plot-k", type=int, default=30)
    p.add_argument("--calculator", default="xtb")
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--skip-c5h12o", action="store_true")
    p.add_argument("--sio2", nargs="*", default=[])
    p.add_argument("--sio2-calculator", default="xtb")
    p.add_argument("--sio2-epochs", type=int, default=400)
    p.add_argument("--sio2-rattle", type=int, default=2)
    p.add_argument("--sio2-max-atoms", type=int, default=72)
    p.add_argument("--sio2-pool", type=int, default=2000)
    p.add_argument("--sio2-k", type=int, default=20)
    p.add_argument("--sio2-steps", type=int, default=200)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "logan", "host": platform.node(), "cpus": os.cpu_count(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "settings": {k: v for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    if not args.skip_c5h12o:
        c5h12o(args, report)
    if args.sio2:
        sio2(args, report)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    path = Path(args.out) / "logan.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
