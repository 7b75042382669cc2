"""Benchmark of the global searches: random, BasinHopping (bh), MinimaHopping (mh) and the
ase_ga cluster GA (ga) at an equal relaxation budget.

For each system and method, several seeds; per run the best-energy history (relaxations, calls,
seconds). Reported: success rate and median relaxations / calls / seconds to reach the lowest
energy that any method found (LJ: the known global minimum), and, for Ga13 with the GAP teacher,
the search overhead (wall time outside the calculator).

    python bench/search.py                      # the plan below (~1 h on one busy core)
    python bench/search.py --quick              # LJ13 only, 2 seeds
    python bench/search.py --deadline-min 25    # skip runs that would start after 25 minutes
    python bench/search.py --systems Ga13       # a subset of the plan

Runs go system by system in plan order (LJ13 and LJ19 first), one process and one thread by
default (``--workers``, ``--threads``). Each run JSON records the load average before and after.

Results: bench/results/search.json, bench/results/search.png, one JSON per run in
bench/results/search_runs/ (a rerun skips finished runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
GAP = Path(os.environ.get("ASE_MLGEN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "ga" / \
    "Ga_gap.xml"
METHODS = ["random", "bh", "mh", "ga"]

# (system, calculator, seeds, budget, stop at the known minimum). LJ13/LJ19 at the issue's
# plan (5 seeds, 500 relaxations); LJ26/LJ38 (300), Ga13 (100) and Ga20 (40; ~3 s and ~6 s a
# GAP relaxation, 20 runs per system) at smaller budgets to fit the 2-core CPU
PLAN = [
    ("LJ13", "lj", 5, 500, True),
    ("LJ19", "lj", 5, 500, True),
    ("LJ26", "lj", 5, 300, True),
    ("LJ38", "lj", 5, 300, True),
    ("Ga13", "gap", 5, 100, False),
    ("Ga20", "gap", 5, 40, False),
]


def one_run(system: str, calc: str, method: str, seed: int, budget: int, stop: bool,
            out: str) -> dict:
    from ase_mlgen.search.runner import run_search
    from ase_mlgen.utils.io import atomic_json_dump

    import tempfile

    calc_spec = f"gap:{GAP}" if calc == "gap" else calc
    load_before = os.getloadavg()
    # GAP runs store every candidate and minimum in ase.db, as a user would: the overhead
    # figure includes the database writes
    with tempfile.TemporaryDirectory(prefix="search_bench_") as tmp:
        db = os.path.join(tmp, "run.db") if calc == "gap" else None
        report = run_search(method, system, calc_spec, budget=budget, seed=seed,
                            stop_at_target=stop, db=db)
    report.pop("best_structure", None)
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}
    report["threads"] = os.environ.get("OMP_NUM_THREADS")
    atomic_json_dump(report, out)
    return report


def summarise(reports: list[dict]) -> dict:
    from ase_mlgen.cli.compare import table

    rows = table(reports, tol=1e-3)
    summary = {"rows": rows, "systems": {}}
    for system in sorted({r["system"] for r in reports}):
        rs = [r for r in reports if r["system"] == system]
        known = rs[0].get("known_minimum")
        entry = {"known_minimum": known,
                 "lowest_found": min(r["best_energy"] for r in rs),
                 "runs": len(rs)}
        if known is not None:
            entry["success_vs_known"] = {
                m: f"{sum(1 for r in rs if r['method'] == m and r['reached_target'])}"
                   f"/{sum(1 for r in rs if r['method'] == m)}"
                for m in sorted({r['method'] for r in rs})}
        if system.startswith("Ga"):
            entry["overhead_fraction_median"] = {
                m: sorted(r["overhead_fraction"] for r in rs if r["method"] == m)[
                    len([r for r in rs if r["method"] == m]) // 2]
                for m in sorted({r['method'] for r in rs})}
        summary["systems"][system] = entry
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/MKL threads per run")
    parser.add_argument("--deadline-min", type=float, default=25.0,
                        help="do not start runs after this many minutes")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--systems", nargs="+", default=None, help="subset of the plan")
    parser.add_argument("--summarise-only", action="store_true",
                        help="only rebuild search.json/png from the finished runs")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    plan = [("LJ13", "lj", 2, 100, True)] if args.quick else PLAN
    if not GAP.is_file():
        print(f"GAP file {GAP} absent: Ga systems skipped", file=sys.stderr)
        plan = [p for p in plan if p[1] != "gap"]
    if args.systems:
        plan = [p for p in plan if p[0] in args.systems]
    runs_dir = RESULTS / "search_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    if args.summarise_only:
        args.deadline_min = 0
    # system by system in plan order, seed by seed, so a time limit cuts the least important runs
    jobs = []
    for system, calc, seeds, budget, stop in plan:
        for seed in range(seeds):
            for method in args.methods:
                out = runs_dir / f"{system}_{method}_{seed}.json"
                jobs.append((system, calc, method, seed, budget, stop, str(out)))
    start = time.time()
    deadline = start + 60 * args.deadline_min
    skipped = []
    def finished(job) -> bool:   # a run of the same budget and stop rule is not run again
        path = Path(job[-1])
        if not path.exists():
            return False
        old = json.loads(path.read_text())
        return old.get("budget") == job[4] and old["settings"].get("stop_at_target") == job[5]

    todo = [j for j in jobs if not finished(j)] if not args.summarise_only else []
    print(f"{len(jobs)} runs planned, {len(todo)} to run now", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        pending = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < args.workers:
                job = queue.pop(0)
                if time.time() > deadline:
                    skipped.append(job[:5])
                    continue
                pending[pool.submit(one_run, *job)] = job
            if not pending:
                break
            done = next(as_completed(pending))
            job = pending.pop(done)
            try:
                r = done.result()
                print(f"[{time.time() - start:6.0f} s] {job[0]} {job[2]} seed {job[3]}: "
                      f"best {r['best_energy']:.4f} after {r['relaxations']} relaxations, "
                      f"{r['seconds']:.0f} s, reached={r['reached_target']}", flush=True)
            except Exception as exc:  # a failed run is reported, not fatal
                print(f"{job[:4]} failed: {exc!r}", flush=True)
    reports = [json.loads(Path(j[-1]).read_text()) for j in jobs if finished(j)]
    from ase_mlgen.cli.compare import format_table, plot
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    summary = summarise(reports)
    summary.update(plan=[dict(zip(["system", "calc", "seeds", "budget", "stop_at_known"], p))
                         for p in plan],
                   not_run=[list(j[:5]) for j in jobs if not finished(j)],
                   wall_seconds=time.time() - start, machine=machine_info(),
                   load_average=os.getloadavg(),
                   threads=args.threads, workers=args.workers,
                   note="LJ runs stop when the known global minimum is reached (the history "
                        "says when); LJ26/LJ38 (budget 300), Ga13 (GAP, 100) and Ga20 (GAP, 40) "
                        "at smaller budgets than the issue's 500 to fit a 2-core CPU; the "
                        "load averages in each run JSON say how busy the machine was")
    atomic_json_dump(summary, RESULTS / "search.json")
    plot(reports, RESULTS / "search.png")
    print(format_table(summary["rows"]))
    print(json.dumps(summary["systems"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
