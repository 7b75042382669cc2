"""Table 1 recipe study (issue #6): cVAE training variants on the shared DFT Pt10 fingerprints, all
judged by ONE fixed surrogate (five layers of 256, batch 16, 300 epochs, seed 0), so that the
variants differ only in the generator → bench/results/inversion_table1_recipes.json.

Each variant: ``FingerprintGenerator`` settings (batch size, epochs, β, KL warm-up, free bits,
property-balanced batches, seed); 300 samples z ~ N(0, I) at each of the paper's seven targets;
% of samples whose judged formation energy is within ±0.1 eV/atom, and the mean signed error.

Usage: ``nice -n 5 python bench/inversion_recipes.py [--variants "NAME;NAME;..."]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGETS = [1.9, 2.2, 2.5, 2.8, 3.1, 3.4, 3.7]
PAPER = [87.7, 89.8, 88.9, 82.2, 73.3, 64.5, 75.7]
VARIANTS = {
    "paper (batch 64)": {"batch_size": 64},
    "batch 16": {"batch_size": 16},
    "batch 16, seed 1": {"batch_size": 16, "seed": 1},
    "batch 16, seed 2": {"batch_size": 16, "seed": 2},
    "batch 8": {"batch_size": 8},
    "batch 16, 600 epochs": {"batch_size": 16, "epochs": 600},
    "batch 16, beta 0.3": {"batch_size": 16, "beta": 0.3},
    "batch 16, KL warm-up 100": {"batch_size": 16, "kl_warmup": 100},
    "batch 16, free bits 0.5": {"batch_size": 16, "free_bits": 0.5},
    "batch 16, balanced": {"batch_size": 16, "balance": True},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=";".join(VARIANTS), help="names separated by ;")
    p.add_argument("--n-samples", type=int, default=300)
    p.add_argument("--out", default=str(HERE / "results" / "inversion_table1_recipes.json"))
    p.add_argument("--runs", default=str(HERE.parent / "runs" / "bench_inversion" / "recipes"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from ase_mlgen.data.pt10 import load_dft_pt10
    from ase_mlgen.inversion.cvae import FingerprintGenerator

    x, y = load_dft_pt10()
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {"variants": {}}
    result.setdefault("runs", []).append({"argv": sys.argv[1:], "started": time.time(),
                                          "load_average": os.getloadavg(),
                                          "cpu_count": os.cpu_count()})
    runs = Path(args.runs)
    # the judge: the surrogate of a batch-16, 300-epoch, seed-0 training run
    judge = FingerprintGenerator.train(x, y, runs / "judge", resume=(runs / "judge").exists(),
                                       epochs=300, batch_size=16, seed=0).result()
    result["judge"] = {"batch_size": 16, "epochs": 300, "seed": 0,
                       "train_mae": float(np.abs(judge.predict(x) - y).mean())}
    for name in args.variants.split(";"):
        settings = {"epochs": 300, **VARIANTS[name]}
        run = runs / name.replace(" ", "_").replace(",", "")
        t0 = time.perf_counter()
        if settings == {"epochs": 300, "batch_size": 16}:
            gen = judge  # the judge's own run is this variant
        else:  # the variants' own surrogates are not used: one epoch
            gen = FingerprintGenerator.train(x, y, run, resume=run.exists(), surrogate_epochs=1,
                                             **settings).result()
        rows = []
        for k, t in enumerate(TARGETS):
            pred = judge.predict(gen.generate(args.n_samples, t, seed=k))
            rows.append({"target": t, "within_0.1_percent": float(100 * np.mean(
                np.abs(pred - t) <= 0.1)), "mean_error": float(np.mean(pred - t)),
                "mae": float(np.mean(np.abs(pred - t)))})
        meets = sum(r["within_0.1_percent"] >= q for r, q in zip(rows, PAPER))
        result["variants"][name] = {"settings": settings, "rows": rows, "meets_paper": meets,
                                    "seconds": time.perf_counter() - t0,
                                    "load_average": os.getloadavg()}
        print(f"{name:28s} " + " ".join(f"{r['within_0.1_percent']:5.1f}" for r in rows)
              + f"  meets {meets}/7", flush=True)
        out_path.write_text(json.dumps(result, indent=1))
    result["paper"] = dict(zip(map(str, TARGETS), PAPER))
    result["runs"][-1]["finished"] = time.time()
    out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
