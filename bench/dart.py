"""DART benchmark on GAP-labelled Ga clusters → ``bench/results/dart.json`` and a parity PNG.

Build the data first (resumable; the scale used is recorded in the JSON)::

    ase-mlgen dataset clusters --element Ga --sizes 31-70 --per-size 6 --frames 4 --steps 40 \
        --teacher gap:../shared/data/ga/Ga_gap.xml --db bench/data/ga_gap.db --workers 2

then ``python bench/dart.py --db bench/data/ga_gap.db [--max-epochs N] [--max-seconds S]`` (or
its parts ``--part dart``, ``--part hdnn``, ``--part transfer`` as separate processes, then
``--part merge``).

Reports, next to the DART paper's targets: test MAE and RMSE per cluster (eV, kcal/mol) on a random
80/10/10 split, the HDNN (ACSF + per-atom MLP) baseline on the same split, the size-transfer split
(train on 31–69 atoms, test on 70), Spearman ρ between predicted and teacher energies within one
cluster size on the test set, batched inference speed on Ga50 and the time of one
``get_potential_energy()``, and training wall time and epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

EV_TO_KCAL = 23.060548  # kcal/mol per eV
TARGETS = {"mae_kcal_per_mol": 3.59, "mae_eV": 0.156, "transfer_mae_kcal_per_mol": 4.71,
           "spearman_within_size": 0.8, "hdnn_paper_mae_kcal_per_mol": 2.4,
           "inference_ga50_per_s": 10000, "single_call_ms": 5.0}


def errors(pred, ref) -> dict:
    err = np.asarray(pred) - np.asarray(ref)
    mae, rmse = float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))
    return {"n": int(len(err)), "mae_eV": mae, "rmse_eV": rmse,
            "mae_kcal_per_mol": mae * EV_TO_KCAL, "rmse_kcal_per_mol": rmse * EV_TO_KCAL}


def spearman_within_size(pred, ref, sizes, min_count: int = 3) -> dict:
    from scipy.stats import spearmanr

    rhos, counts = {}, {}
    for n in sorted(set(sizes)):
        sel = np.asarray(sizes) == n
        if sel.sum() >= min_count:
            rho = spearmanr(np.asarray(pred)[sel], np.asarray(ref)[sel]).correlation
            if np.isfinite(rho):
                rhos[int(n)] = float(rho)
                counts[int(n)] = int(sel.sum())
    vals = np.array(list(rhos.values()))
    weights = np.array(list(counts.values()))
    return {"mean": float(vals.mean()) if len(vals) else None,
            "weighted_mean": float((vals * weights).sum() / weights.sum()) if len(vals) else None,
            "median": float(np.median(vals)) if len(vals) else None,
            "sizes_used": len(vals), "min_count": min_count, "per_size": rhos,
            "count_per_size": counts}


def train_model(kind, train, val, args, hyper=None):
    from ase_mlgen.nn.training import EnergyTrainer, build_model

    hyper = dict(hyper or {})
    if kind == "hdnn":
        hyper.setdefault("species", ["Ga"])
    model = build_model(kind, hyper)
    trainer = EnergyTrainer(max_epochs=args.max_epochs, device=args.device, seed=args.seed,
                            max_seconds=args.max_seconds)
    t0 = time.perf_counter()
    summary = trainer.fit(model, train, val, progress=args.progress)
    summary["wall_seconds"] = time.perf_counter() - t0
    return model, summary


def predict(kind, model, images):
    from ase_mlgen.nn.training import predict_features

    return predict_features(model, model.featurize_images(images)).numpy()


def inference_speed(model, template, n_clusters: int, threads: int) -> dict:
    from ase_mlgen.calculators.dart import DART

    torch.set_num_threads(threads)
    calc = DART(model, species=["Ga"])
    rng = np.random.default_rng(0)
    base = template.positions
    images = []
    for _ in range(n_clusters):
        a = template.copy()
        a.positions = base + rng.normal(scale=0.1, size=base.shape)
        images.append(a)
    calc.predict(images[:256])
    t0 = time.perf_counter()
    calc.predict(images)
    batched = time.perf_counter() - t0
    atoms = template.copy()
    atoms.calc = calc
    times = []
    for k in range(50):
        atoms.positions = base + rng.normal(scale=0.05, size=base.shape)
        t0 = time.perf_counter()
        atoms.get_potential_energy()
        times.append(time.perf_counter() - t0)
    return {"natoms": len(template), "n_clusters": n_clusters, "torch_threads": threads,
            "batched_clusters_per_s": n_clusters / batched,
            "single_call_ms_median": 1000 * float(np.median(times)),
            "single_call_ms_min": 1000 * float(np.min(times))}


def parity_plot(path, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, ref, pred, sizes) in zip(np.atleast_1d(axes), panels):
        ref, pred = np.asarray(ref), np.asarray(pred)
        sc = ax.scatter(ref / sizes, pred / sizes, c=sizes, s=8, cmap="viridis")
        lo, hi = min((ref / sizes).min(), (pred / sizes).min()), \
            max((ref / sizes).max(), (pred / sizes).max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = np.abs(pred - ref).mean()
        ax.set_title(f"{title}\nMAE {mae:.3f} eV/cluster ({mae * EV_TO_KCAL:.2f} kcal/mol)",
                     fontsize=9)
        ax.set_xlabel("GAP energy (eV/atom)")
        ax.set_ylabel("predicted energy (eV/atom)")
        fig.colorbar(sc, ax=ax, label="atoms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_part(part, args, images, sizes, energy, final) -> dict:
    """One part of the benchmark: ``dart`` and ``hdnn`` (random split), ``transfer``."""
    from ase_mlgen.nn.training import split_indices

    pick = lambda idx: [images[i] for i in idx]  # noqa: E731
    i_train, i_val, i_test = split_indices(len(images), [0.8, 0.1, 0.1], seed=args.seed)
    out: dict = {"part": part, "load_average_at_start": os.getloadavg()}
    if part in ("dart", "hdnn"):
        print(f"{part}: random split {len(i_train)} train, {len(i_val)} val, {len(i_test)} test",
              flush=True)
        hyper = {"width": args.width} if part == "dart" else None
        model, summary = train_model(part, pick(i_train), pick(i_val), args, hyper)
        pred = predict(part, model, pick(i_test))
        fin = final[i_test]
        out.update({
            "split": "random 80/10/10", "n_train": len(i_train), "n_val": len(i_val),
            "train_summary": summary, "test": errors(pred, energy[i_test]),
            "test_final_structures_only": errors(pred[fin], energy[i_test][fin])
            if fin.any() else None,
            "spearman_within_size": spearman_within_size(pred, energy[i_test], sizes[i_test]),
            "points": {"ref": energy[i_test].tolist(), "pred": pred.tolist(),
                       "sizes": sizes[i_test].tolist()}})
        if part == "dart":
            with50 = [i for i in i_test if sizes[i] == 50] or list(np.flatnonzero(sizes == 50))
            if with50:
                template = images[with50[0]].copy()
                template.calc = None
                out["inference"] = inference_speed(model, template, args.speed_clusters,
                                                   args.threads)
            from ase_mlgen.calculators.dart import DART

            DART(model, species=["Ga"]).save(Path(args.parts) / "dart_random_split.pt")
    elif part == "speed":
        # inference speed of the random-split model, measured on its own (e.g. on a quieter CPU)
        from ase_mlgen.calculators.dart import DART

        model = DART.load(Path(args.parts) / "dart_random_split.pt").model
        template = images[int(np.flatnonzero(sizes == 50)[0])].copy()
        template.calc = None
        out["inference"] = inference_speed(model, template, args.speed_clusters, args.threads)
        print(json.dumps(out["inference"]), flush=True)
        return out
    elif part == "transfer":
        big = args.transfer_size
        small = np.flatnonzero(sizes < big)
        test = np.flatnonzero(sizes == big)
        if not len(test):
            raise SystemExit(f"no Ga{big} clusters in the database")
        i_tr, i_va = split_indices(len(small), [0.9, 0.1], seed=args.seed)
        print(f"transfer: {len(i_tr)} train (<{big} atoms), {len(i_va)} val, {len(test)} test "
              f"(Ga{big})", flush=True)
        model, summary = train_model("dart", pick(small[i_tr]), pick(small[i_va]), args,
                                     {"width": args.width})
        pred = predict("dart", model, pick(test))
        out.update({"train_sizes": [int(sizes[small].min()), int(sizes[small].max())],
                    "test_size": big, "n_train": len(i_tr), "n_val": len(i_va),
                    "train_summary": summary, "test": errors(pred, energy[test]),
                    "spearman_within_size": spearman_within_size(pred, energy[test],
                                                                 sizes[test]),
                    "points": {"ref": energy[test].tolist(), "pred": pred.tolist(),
                               "sizes": sizes[test].tolist()}})
    else:
        raise SystemExit(f"unknown part {part!r}")
    print(json.dumps(out["test"]), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="bench/data/ga_gap.db")
    ap.add_argument("--out", default="bench/results/dart.json")
    ap.add_argument("--parts", default="bench/data/parts",
                    help="folder for the results of each part (merged into --out)")
    ap.add_argument("--part", action="append", choices=("dart", "hdnn", "transfer", "speed", "merge"),
                    help="run only these parts (repeat); default: all, then merge. Parts can "
                         "run as separate processes at the same time")
    ap.add_argument("--max-epochs", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="time box for each training (wall clock, s)")
    ap.add_argument("--transfer-size", type=int, default=70)
    ap.add_argument("--width", type=float, default=0.0,
                    help="TAD switch width of the DART parts (0: the paper's integer TAD)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-clusters", type=int, default=10000)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.part or ["dart", "hdnn", "transfer", "merge"]

    from ase.db import connect

    from ase_mlgen.data.clusters import load_dataset
    from ase_mlgen.utils.io import atomic_json_dump

    images = load_dataset(args.db)
    sizes = np.array([len(a) for a in images])
    energy = np.array([a.get_potential_energy() for a in images])
    final = np.array([a.info.get("final", 0) for a in images], dtype=bool)
    Path(args.parts).mkdir(parents=True, exist_ok=True)
    for part in parts:
        if part != "merge":
            atomic_json_dump(run_part(part, args, images, sizes, energy, final),
                             Path(args.parts) / f"{part}.json")
    if "merge" not in parts:
        return 0

    meta = connect(args.db).metadata
    result = {
        "benchmark": "DART on GAP-labelled Ga clusters",
        "targets": TARGETS,
        "dataset": {"db": args.db, "teacher": meta.get("teacher"), "structures": len(images),
                    "relaxations": len(meta.get("completed_seeds", [])),
                    "final_structures": int(final.sum()),
                    "sizes": [int(sizes.min()), int(sizes.max())],
                    "distinct_sizes": int(len(set(sizes))),
                    "per_size_structures": {int(n): int((sizes == n).sum())
                                            for n in sorted(set(sizes))},
                    "note": "rows are frames of teacher (GAP) FIRE relaxation paths from random "
                            "compact starts (the unrelaxed start included) plus each path's final "
                            "structure; duplicate final structures removed"},
        "settings": {"max_epochs": args.max_epochs, "max_seconds": args.max_seconds,
                     "device": args.device, "torch_threads": args.threads, "seed": args.seed,
                     "trainer": "paper settings (L1, Adam 1e-3, batch 32, plateau x0.1 / 25, "
                                "stop at lr 1e-8), capped at max_epochs / max_seconds"},
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                    "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    build = Path(args.db).with_name("build_settings.json")
    if build.exists():
        result["dataset"]["build_settings"] = json.loads(build.read_text())
    panels = []
    names = {"dart": ("dart_random_split", "DART, random split (test)"),
             "hdnn": ("hdnn_random_split", "HDNN (ACSF), random split (test)"),
             "transfer": ("dart_size_transfer", f"DART, train <{args.transfer_size}, "
                                                f"test Ga{args.transfer_size}")}
    speed = Path(args.parts) / "speed.json"
    speed_data = json.loads(speed.read_text()) if speed.exists() else None
    for part, (key, title) in names.items():
        path = Path(args.parts) / f"{part}.json"
        if not path.exists():
            result[key] = None
            continue
        data = json.loads(path.read_text())
        pts = data.pop("points")
        if "inference" in data:
            result["inference"] = data.pop("inference")
        from scipy.stats import spearmanr

        from ase_mlgen.nn.training import split_indices

        ref, pred, n = (np.array(pts[k]) for k in ("ref", "pred", "sizes"))
        data["spearman_per_atom_all_sizes"] = float(spearmanr(pred / n, ref / n).correlation)
        # the same test rows again (deterministic split) to break the errors down by frame kind
        if part == "transfer":
            test_idx = np.flatnonzero(sizes == args.transfer_size)
        else:
            test_idx = split_indices(len(images), [0.8, 0.1, 0.1], seed=args.seed)[2]
        frame = np.array([images[i].info.get("frame", -1) for i in test_idx])
        fin = final[test_idx]
        kinds = {"unrelaxed_random_starts": (frame == 0) & ~fin,
                 "relaxation_path_frames": (frame > 0) & ~fin,
                 "final_structures": fin,
                 "all_but_unrelaxed_starts": ~((frame == 0) & ~fin)}
        data["test_by_frame_kind"] = {k: errors(pred[m], ref[m]) for k, m in kinds.items()
                                      if m.any()}
        m = kinds["all_but_unrelaxed_starts"]
        data["spearman_within_size_excluding_unrelaxed_starts"] = spearman_within_size(
            pred[m], ref[m], n[m])
        result[key] = data
        panels.append((title, np.array(pts["ref"]), np.array(pts["pred"]),
                       np.array(pts["sizes"])))
    if speed_data is not None:  # a separate, later speed measurement replaces the in-run one
        if "inference" in result:
            result["inference_during_training_run"] = result["inference"]
        result["inference"] = {**speed_data["inference"],
                               "load_average_at_start": speed_data["load_average_at_start"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "_parity.png")
    if panels:
        parity_plot(png, panels)
        result["parity_png"] = str(png)
    atomic_json_dump(result, out)
    print(f"wrote {out}" + (f" and {png}" if panels else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
