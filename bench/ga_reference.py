"""Reference lowest energies of Ga clusters with the GAP teacher, from long searches.

The issue's reference ground states are held back, so MeGen's "reached the ground state" is judged
against the lowest energy that long basin-hopping (and genetic-algorithm) runs find here. Writes
``bench/results/ga_reference.json`` (energies per size, method and seed; machine; settings) and
the lowest structure of every size next to it (``ga_reference_Ga20.extxyz`` for the default
``--out``). Resumable: sizes and runs already in the JSON are skipped.

    python bench/ga_reference.py --sizes 8 13 18 20 30 --budget 300 --seeds 0 1 --methods bh ga
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
DEFAULT_GAP = ROOT.parent / "shared" / "data" / "ga" / "Ga_gap.xml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 13, 18, 20, 30])
    p.add_argument("--budget", type=int, default=300, help="relaxations per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--methods", nargs="+", default=["bh"])
    p.add_argument("--gap", default=str(DEFAULT_GAP))
    p.add_argument("--out", default=str(RESULTS / "ga_reference.json"))
    args = p.parse_args(argv)
    if not Path(args.gap).exists():
        print(f"GAP potential {args.gap} not found; skipping", file=sys.stderr)
        return 0

    from ase.io import write

    from ase_mlgen.search.runner import machine_info, run_search
    from ase_mlgen.utils.io import atomic_json_dump

    out_path = Path(args.out)
    data = json.loads(out_path.read_text()) if out_path.exists() else {
        "what": "lowest GAP energies (eV) of Ga clusters from long searches",
        "machine": machine_info(), "calculator": f"gap:{Path(args.gap).name}", "sizes": {}}
    for n in args.sizes:
        entry = data["sizes"].setdefault(f"Ga{n}", {"runs": {}})
        for method in args.methods:
            for seed in args.seeds:
                key = f"{method}/seed{seed}/budget{args.budget}"
                if key in entry["runs"]:
                    continue
                t0 = time.perf_counter()
                rep = run_search(method, f"Ga{n}", f"gap:{args.gap}", budget=args.budget,
                                 seed=seed)
                best = rep.pop("best_structure", None)
                entry["runs"][key] = {
                    "best_energy": rep["best_energy"], "n_minima": rep["n_minima"],
                    "relaxations": rep["relaxations"], "calls": rep["calls"],
                    "seconds": rep["seconds"], "wall_seconds": time.perf_counter() - t0,
                    "history": rep["history"], "load_average": os.getloadavg()}
                if best is not None:
                    entry["runs"][key]["best_structure"] = best

                energies = [r["best_energy"] for r in entry["runs"].values()]
                entry["lowest_energy"] = min(energies)
                entry["runs_reaching_lowest"] = sum(e <= min(energies) + 1e-3 for e in energies)
                atomic_json_dump(data, out_path)
                print(f"Ga{n} {key}: {rep['best_energy']:.4f} eV "
                      f"({rep['seconds']:.0f} s)", flush=True)
    from ase import Atoms

    for name, entry in data["sizes"].items():
        runs = [r for r in entry["runs"].values() if r.get("best_structure")]
        if runs:
            r = min(runs, key=lambda r: r["best_energy"])
            atoms = Atoms(numbers=r["best_structure"]["numbers"],
                          positions=r["best_structure"]["positions"])
            atoms.info["energy"] = r["best_energy"]
            # next to the JSON: ga_reference.json -> ga_reference_Ga20.extxyz
            out = Path(args.out)
            write(out.with_name(f"{out.stem}_{name}.extxyz"), atoms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
