"""Speed of the CUDA paths, next to the CPU on the same machine → ``bench/results/cuda_check.json``.

For a machine with a GPU (CI has none; the CUDA tests in ``tests/test_cuda.py`` check the
numbers, this script the seconds). Parts (``--parts dart,megen,logan``):

* ``dart``: Ga50 clusters per second through ``DART.predict`` with the Ga4–30 model of
  ``bench/datasets/dart_ga4-30.pt`` (plain network and tabulated fast path, CUDA and CPU with
  ``--cpu-threads`` threads), one ``get_potential_energy()`` call, and the largest energy
  difference between CUDA and CPU.
* ``megen``: 1,000 Ga20 candidates from the Ga19 seeds of ``bench/results/megen_parts_dart``
  with the trained policy (``megen_ga.pt``), on CUDA and on the CPU.
* ``logan``: 10,000 structures from a LoGAN fitted briefly (``--logan-epochs``) on
  ``--logan-data`` (the C5H12O training set), seconds per training epoch, CUDA and CPU.

    python bench/cuda_check.py [--parts dart,megen,logan] [--clusters 20000]
        [--logan-data ../shared/data/logan/C5H12O/C5H12O_training.extxyz] [--out PATH]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _best_rate(fn, n: int, repeats: int = 3) -> float:
    """Items per second of ``fn()`` (which handles ``n`` items), best of ``repeats`` runs."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def dart_part(args, devices) -> dict:
    from ase_mlgen.calculators.dart import DART
    from ase_mlgen.generators.random import RandomClusters

    template = RandomClusters("Ga50", random_state=args.seed).generate(1)[0]
    rng = np.random.default_rng(args.seed)
    images = []
    for _ in range(args.clusters):
        a = template.copy()
        a.positions = template.positions + rng.normal(scale=0.1, size=template.positions.shape)
        images.append(a)
    out = {"model": "bench/datasets/dart_ga4-30.pt", "natoms": 50, "n_clusters": args.clusters}
    energies = {}
    for device in devices:
        for fast in (False, True):
            for batch in ((2048, 8192) if device == "cuda" else (2048,)):
                calc = DART.load(ROOT / "bench" / "datasets" / "dart_ga4-30.pt", device=device,
                                 fast=fast, batch_size=batch)
                calc.predict(images[:batch])                                  # warm-up
                key = f"{device}_{'fast' if fast else 'plain'}_batch{batch}"
                out[f"{key}_clusters_per_s"] = _best_rate(lambda: calc.predict(images),
                                                          len(images))
                energies[key] = calc.predict(images)
        calc = DART.load(ROOT / "bench" / "datasets" / "dart_ga4-30.pt", device=device)
        atoms = template.copy()
        atoms.calc = calc
        times = []
        for _ in range(50):
            atoms.positions = template.positions + rng.normal(scale=0.05,
                                                              size=template.positions.shape)
            t0 = time.perf_counter()
            atoms.get_potential_energy()
            times.append(time.perf_counter() - t0)
        out[f"{device}_single_call_ms_median"] = 1000 * float(np.median(times[5:]))
    ref = energies[f"{devices[-1]}_plain_batch2048"]
    out["max_abs_diff_vs_cpu_plain_eV"] = {k: float(np.abs(v - ref).max())
                                          for k, v in energies.items()}
    return out


def megen_part(args, devices) -> dict:
    from ase_mlgen.generators.megen import MeGen

    parts = ROOT / "bench" / "results" / "megen_parts_dart"
    out = {"model": str((parts / "megen_ga.pt").relative_to(ROOT)), "seeds": "seeds_Ga19.xyz",
           "n_candidates": args.candidates}
    for device in devices:
        megen = MeGen.load(parts / "megen_ga.pt", device=device,
                           seeds=str(parts / "seeds_Ga19.xyz"), random_state=args.seed)
        megen.generate(16)                                                     # warm-up
        t0 = time.perf_counter()
        cands = megen.generate(args.candidates)
        out[f"{device}_seconds"] = time.perf_counter() - t0
        out[f"{device}_returned"] = len(cands)
        out[f"{device}_natoms"] = sorted({len(a) for a in cands})
    return out


def logan_part(args, devices) -> dict:
    from ase.io import read

    from ase_mlgen import LoGAN

    path = Path(args.logan_data)
    if not path.is_file():
        return {"skipped": f"{path} not found (the LoGAN training sets live in ../shared/data)"}
    images = read(path, ":")
    out = {"data": path.name, "epochs": args.logan_epochs, "n_generated": args.generated,
           "settings": "r_cut 5 Å, n_max 4, batch 15, 5 critic + 10 penalty steps per epoch"}
    for device in devices:
        model = LoGAN(random_state=args.seed, epochs=args.logan_epochs, r_cut=5.0, n_max=4,
                      log_every=10, device=device)
        t0 = time.perf_counter()
        model.fit(images, composition="C5H12O")
        out[f"{device}_fit_seconds"] = time.perf_counter() - t0
        out[f"{device}_epoch_seconds_mean"] = float(np.mean(
            [r["epoch_seconds"] for r in model.history[1:]]))
        model.generate(100, random_state=0)                                    # warm-up
        t0 = time.perf_counter()
        gen = model.generate(args.generated, random_state=1)
        out[f"{device}_generate_seconds"] = time.perf_counter() - t0
        out[f"{device}_generated"] = len(gen)
    return out


def main(argv=None) -> int:
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="dart,megen,logan")
    p.add_argument("--clusters", type=int, default=20000, help="DART: Ga50 clusters scored")
    p.add_argument("--candidates", type=int, default=1000, help="MeGen: candidates generated")
    p.add_argument("--generated", type=int, default=10000, help="LoGAN: structures generated")
    p.add_argument("--logan-epochs", type=int, default=100)
    p.add_argument("--logan-data", default=str(ROOT.parent / "shared" / "data" / "logan"
                                               / "C5H12O" / "C5H12O_training.extxyz"))
    p.add_argument("--cpu-threads", type=int, default=2,
                   help="torch CPU threads for the CPU figures (2: this project's CI machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "cuda_check.json"))
    args = p.parse_args(argv)

    torch.set_num_threads(args.cpu_threads)
    devices = (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    result = {"benchmark": "CUDA paths against the CPU on the same machine",
              "machine": machine_info(), "torch": torch.__version__,
              "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "cpu_threads": args.cpu_threads, "seed": args.seed, "devices": devices}
    parts = {"dart": dart_part, "megen": megen_part, "logan": logan_part}
    for name in args.parts.split(","):
        t0 = time.perf_counter()
        result[name] = parts[name](args, devices)
        result[name]["part_seconds"] = time.perf_counter() - t0
        print(name, {k: v for k, v in result[name].items() if not isinstance(v, dict)},
              flush=True)
        atomic_json_dump(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
