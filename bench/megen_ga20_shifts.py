"""Where the moves to the Ga20 ground state sit in ``SearchMeGen``'s hollow-candidate order, from
loosely relaxed and from refined copies of the −51.012 eV funnel minimum
→ ``bench/results/megen_ga20_shifts.json``.

Each copy is a funnel minimum that a race run relaxed to fmax 0.05 eV/Å (``--copies RUN:STEP``,
the run JSONs of ``bench/megen.py --stage runs``). For the copy as it is and for the copy
relaxed further to fmax 0.005 eV/Å (what ``SearchMeGen`` now does before the move), the script
builds the hollow candidates in the order the search proposes them
(``SearchMeGen._hollow_order``: shifts by changed predicted energy, then relocations), relaxes
the first ``--top`` with the GAP teacher (FIRE, fmax 0.05) and reports which of them end below
the funnel by more than 0.015 eV (the ground-state basin, −51.03 eV loose / −51.050 tight).

    python bench/megen_ga20_shifts.py \\
        --copies bench/results/megen_parts_final/runs/megen_final2_Ga20_0.json:29 ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"model": "bench/results/megen_parts_dart/megen_ga.pt",
           "reward": "dart:bench/datasets/dart_ga4-30.pt", "screen": 64, "reseed": "both",
           "predicted_tol": 0.0001, "regrow": 3, "patience": 10, "hollow": 2.75,
           "seeds": "bench/results/megen_parts_dart/seeds_Ga19.xyz"}
FUNNEL_EV = -51.0118     # tight energy of the funnel minimum (bench/megen_ga20_sites.py)


def main(argv=None) -> int:
    from ase import Atoms
    from ase.optimize import FIRE

    from ase_mlgen.calculators.specs import calculator_from_spec
    from ase_mlgen.generators.megen.generator import (HOLLOW_SHIFT, REFINE_FMAX,
                                                      make_search_generator)
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", nargs="+", required=True, metavar="RUN:STEP")
    p.add_argument("--top", type=int, default=8, help="candidates relaxed per copy")
    p.add_argument("--gap", default=str(ROOT.parent / "shared" / "data" / "ga" / "Ga_gap.xml"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "megen_ga20_shifts.json"))
    args = p.parse_args(argv)
    if not Path(args.gap).is_file():
        print(f"{args.gap} not found (the Ga GAP potential lives in ../shared/data); skipped")
        return 0
    gap = calculator_from_spec(f"gap:{args.gap}")
    gen = make_search_generator(Atoms("Ga20"), 0, dict(OPTIONS, patience=10_000))
    out = {"what": "position of ground-state moves in SearchMeGen's hollow order, Ga20 funnel",
           "machine": machine_info(), "options": OPTIONS, "top": args.top,
           "refine_fmax": REFINE_FMAX, "hit_below_eV": FUNNEL_EV - 0.015, "copies": []}
    for spec in args.copies:
        run, step = spec.rsplit(":", 1)
        minima = json.loads(Path(run).read_text())["minima"]
        entry = next(m for m in minima if m["step"] == int(step))
        row = {"run": Path(run).name, "step": int(step), "loose_eV": entry["energy"]}
        for refined in (False, True):
            t0 = time.perf_counter()
            copy = Atoms("Ga20", positions=entry["positions"])
            if refined:
                copy.calc = gap
                FIRE(copy, logfile=None).run(fmax=REFINE_FMAX, steps=3000)
                row["refined_eV"] = float(copy.get_potential_energy())
                copy = Atoms("Ga20", positions=copy.positions)
            order = gen._hollow_order(copy, np.random.default_rng(0))
            energies = []
            for cand in order[:args.top]:
                b = cand.copy()
                b.calc = gap
                FIRE(b, logfile=None).run(fmax=0.05, steps=2000)
                energies.append(float(b.get_potential_energy()))
            key = "refined" if refined else "loose"
            row[key] = {"candidates": len(order),
                        "shifts": sum(a.info["displacement"] < HOLLOW_SHIFT for a in order),
                        "relaxed_eV": energies,
                        "hits_at": [k for k, e in enumerate(energies) if e < FUNNEL_EV - 0.015],
                        "seconds": time.perf_counter() - t0}
            print(row["run"], step, key, row[key]["hits_at"], np.round(energies, 3).tolist(),
                  flush=True)
        out["copies"].append(row)
        atomic_json_dump(out, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
