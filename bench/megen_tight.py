"""Re-relax the best minimum of every MeGen/BasinHopping race run to a tight force criterion.

Runs stop at fmax 0.05 eV/Å, where one basin relaxed twice can differ by ~0.01 eV and two
distinct isomers may lie that close. This script re-relaxes each run's lowest minimum with the
teacher (GAP, FIRE to ``--fmax``, default 0.005 eV/Å), compares every tight minimum with the
lowest one (mean |Δd| of sorted pair distances, Å, and the radial-fingerprint test), finds the
first relaxation of each run that reached that lowest structure, and writes
``PARTS/tight_check.json`` with the tight positions, so that the reference structures stay on
record.

    python bench/megen_tight.py --parts bench/results/megen_parts_regrow --sizes 18 20
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GAP = ROOT.parent / "shared" / "data" / "ga" / "Ga_gap.xml"


def tight_minimum(positions, calc, fmax: float, steps: int):
    from ase import Atoms
    from ase.optimize import FIRE

    atoms = Atoms(f"Ga{len(positions)}", positions=positions)
    atoms.calc = calc
    with FIRE(atoms, logfile=None) as opt:
        opt.run(fmax=fmax, steps=steps)
    return atoms, float(atoms.get_potential_energy())


def first_reaching(parts: Path, n: int, reference, reference_energy: float, rows: list,
                   calc, args) -> None:
    """Add ``relaxations_to_reference`` to each run row: the first relaxation (1-based) whose
    minimum, re-relaxed tightly, is the reference structure (same radial fingerprint and tight
    energy within ``--same-energy`` eV). Only minima whose loose energy lies within
    ``--window`` eV of the lowest loose energy of the size are re-relaxed (in step order)."""
    from ase_mlgen.generators.megen.duplicates import same_by_fingerprint

    runs = {r["run"]: json.loads((parts / "runs" / r["run"]).read_text()) for r in rows}
    loose_lowest = min(m["energy"] for run in runs.values() for m in run["minima"])
    for row in rows:
        row["relaxations_to_reference"] = None
        near = sorted((m for m in runs[row["run"]]["minima"]
                       if m["energy"] <= loose_lowest + args.window), key=lambda m: m["step"])
        for m in near:
            a, e = tight_minimum(m["positions"], calc, args.fmax, args.steps)
            if abs(e - reference_energy) <= args.same_energy and same_by_fingerprint(a, reference):
                row["relaxations_to_reference"] = int(m["step"]) + 1
                break
        print(n, row["run"], "relaxations to the reference:", row["relaxations_to_reference"],
              flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", required=True, help="benchmark folder with runs/*.json")
    ap.add_argument("--sizes", type=int, nargs="+", required=True)
    ap.add_argument("--fmax", type=float, default=0.005, help="eV/Å")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--gap", default=str(GAP))
    ap.add_argument("--window", type=float, default=0.02,
                    help="loose minima this far above the lowest (eV) are re-relaxed to find the "
                         "first relaxation that reached the reference")
    ap.add_argument("--known", nargs="*", default=[], metavar="N=EV",
                    help="lowest energy known for size N from runs not in --parts (eV, loose "
                         "fmax 0.05); the tight lowest here is checked against it (a tight "
                         "re-relaxation only lowers the energy, so a tight lowest above it is "
                         "another basin)")
    ap.add_argument("--same-energy", type=float, default=0.002,
                    help="tight energies this close (eV) and the same fingerprint: one minimum")
    args = ap.parse_args(argv)
    if not Path(args.gap).exists():
        raise SystemExit(f"GAP potential not found at {args.gap}")
    from ase_mlgen.calculators.specs import calculator_from_spec
    from ase_mlgen.generators.megen.duplicates import same_by_fingerprint, sorted_pair_distances

    known = {int(k): float(v) for k, v in (item.split("=") for item in args.known)}
    calc = calculator_from_spec(f"gap:{args.gap}")
    parts = Path(args.parts)
    out = {"what": "best minimum of each run re-relaxed tightly (GAP)", "fmax": args.fmax,
           "optimizer": "FIRE", "steps": args.steps,
           "machine": {"hostname": platform.node(), "cpus": os.cpu_count()}, "sizes": {}}
    t0 = time.perf_counter()
    for n in args.sizes:
        rows, atoms = [], []
        for f in sorted(glob.glob(str(parts / "runs" / f"*_Ga{n}_*.json"))):
            run = json.loads(Path(f).read_text())
            if not run["minima"]:
                continue
            best = run["minima"][0]
            a, e = tight_minimum(best["positions"], calc, args.fmax, args.steps)
            atoms.append(a)
            rows.append({"run": os.path.basename(f), "energy_fmax0.05": best["energy"],
                         f"energy_fmax{args.fmax:g}": e,
                         "positions": np.round(a.positions, 5).tolist()})
        if not rows:
            continue
        key = f"energy_fmax{args.fmax:g}"
        lo = int(np.argmin([r[key] for r in rows]))
        ref = sorted_pair_distances(atoms[lo])
        for r, a in zip(rows, atoms):
            r["mean_abs_ddist_to_lowest"] = float(np.mean(np.abs(sorted_pair_distances(a) - ref)))
            r["same_fingerprint_as_lowest"] = bool(same_by_fingerprint(a, atoms[lo]))
            print(n, r["run"], round(r["energy_fmax0.05"], 4), round(r[key], 4),
                  round(r["mean_abs_ddist_to_lowest"], 3), r["same_fingerprint_as_lowest"],
                  flush=True)
        first_reaching(parts, n, atoms[lo], rows[lo][key], rows, calc, args)
        entry = {"lowest_tight": rows[lo][key], "lowest_run": rows[lo]["run"],
                 "same_energy_tol": args.same_energy, "scan_window": args.window}
        if n in known:
            entry["known_lowest_loose"] = known[n]
            entry["lowest_here_is_known_basin_or_lower"] = bool(
                rows[lo][key] <= known[n] + args.same_energy)
            print(f"Ga{n}: tight lowest here {rows[lo][key]:.4f} eV, known {known[n]:.4f} eV "
                  f"(loose)", flush=True)
        out["sizes"][f"Ga{n}"] = {**entry, "runs": rows}
    out["seconds"] = time.perf_counter() - t0
    from ase_mlgen.utils.io import atomic_json_dump

    path = parts / "tight_check.json"
    if path.exists():   # sizes checked in an earlier call stay
        earlier = json.loads(path.read_text())
        out["sizes"] = {**earlier.get("sizes", {}), **out["sizes"]}
        out["seconds"] += float(earlier.get("seconds", 0.0))
    atomic_json_dump(out, path)


if __name__ == "__main__":
    main()
