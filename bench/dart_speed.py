"""DART inference speed on Ga50 without a trained model → ``bench/results/dart_speed.json``.

The arithmetic of DART does not depend on its weights, so the speed of the plain network and of
the exact tabulated fast path can be measured with a freshly initialised network on a random
compact Ga50 cluster (rattled copies, 0.1 Å), e.g. on an idle machine when the trained model of
``bench/dart.py`` is not at hand. Same measurement as ``bench/dart.py --part speed``.

    python bench/dart_speed.py [--clusters 10000] [--threads 2] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None) -> int:
    from dart import TARGETS, inference_speed

    from ase_mlgen.generators.random import RandomClusters
    from ase_mlgen.nn.dart import DARTNet
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "dart_speed.json"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = DARTNet()
    template = RandomClusters("Ga50", random_state=args.seed).generate(1)[0]
    result = inference_speed(model, template, args.clusters, args.threads)
    out = {"benchmark": "DART Ga50 inference speed (freshly initialised weights)",
           "machine": machine_info(), "seed": args.seed, "threads": args.threads,
           "target_clusters_per_s": TARGETS["inference_ga50_per_s"],
           "target_single_call_ms": TARGETS["single_call_ms"],
           "load_average_at_end": os.getloadavg(), "inference": result}
    atomic_json_dump(out, args.out)
    print({k: round(v, 1) for k, v in result.items() if k.endswith("_per_s")})
    print("single call ms (median):", round(result["single_call_ms_median"], 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
