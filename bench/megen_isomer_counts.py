"""Unique isomers within a window of the lowest energy, per search run (the paper's Table 1
statistic) → JSON.

Reads the run JSONs of ``bench/megen.py --stage runs`` (``--runs`` glob), keeps the minima of
the first ``--relaxations`` relaxations of each and counts the distinct ones within 0.5 and
1.0 eV of the reference (the lowest energy of these runs, or ``--reference`` eV when that is
lower), with the paper's criterion (sorted pair distances, then angles) and with the radial
fingerprint. Several ``--relaxations`` values give the count with the seed relaxations charged
to the budget (e.g. 80 of 100).

    python bench/megen_isomer_counts.py \\
        --runs "bench/results/megen_parts_final/runs/megen_final4_Ga30_*.json" \\
        --relaxations 100 80 --reference -78.2436 \\
        --out bench/results/megen_parts_final/isomers_Ga30.json
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from ase import Atoms

    from ase_mlgen.generators.megen.duplicates import count_within
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="glob of run JSONs")
    p.add_argument("--relaxations", type=int, nargs="+", default=[100])
    p.add_argument("--reference", type=float, default=None,
                   help="lowest energy known from other runs (eV)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    files = sorted(glob.glob(args.runs))
    if not files:
        print(f"no run JSONs match {args.runs}", file=sys.stderr)
        return 1
    runs = {Path(f).name: json.loads(Path(f).read_text()) for f in files}
    lows = [min(m["energy"] for m in r["minima"]) for r in runs.values()]
    reference = min(lows + ([args.reference] if args.reference is not None else []))
    out = {"what": "unique isomers within 0.5 / 1.0 eV of the reference, per run",
           "machine": machine_info(), "runs": args.runs, "reference_eV": reference,
           "reference_given_eV": args.reference, "counts": {}}
    for name, run in runs.items():
        symbols = run["system"]
        row = {"lowest_eV": min(m["energy"] for m in run["minima"])}
        for k in args.relaxations:
            images = []
            for m in run["minima"]:
                if m["step"] < k:
                    atoms = Atoms(symbols, positions=m["positions"])
                    atoms.info["energy"] = m["energy"]
                    images.append(atoms)
            row[f"first_{k}"] = {
                "within_0.5": count_within(images, 0.5, reference=reference),
                "within_0.5_fingerprint": count_within(images, 0.5, reference=reference,
                                                       method="fingerprint"),
                "within_1.0": count_within(images, 1.0, reference=reference)}
        out["counts"][name] = row
        print(name, row, flush=True)
    for k in args.relaxations:
        out[f"mean_first_{k}"] = {key: float(np.mean([r[f"first_{k}"][key]
                                                      for r in out["counts"].values()]))
                                  for key in ("within_0.5", "within_0.5_fingerprint",
                                              "within_1.0")}
    atomic_json_dump(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
