"""Teacher relaxations, calls and seconds to the reference minimum, per run and median over seeds
→ ``race_cost.json`` in ``--parts``.

Takes "reached at relaxation k" from ``tight_check.json`` (``bench/megen_tight.py``) and adds up
the teacher calls of the first k relaxations (``report.steps[*].calls`` of each run JSON) and the
search's wall time up to that relaxation (linear in the calls between the two ``history`` entries
around it, since only improvements are time-stamped).

    python bench/megen_race_cost.py --parts bench/results/megen_parts_final --tag _final4
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from ase_mlgen.utils.io import atomic_json_dump

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", required=True)
    p.add_argument("--tag", required=True, help="run tag, e.g. _final4")
    args = p.parse_args(argv)
    parts = Path(args.parts)
    tight = json.loads((parts / "tight_check.json").read_text())["sizes"]
    out = {"what": "teacher cost to the reference minimum (tight check)", "tag": args.tag,
           "sizes": {}}
    for size, entry in tight.items():
        rows = {}
        for run in entry["runs"]:
            if not run["run"].startswith(f"megen{args.tag}_"):
                continue
            k = run["relaxations_to_reference"]
            report = json.loads((parts / "runs" / run["run"]).read_text())["report"]
            row = {"relaxations": k}
            if k is not None:
                calls = int(sum(s["calls"] for s in report["steps"][:k]))
                hist = report["history"]
                c = [0] + [h["calls"] for h in hist] + [report["calls"]]
                t = [0.0] + [h["seconds"] for h in hist] + [report["seconds"]]
                row.update(calls=calls, seconds=float(np.interp(calls, c, t)))
            rows[run["run"]] = row
        reached = [r for r in rows.values() if r["relaxations"] is not None]
        out["sizes"][size] = {
            "runs": rows, "reached": f"{len(reached)}/{len(rows)}",
            "median": {key: float(np.median([r[key] for r in reached]))
                       for key in ("relaxations", "calls", "seconds")} if reached else None}
        print(size, out["sizes"][size]["reached"], out["sizes"][size]["median"])
    atomic_json_dump(out, parts / "race_cost.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
