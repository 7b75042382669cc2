"""DART benchmark on GAP-labelled Ga clusters → ``bench/results/dart.json`` and a parity PNG.

Build the data first (resumable, relaxations round-robin over the sizes; the scale used is
recorded in the JSON)::

    ase-mlgen dataset clusters --element Ga --sizes 31-70 --per-size 20 --frames 4 \
        --frame-window 0.1 --steps 1000 --fmax 0.05 \
        --teacher gap:../shared/data/ga/Ga_gap.xml --db bench/data/ga.db --workers 1
    ase-mlgen dataset clusters --element Ga --sizes 4-30 --per-size 20 --frames 4 \
        --frame-window 0.1 --steps 1000 --fmax 0.05 \
        --teacher gap:../shared/data/ga/Ga_gap.xml --db bench/data/ga_small.db --workers 1

then ``python bench/dart.py --db bench/data/ga.db [--max-epochs N] [--max-seconds S]`` (or its
parts ``--part dart``, ``--part hdnn``, ``--part transfer``, ``--part dart_smooth``,
``--part dart_minima`` (trained and tested on minima only, the paper's protocol),
``--part small`` (DART on ``--small-db``, saved as ``--small-model``), ``--part speed`` as
separate processes, then ``--part merge``).

Reports, next to the DART paper's targets: test MAE and RMSE per cluster (eV, kcal/mol) on a random
80/10/10 split, on minima and on relaxation-path frames separately, the HDNN (ACSF + per-atom MLP)
baseline on the same split, the size-transfer split (train on 31–69 atoms, test on 70), Spearman
ρ between predicted and teacher energies within one cluster size on the test set, batched
inference speed on Ga50 (the plain network and the exact tabulated fast path, with the load
average and the arithmetic per cluster) and the time of one ``get_potential_energy()``, and
training wall time and epochs.
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
    """Ga50 clusters per second through ``DART.predict`` (plain network and fast path, ``threads``
    torch threads, wall clock; and one thread, per CPU-second of this process), one
    ``get_potential_energy()`` call, and the arithmetic per cluster."""
    from ase_mlgen.calculators.dart import DART
    from ase_mlgen.nn.dart_fast import macs_per_atom

    rng = np.random.default_rng(0)
    base = template.positions
    images = []
    for _ in range(n_clusters):
        a = template.copy()
        a.positions = base + rng.normal(scale=0.1, size=base.shape)
        images.append(a)
    n = len(template)
    out = {"natoms": n, "n_clusters": n_clusters, "torch_threads": threads,
           "load_average_before": os.getloadavg()}
    energies = {}
    for name, fast in (("plain", False), ("fast", True)):
        calc = DART(model, species=["Ga"], fast=fast)
        for th in sorted({1, threads}):
            torch.set_num_threads(th)
            calc.predict(images[:256])
            best_wall, best_cpu = 0.0, 0.0
            for _ in range(3):
                w, c = time.perf_counter(), time.process_time()
                e = calc.predict(images)
                best_wall = max(best_wall, n_clusters / (time.perf_counter() - w))
                best_cpu = max(best_cpu, n_clusters / (time.process_time() - c))
            energies[name] = e
            out[f"{name}_threads{th}_clusters_per_s"] = best_wall
            out[f"{name}_threads{th}_clusters_per_cpu_s"] = best_cpu
    torch.set_num_threads(threads)
    out["batched_clusters_per_s"] = out[f"fast_threads{threads}_clusters_per_s"]
    out["fast_vs_plain_max_abs_diff_eV"] = float(np.abs(energies["fast"] - energies["plain"]).max())
    calc = DART(model, species=["Ga"])
    atoms = template.copy()
    atoms.calc = calc
    times, cpu = [], []
    for k in range(50):
        atoms.positions = base + rng.normal(scale=0.05, size=base.shape)
        t0, c0 = time.perf_counter(), time.process_time()
        atoms.get_potential_energy()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out.update({"single_call_ms_median": 1000 * float(np.median(times)),
                "single_call_ms_min": 1000 * float(np.min(times)),
                "single_call_cpu_ms_median": 1000 * float(np.median(cpu))})
    dims = tuple(model.hyper["interaction_dims"])
    fast_macs, plain_macs = (macs_per_atom(n, dims, fast=f) for f in (True, False))
    out["arithmetic"] = {
        "multiply_adds_per_atom_fast": fast_macs, "multiply_adds_per_atom_plain": plain_macs,
        "gflop_per_cluster_fast": 2 * fast_macs * n / 1e9,
        "gflop_per_s_needed_for_target_fast": 2 * fast_macs * n * TARGETS["inference_ga50_per_s"]
        / 1e9,
        "gflop_per_s_achieved_fast": 2 * fast_macs * n * out["batched_clusters_per_s"] / 1e9,
        "gflop_per_cpu_s_achieved_fast_1_thread":
            2 * fast_macs * n * out["fast_threads1_clusters_per_cpu_s"] / 1e9,
        "note": "embeddings are tabulated per distinct TAD (negligible); shell sums 2*N*256 and "
                "interaction tail 256*128 + 128*32 + 32 multiply-adds per atom (fast); "
                "3*N*128 + 128*256 + 256*128 + 128*32 + 32 (plain)"}
    out["load_average_after"] = os.getloadavg()
    return out


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


def load_rows(db: str):
    """Images, sizes, teacher energies (eV) and the kind of every row of a cluster database:
    ``minimum`` (converged final structure), ``final_unconverged``, ``path_frame`` or
    ``random_start`` (frame 0 of a path, only in databases built with ``frame_window=None``)."""
    from ase_mlgen.data.clusters import load_dataset

    images = load_dataset(db)
    sizes = np.array([len(a) for a in images])
    energy = np.array([a.get_potential_energy() for a in images])
    kinds = []
    for a in images:
        if a.info.get("final", 0):
            kinds.append("minimum" if a.info.get("relaxed", 0) else "final_unconverged")
        else:
            kinds.append("random_start" if a.info.get("frame", -1) == 0 else "path_frame")
    return images, sizes, energy, np.array(kinds)


def breakdown(pred, ref, sizes, kinds) -> dict:
    """Errors and within-size Spearman ρ per row kind (minima, path frames, …)."""
    out = {}
    for kind in sorted(set(kinds)):
        m = kinds == kind
        out[kind] = {**errors(pred[m], ref[m]),
                     "spearman_within_size": spearman_within_size(pred[m], ref[m], sizes[m])}
    return out


def run_part(part, args, images, sizes, energy, kinds) -> dict:
    """One part of the benchmark: ``dart``, ``hdnn``, ``dart_smooth`` and ``small`` (random
    split), ``transfer``."""
    from ase_mlgen.nn.training import split_indices

    if part == "dart_minima":  # the paper's protocol: minima only, for training and test
        keep = np.flatnonzero(kinds == "minimum")
        images, sizes, energy, kinds = ([images[i] for i in keep], sizes[keep], energy[keep],
                                        kinds[keep])
    pick = lambda idx: [images[i] for i in idx]  # noqa: E731
    i_train, i_val, i_test = split_indices(len(images), [0.8, 0.1, 0.1], seed=args.seed)
    out: dict = {"part": part, "load_average_at_start": os.getloadavg()}
    if part in ("dart", "hdnn", "dart_smooth", "dart_minima", "small"):
        print(f"{part}: random split {len(i_train)} train, {len(i_val)} val, {len(i_test)} test",
              flush=True)
        kind = "hdnn" if part == "hdnn" else "dart"
        hyper = {"width": args.smooth_width if part == "dart_smooth" else args.width} \
            if kind == "dart" else None
        model, summary = train_model(kind, pick(i_train), pick(i_val), args, hyper)
        pred = predict(kind, model, pick(i_test))
        out.update({
            "db": args.small_db if part == "small" else args.db,
            "split": "random 80/10/10", "n_train": len(i_train), "n_val": len(i_val),
            "train_summary": summary, "test": errors(pred, energy[i_test]),
            "spearman_within_size": spearman_within_size(pred, energy[i_test], sizes[i_test]),
            "test_by_row_kind": breakdown(pred, energy[i_test], sizes[i_test], kinds[i_test]),
            "points": {"ref": energy[i_test].tolist(), "pred": pred.tolist(),
                       "sizes": sizes[i_test].tolist(), "kinds": kinds[i_test].tolist()}})
        out["hyper"] = dict(model.hyper)
        if part == "small":
            from ase_mlgen.calculators.dart import DART

            DART(model, species=["Ga"], info={"trained_on": args.small_db,
                                              "split": "random 80/10/10, seed "
                                                       f"{args.seed}"}).save(args.small_model)
            out["model_file"] = args.small_model
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
                    "test_by_row_kind": breakdown(pred, energy[test], sizes[test], kinds[test]),
                    "points": {"ref": energy[test].tolist(), "pred": pred.tolist(),
                               "sizes": sizes[test].tolist(), "kinds": kinds[test].tolist()}})
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
    ap.add_argument("--part", action="append",
                    choices=("dart", "hdnn", "transfer", "dart_smooth", "dart_minima", "small",
                             "speed", "merge"),
                    help="run only these parts (repeat); default: all, then merge. Parts can "
                         "run as separate processes at the same time")
    ap.add_argument("--max-epochs", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="time box for each training (wall clock, s)")
    ap.add_argument("--transfer-size", type=int, default=70)
    ap.add_argument("--width", type=float, default=0.0,
                    help="TAD switch width of the DART parts (0: the paper's integer TAD)")
    ap.add_argument("--smooth-width", type=float, default=0.1,
                    help="TAD switch width (Å) of the dart_smooth part")
    ap.add_argument("--small-db", default="bench/data/ga_small.db",
                    help="database of the small-cluster part (Ga4-30)")
    ap.add_argument("--small-model", default="bench/data/dart_ga_small.pt",
                    help="where the small part saves its DART model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-clusters", type=int, default=10000)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.part or ["dart", "hdnn", "transfer", "merge"]

    from ase.db import connect

    from ase_mlgen.utils.io import atomic_json_dump

    # the main database only when a part reads it (``--part small`` needs only --small-db)
    needs_main = any(part != "small" for part in parts)
    images, sizes, energy, kinds = load_rows(args.db) if needs_main else (None,) * 4
    Path(args.parts).mkdir(parents=True, exist_ok=True)
    for part in parts:
        if part == "merge":
            continue
        rows = load_rows(args.small_db) if part == "small" else (images, sizes, energy, kinds)
        atomic_json_dump(run_part(part, args, *rows), Path(args.parts) / f"{part}.json")
    if "merge" not in parts:
        return 0

    meta = connect(args.db).metadata
    result = {
        "benchmark": "DART on GAP-labelled Ga clusters",
        "targets": TARGETS,
        "dataset": {"db": args.db, "teacher": meta.get("teacher"), "structures": len(images),
                    "relaxations": len(meta.get("completed_seeds", [])),
                    "rows_by_kind": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
                    "frame_window_eV_per_atom": meta.get("frame_window", "all"),
                    "sizes": [int(sizes.min()), int(sizes.max())],
                    "distinct_sizes": int(len(set(sizes))),
                    "minima_per_size": {int(n): int(((sizes == n) & (kinds == "minimum")).sum())
                                        for n in sorted(set(sizes))},
                    "note": "rows are the final structures of teacher (GAP) FIRE relaxations "
                            "from random compact starts (duplicate minima removed) and frames of "
                            "each relaxation path taken within frame_window eV/atom of its final "
                            "energy (the overlapping random starts are left out)"},
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
                                                f"test Ga{args.transfer_size}"),
             "dart_smooth": ("dart_smooth_tad_random_split",
                             f"DART, smooth TAD (width {args.smooth_width} Å), random split"),
             "dart_minima": ("dart_minima_only_random_split",
                             "DART trained and tested on minima only"),
             "small": ("dart_small_clusters", "DART on Ga4-30, random split (test)")}
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

        ref, pred, n = (np.array(pts[k]) for k in ("ref", "pred", "sizes"))
        data["spearman_per_atom_all_sizes"] = float(spearmanr(pred / n, ref / n).correlation)
        result[key] = data
        if part != "small":
            panels.append((title, ref, pred, n))
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
