"""MeGen benchmark on Ga clusters with the GAP teacher → ``bench/results/megen.json`` + PNG.

Stages (run them together or one per process, then ``--stage collect``):

* ``train``  — PPO training of a growth policy (reward: ``--reward``, GAP by default; a DART
  model with ``dart:PATH``) on teacher-relaxed seeds of sizes 4–19; wall time and curve.
* ``table1`` — the paper's Table 1: for Ga(N−1)→GaN, seeds are the unique teacher minima of a
  short random search at N−1; MeGen (seeded), BasinHopping and random search each relax
  ``--budget`` candidates at N; unique isomers (paper criterion) within 0.5 and 1.0 eV of the
  lowest energy any method found, scaled per 100 relaxations.
* ``table2`` — the paper's Table 2: iterative growth Ga10→Ga15 from Ga10 seeds, ``--per-size``
  teacher relaxations per size; unique isomers within 0.5 / 1.0 eV per size.
* ``race``   — relaxations, calls and seconds until the lowest energy found by any run
  (median over ``--n-seeds`` seeds), MeGen (no seeds given: grown by the policy, then reseeded
  from the minima the search finds) versus ``bh``.
* ``speed``  — time to generate 1,000 candidates.

Everything is counted with the search machinery's ``CountingCalculator`` (relaxations, calls,
seconds). CPU-only, one torch thread; scale with the options (the defaults are the issue's full
protocol; ``--quick`` is what fits a shared CPU in ~25 minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")   # before quippy/torch load: no oversubscription

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PARTS = RESULTS / "megen_parts"
GAP = ROOT.parent / "shared" / "data" / "ga" / "Ga_gap.xml"


def _threads():
    import torch

    torch.set_num_threads(1)


def _teacher():
    return f"gap:{GAP}"


def relaxed_random_minima(n_atoms: int, n_relax: int, seed: int, calc_spec: str):
    """Unique teacher minima of a short random search (the seeds of a size)."""
    from ase_mlgen.generators.megen import unique
    from ase_mlgen.search.runner import run_search

    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "seed.db")
        report = run_search("random", f"Ga{n_atoms}", calc_spec, budget=n_relax, seed=seed, db=db)
        minima = _minima(db, "random", seed)
    minima = unique(sorted(minima, key=lambda a: a.info["energy"]), energy_tol=0.02)
    return minima, report


def dataset_minima(db: str, n_atoms: int) -> list:
    """The unique teacher minima of one size in a cluster dataset (``final=1`` rows), lowest
    first, with ``info["energy"]`` (eV)."""
    from ase_mlgen.data.clusters import load_dataset
    from ase_mlgen.generators.megen import unique

    minima = []
    for a in load_dataset(db, f"final=1,natoms={n_atoms}"):
        e = float(a.get_potential_energy())
        a.calc = None
        a.info = {"energy": e}
        minima.append(a)
    if not minima:
        raise SystemExit(f"no relaxed Ga{n_atoms} in {db}")
    return unique(sorted(minima, key=lambda a: a.info["energy"]), energy_tol=0.02)


def _minima(db, name, seed):
    from ase_mlgen.search.storage import SearchStorage

    out = []
    for row in SearchStorage(db, name, seed).minima_rows():
        atoms = row.toatoms()
        atoms.calc = None
        atoms.info = {"energy": float(row.energy), "step": int(row.step)}
        out.append(atoms)
    return out


def megen_search(n_atoms: int, budget: int, seed: int, calc_spec: str, options: dict,
                 target_energy=None):
    """GeneratorSearch with the MeGen generator; the generator sees every relaxed minimum
    (``GeneratorSearch.step`` reports each one to ``generator.observe``)."""
    from ase_mlgen.calculators.counting import CountingCalculator
    from ase_mlgen.calculators.specs import calculator_from_spec
    from ase_mlgen.generators.megen import make_search_generator
    from ase_mlgen.search.generator_search import GeneratorSearch
    from ase_mlgen.systems import parse_system

    system = parse_system(f"Ga{n_atoms}")
    gen = make_search_generator(system.template.copy(), seed, options)
    atoms = system.template.copy()
    atoms.calc = CountingCalculator(calculator_from_spec(calc_spec))
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "megen.db")
        search = GeneratorSearch(atoms, gen, logfile=None, trajectory=None, db=db, name="megen",
                                 seed=seed, target_energy=target_energy)
        t0 = time.perf_counter()
        while search.recorder.relaxations < budget:
            search.step()
            search.nsteps += 1
            search.call_observers()
        report = search.recorder.summary()
        report["session_wall_seconds"] = time.perf_counter() - t0
        # single-point energies MeGen spent on screening (oversample/beam), not in "calls"
        report["reward_calls"] = getattr(gen.megen, "n_reward_calls", None)
        minima = _minima(db, "megen", seed)
        report["steps"] = _steps(db, "megen", seed)
    return report, minima


def _steps(db, name, seed) -> list[dict]:
    """Per relaxation: the unrelaxed candidate (positions, predicted energy when screened), the
    relaxed energy, and the index of the distinct minimum it relaxed to (search criterion)."""
    from ase_mlgen.search.storage import SearchStorage

    storage = SearchStorage(db, name, seed)
    cands = {row.step: row for row in storage.connection.select(relaxed=0,
                                                                 **storage.selection)}
    out = []
    for row in storage.minima_rows():
        cand = cands.get(row.step)
        out.append({"step": int(row.step), "energy": float(row.energy),
                    "minimum": int(row.get("minimum", -1)),
                    "duplicate": int(row.get("duplicate_of", 0)) != 0,
                    "calls": int(row.get("calls", 0)),
                    "predicted_energy": (float(cand.get("predicted_energy"))
                                         if cand is not None and cand.get("predicted_energy")
                                         is not None else None),
                    "seed_index": int(cand.get("seed_index", -1)) if cand is not None else -1,
                    "candidate": (np.round(cand.positions, 4).tolist()
                                  if cand is not None else None)})
    return out


def baseline_search(method: str, n_atoms: int, budget: int, seed: int, calc_spec: str,
                    options: dict | None = None):
    from ase_mlgen.search.runner import run_search

    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, f"{method}.db")
        report = run_search(method, f"Ga{n_atoms}", calc_spec, budget=budget, seed=seed, db=db,
                            options=options)
        minima = _minima(db, method, seed)
    report.pop("best_structure", None)
    return report, minima


def _write_part(name: str, data: dict) -> None:
    from ase_mlgen.utils.io import atomic_json_dump

    PARTS.mkdir(parents=True, exist_ok=True)
    atomic_json_dump(data, PARTS / f"{name}.json")


def _save_seeds(path: Path, images):
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, images)


# -- stages ------------------------------------------------------------------------------------
def stage_train(args) -> None:
    """Seeds of sizes 4..19 from short random searches, then PPO with the reward calculator."""
    from ase.io import read

    from ase_mlgen.generators.megen import MeGen

    seed_file = PARTS / "train_seeds.xyz"
    t0 = time.perf_counter()
    seed_relax = 0
    if not seed_file.exists() and args.seed_db:
        # the teacher minima of a cluster dataset (ase-mlgen dataset clusters): the three lowest
        # of every size from 4 to max_atoms - 1 — no new teacher relaxations needed
        from ase_mlgen.data.clusters import load_dataset

        images = []
        finals = load_dataset(args.seed_db, "final=1")
        for n in range(4, args.max_atoms):
            of_n = sorted((a for a in finals if len(a) == n),
                          key=lambda a: a.get_potential_energy())[:3]
            for a in of_n:
                a.calc = None
            images += of_n
        if not images:
            raise SystemExit(f"no relaxed clusters of 4-{args.max_atoms - 1} atoms in "
                             f"{args.seed_db}")
        _save_seeds(seed_file, images)
    if not seed_file.exists():
        images = []
        for n in range(4, 20, 3):
            minima, rep = relaxed_random_minima(n, args.train_seed_relax, 100 + n, _teacher())
            seed_relax += rep["relaxations"]
            images += minima[:3]
        _save_seeds(seed_file, images)
    seed_seconds = time.perf_counter() - t0
    run = PARTS / "train_run"
    megen = MeGen(random_state=0)
    t1 = time.perf_counter()
    resume = (run / "config.json").exists()
    load_before = os.getloadavg()
    c1 = time.process_time()
    megen.train(run, seeds=list(read(seed_file, ":")), calculator=args.reward,
                iterations=args.iterations, episodes=args.episodes, minibatch=args.episodes,
                ppo_epochs=4, max_atoms=args.max_atoms, threads=1, device="cpu",
                resume=resume, time_limit=args.train_time_limit)
    train_seconds = time.perf_counter() - t1
    train_cpu_seconds = time.process_time() - c1
    megen.save(PARTS / "megen_ga.pt")
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    if (run / "curve.png").exists():
        import shutil

        shutil.copy(run / "curve.png", RESULTS / "megen_curve.png")
    _write_part("train", {"reward": args.reward, "iterations": args.iterations,
                          "iterations_done": len(records),
                          "time_limit": args.train_time_limit,
                          "train_cpu_seconds": train_cpu_seconds,
                          "load_before": load_before, "load_after": os.getloadavg(),
                          "seeds": len(read(seed_file, ":")),
                          "seed_db": args.seed_db, "max_atoms": args.max_atoms,
                          "episodes": args.episodes, "train_seconds": train_seconds,
                          "seed_seconds": seed_seconds, "seed_relaxations": seed_relax,
                          "first_return": records[0]["mean_return"],
                          "last_return": float(np.mean([r["mean_return"]
                                                        for r in records[-5:]])),
                          "first_valid": records[0]["valid_fraction"],
                          "last_valid": float(np.mean([r["valid_fraction"]
                                                       for r in records[-5:]])),
                          "energy_calls": records[-1]["energy_calls"], "threads": 1})


def _model_options(args) -> dict:
    model = PARTS / "megen_ga.pt"
    deadline = time.time() + args.wait_model
    while not model.exists() and not args.untrained and time.time() < deadline:
        time.sleep(10)
    opts = {"oversample": str(args.oversample), "reward": args.reward, "beam": str(args.beam)}
    if model.exists() and not args.untrained:
        opts["model"] = str(model)
    return opts


def stage_table1(args) -> None:
    from ase_mlgen.generators.megen import count_within

    out = {}
    for n in args.table1:
        t0 = time.perf_counter()
        if args.seed_db:
            seeds, seed_rep = dataset_minima(args.seed_db, n - 1), {"relaxations": 0}
        else:
            seeds, seed_rep = relaxed_random_minima(n - 1, args.seed_relax, 7 + n, _teacher())
        emin = seeds[0].info["energy"]
        seeds = [s for s in seeds if s.info["energy"] <= emin + 1.0][:5]
        seed_path = PARTS / f"seeds_Ga{n - 1}.xyz"
        _save_seeds(seed_path, seeds)
        runs = {}
        opts = {**_model_options(args), "seeds": str(seed_path)}
        runs["megen"] = megen_search(n, args.budget, 0, _teacher(), opts)
        runs["bh"] = baseline_search("bh", n, args.budget, 0, _teacher())
        runs["random"] = baseline_search("random", n, args.budget, 0, _teacher())
        lowest = min(min(m.info["energy"] for m in minima) for _, minima in runs.values())
        row = {"seeds": len(seeds), "seed_relaxations": seed_rep["relaxations"],
               "lowest_energy": lowest, "budget": args.budget, "methods": {}}
        for name, (rep, minima) in runs.items():
            c05 = count_within(minima, 0.5, reference=lowest)
            c10 = count_within(minima, 1.0, reference=lowest)
            row["methods"][name] = {
                "within_0.5": c05, "within_1.0": c10,
                "within_0.5_per_100": 100.0 * c05 / args.budget,
                "within_1.0_per_100": 100.0 * c10 / args.budget,
                "best_energy": rep["best_energy"], "calls": rep["calls"],
                "reward_calls": rep.get("reward_calls"),
                "seconds": rep["seconds"], "n_minima": rep["n_minima"]}
        row["wall_seconds"] = time.perf_counter() - t0
        out[f"Ga{n - 1}->Ga{n}"] = row
        _write_part(f"table1_Ga{n}", {f"Ga{n - 1}->Ga{n}": row})
        print(json.dumps({f"Ga{n}": row}, indent=1), flush=True)


def stage_table2(args) -> None:
    """Iterative growth Ga10→Ga15: the start seeds are teacher minima (the dataset's with
    ``--seed-db``, else a short random search); every size gets ``--per-size`` teacher relaxations
    (FIRE, fmax 0.05, at most 2000 steps, counted); the dataset's own random-start minima of the
    same sizes are the random-search comparison at its number of relaxations."""
    from ase_mlgen.calculators.counting import CountingCalculator
    from ase_mlgen.generators.megen import MeGen, count_within

    t0 = time.perf_counter()
    load_before = os.getloadavg()
    if args.seed_db:
        start = dataset_minima(args.seed_db, args.table2[0])
        seed_rep = dataset_seed_cost(args.seed_db, args.table2[0])
    else:
        start, seed_rep = relaxed_random_minima(args.table2[0], args.seed_relax, 11, _teacher())
    emin = start[0].info["energy"]
    start = [s for s in start if s.info["energy"] <= emin + 1.0][:5]
    model = PARTS / "megen_ga.pt"
    _model_options(args)
    megen = (MeGen.load(model, random_state=0) if model.exists() and not args.untrained
             else MeGen(random_state=0))
    megen.seeds = start
    if args.oversample > 1:
        from ase_mlgen.calculators.specs import calculator_from_spec

        megen.calculator = calculator_from_spec(args.reward)
        megen.oversample = args.oversample
        megen.predicted_tol = args.predicted_tol
    counted = CountingCalculator(_load_gap())
    per_size_cost = {}

    def on_size(size, minima):
        per_size_cost[size] = {"calls": counted.counter.calls,
                               "seconds": time.perf_counter() - t0}

    result = megen.iterate(args.table2[1], relax_calculator=counted, start=start,
                           per_size=args.per_size, keep=5, window=1.0, steps=2000,
                           callback=on_size)
    out = {"start": f"Ga{args.table2[0]}", "start_seeds": len(start),
           "seed_relaxations": seed_rep["relaxations"], "per_size": args.per_size,
           "oversample": args.oversample, "predicted_tol": args.predicted_tol,
           "model": str(model) if model.exists() else None,
           "reward": args.reward, "load_before": load_before, "load_after": os.getloadavg(),
           "sizes": {}, "wall_seconds": time.perf_counter() - t0,
           "reward_calls": megen.n_reward_calls}
    previous = 0
    for size, minima in result.items():
        row = {"unique_minima": len(minima), "lowest_energy": minima[0].info["energy"],
               "calls": per_size_cost[size]["calls"] - previous}
        previous = per_size_cost[size]["calls"]
        ref = minima[0].info["energy"]
        if args.seed_db:
            data = dataset_minima(args.seed_db, size)
            ref = min(ref, data[0].info["energy"])
            row["dataset_random"] = {
                "relaxations": dataset_seed_cost(args.seed_db, size)["relaxations"],
                "lowest_energy": data[0].info["energy"],
                "within_0.5": count_within(data, 0.5, reference=ref),
                "within_1.0": count_within(data, 1.0, reference=ref)}
        row["reference"] = ref
        row["within_0.5"] = count_within(minima, 0.5, reference=ref)
        row["within_1.0"] = count_within(minima, 1.0, reference=ref)
        out["sizes"][f"Ga{size}"] = row
    _write_part("table2", out)
    print(json.dumps(out, indent=1), flush=True)


def _load_gap():
    from ase_mlgen.calculators.gap import GAPCalculator

    return GAPCalculator(GAP)


def summarise_race(runs: dict, budget: int) -> dict:
    """Success and median relaxations/calls/seconds to the lowest energy of all runs."""
    lowest = min(r["best_energy"] for reps in runs.values() for r in reps)
    summary = {"lowest_energy": lowest, "budget": budget, "methods": {}}
    for name, reps in runs.items():
        hits = [next((h for h in r["history"] if h["energy"] <= lowest + 1e-3), None)
                for r in reps]
        found = [h for h in hits if h is not None]
        summary["methods"][name] = {
            "success": f"{len(found)}/{len(reps)}",
            "best_energies": [r["best_energy"] for r in reps],
            "median_relaxations": (float(np.median([h["relaxations"] for h in found]))
                                   if found else None),
            "median_calls": float(np.median([h["calls"] for h in found])) if found else None,
            "median_seconds": (float(np.median([h["seconds"] for h in found]))
                               if found else None),
            "reward_calls": [r.get("reward_calls") for r in reps],
            "relaxations_to_lowest": [h["relaxations"] if h else None for h in hits]}
    return summary


def stage_race(args) -> None:
    out = {}
    for n in args.race:
        runs = {"megen": [], "bh": []}
        for seed in range(args.n_seeds):   # interleaved, so that a cut-short run is fair
            rep, _ = megen_search(n, args.race_budget, seed, _teacher(), _model_options(args))
            runs["megen"].append(rep)
            _write_part(f"race_Ga{n}", {"runs": runs})
            rep, _ = baseline_search("bh", n, args.race_budget, seed, _teacher())
            runs["bh"].append(rep)
            _write_part(f"race_Ga{n}", {"runs": runs})
        summary = summarise_race(runs, args.race_budget)
        out[f"Ga{n}"] = summary
        _write_part("race", out)
        print(json.dumps({f"Ga{n}": summary}, indent=1), flush=True)


RUNS = None   # folder of the per-run JSON files of the "runs" stage (PARTS/runs)


def run_file(method: str, n_atoms: int, seed: int, tag: str = "") -> Path:
    return RUNS / f"{method}{tag}_Ga{n_atoms}_{seed}.json"


def execute_run(method: str, n_atoms: int, seed: int, budget: int, options: dict | None = None,
                tag: str = "") -> dict:
    """One search run (``bh``, ``random``, ``mh`` or ``megen``) with the GAP teacher, stored with
    its distinct minima (energy, positions) and the load average before and after."""
    from ase_mlgen.utils.io import atomic_json_dump

    path = run_file(method, n_atoms, seed, tag)
    if path.exists():
        return json.loads(path.read_text())
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if method == "megen":
        report, minima = megen_search(n_atoms, budget, seed, _teacher(), dict(options or {}))
    else:
        report, minima = baseline_search(method, n_atoms, budget, seed, _teacher(),
                                         options=options)
    report.pop("best_structure", None)
    out = {"method": method, "tag": tag, "system": f"Ga{n_atoms}", "seed": seed,
           "budget": budget, "options": dict(options or {}), "fmax": 0.05,
           "optimizer": "FIRE", "steps_per_relaxation": 2000,
           "load_before": load_before, "load_after": os.getloadavg(),
           "wall_seconds": time.perf_counter() - t0, "report": report,
           "minima": [{"energy": float(m.info["energy"]), "step": int(m.info.get("step", -1)),
                       "positions": np.round(m.positions, 5).tolist()}
                      for m in sorted(minima, key=lambda a: a.info["energy"])]}
    RUNS.mkdir(parents=True, exist_ok=True)
    atomic_json_dump(out, path)
    print(f"{path.name}: best {report['best_energy']:.4f} eV, {report['relaxations']} "
          f"relaxations, {report['calls']} calls, {out['wall_seconds']:.0f} s, "
          f"load {load_before[0]:.1f}", flush=True)
    return out


def run_minima(run: dict) -> list:
    """The stored minima of a run as ``Atoms`` with ``info["energy"]`` (eV)."""
    from ase import Atoms

    n = len(run["minima"][0]["positions"]) if run["minima"] else 0
    element = "Ga"
    return [Atoms(f"{element}{n}", positions=m["positions"], info={"energy": m["energy"]})
            for m in run["minima"]]


def stage_runs(args) -> None:
    """Work through the job file ``--jobs`` (one JSON object per line: method, n, seed,
    budget, options, tag); the file is re-read before each job, so jobs can be appended while
    the queue runs; finished runs are skipped. ``PAUSE`` in the runs folder holds the queue."""
    done_any = True
    while done_any:
        done_any = False
        for line in Path(args.jobs).read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            job = json.loads(line)
            if run_file(job["method"], job["n"], job["seed"], job.get("tag", "")).exists():
                continue
            while (RUNS / "PAUSE").exists():
                time.sleep(20)
            execute_run(job["method"], job["n"], job["seed"], job["budget"],
                        job.get("options"), job.get("tag", ""))
            done_any = True
            break


REF_SIZES = (8, 13, 18, 20, 30)
#: a run "reaches" the reference when its best energy is within this many eV of it
REACH_TOL = 0.01


def load_runs() -> dict:
    """``{(label, "GaN"): [run, ...]}`` of the stored runs (label = method + tag), by seed."""
    runs: dict = {}
    for path in sorted(RUNS.glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault((run["method"] + run.get("tag", ""), run["system"]), []).append(run)
    for reps in runs.values():
        reps.sort(key=lambda r: r["seed"])
    return runs


def dataset_seed_cost(db: str, n_atoms: int) -> dict:
    """Teacher relaxations and calls the dataset spent at ``n_atoms`` (its seeds of size
    ``n_atoms + 1``): one relaxation per final row, ``frame + 1`` calls each."""
    from ase.db import connect

    with connect(db) as con:
        rows = list(con.select(f"final=1,natoms={n_atoms}"))
    return {"relaxations": len(rows), "calls": int(sum(r.get("frame", 0) + 1 for r in rows))}


def references(args, runs: dict) -> dict:
    """Lowest GAP energy of every size in :data:`REF_SIZES` from all sources (eV)."""
    out = {}
    for n in REF_SIZES:
        sources = {}
        if args.seed_db:
            try:
                mins = dataset_minima(args.seed_db, n)
                sources["dataset " + Path(args.seed_db).name] = {
                    "energy": mins[0].info["energy"],
                    "relaxations": dataset_seed_cost(args.seed_db, n)["relaxations"]}
            except SystemExit:
                pass
        for path in sorted((RESULTS / "search_runs").glob(f"Ga{n}_*.json")):
            rep = json.loads(path.read_text())
            if rep.get("best_energy") is not None:
                sources[f"search_runs/{path.name}"] = {"energy": rep["best_energy"],
                                                      "relaxations": rep["relaxations"]}
        for key, r in reference_runs(n).items():
            sources[f"ga_reference {key}"] = {"energy": r["best_energy"],
                                              "relaxations": r["relaxations"]}
        for (label, system), reps in runs.items():
            if system != f"Ga{n}":
                continue
            for r in reps:
                if r["report"]["best_energy"] is not None:
                    sources[f"{label} seed {r['seed']}"] = {
                        "energy": r["report"]["best_energy"],
                        "relaxations": r["report"]["relaxations"]}
        if not sources:
            continue
        best = min(sources, key=lambda k: sources[k]["energy"])
        out[f"Ga{n}"] = {"energy": sources[best]["energy"], "source": best,
                         "sources": sources}
    return out


def _isomer_counts(run: dict, lowest: float, cut: int) -> dict:
    from ase_mlgen.generators.megen import count_within

    minima = [m for m, row in zip(run_minima(run), run["minima"]) if row["step"] < cut]
    return {"within_0.5": count_within(minima, 0.5, reference=lowest) if minima else 0,
            "within_1.0": count_within(minima, 1.0, reference=lowest) if minima else 0,
            "within_0.5_fingerprint": (count_within(minima, 0.5, reference=lowest,
                                                    method="fingerprint") if minima else 0),
            "relaxations": min(cut, run["report"]["relaxations"])}


def table1_report(args, runs: dict, refs: dict) -> dict:
    """Unique isomers (paper criterion; within 0.5 eV also by the fingerprint criterion) within
    0.5 / 1.0 eV of the lowest energy of the table's runs, per seed and per 100 teacher relaxations, at equal relaxations (the smallest budget of
    the methods). MeGen twice: without its seeds' cost, and with the seed relaxations counted
    (its first ``budget − seed relaxations`` relaxations only)."""
    out = {}
    for n in args.table1:
        system = f"Ga{n}"
        mine = {label: reps for (label, s), reps in runs.items() if s == system}
        if not mine:
            continue
        budget = min(r["budget"] for reps in mine.values() for r in reps)
        lowest = min(m["energy"] for reps in mine.values() for r in reps for m in r["minima"])
        seed_cost = (dataset_seed_cost(args.seed_db, n - 1)["relaxations"]
                     if args.seed_db else 0)
        row = {"budget": budget, "lowest_energy": lowest,
               "reference_energy": refs.get(system, {}).get("energy"),
               "seed_relaxations": seed_cost, "methods": {}}
        for label, reps in sorted(mine.items()):
            variants = {label: budget}
            if reps[0].get("options", {}).get("seeds"):             # dataset seeds used
                variants[label + " (seed relaxations counted)"] = budget - seed_cost
            for name, cut in variants.items():
                per_seed = [_isomer_counts(r, lowest, cut) for r in reps] if cut > 0 else []
                if not per_seed:
                    row["methods"][name] = {"note": f"budget {budget} <= {seed_cost} seed "
                                                    "relaxations"}
                    continue
                c05 = [c["within_0.5"] for c in per_seed]
                c10 = [c["within_1.0"] for c in per_seed]
                c05_fp = [c["within_0.5_fingerprint"] for c in per_seed]
                row["methods"][name] = {
                    "seeds": [r["seed"] for r in reps], "own_relaxations": cut,
                    "counted_relaxations": budget if cut < budget else cut,
                    "within_0.5": c05, "within_1.0": c10,
                    "mean_within_0.5": float(np.mean(c05)),
                    "mean_within_1.0": float(np.mean(c10)),
                    "within_0.5_fingerprint": c05_fp,
                    "mean_within_0.5_fingerprint": float(np.mean(c05_fp)),
                    "within_0.5_per_100": 100.0 * float(np.mean(c05)) / budget,
                    "within_1.0_per_100": 100.0 * float(np.mean(c10)) / budget,
                    "best_energies": [r["report"]["best_energy"] for r in reps]}
                if name == label and name + " (seed relaxations counted)" in variants:
                    total = cut + seed_cost      # the paper's normalisation, seeds included
                    row["methods"][name]["within_0.5_per_100_incl_seeds"] = \
                        100.0 * float(np.mean(c05)) / total
                    row["methods"][name]["within_1.0_per_100_incl_seeds"] = \
                        100.0 * float(np.mean(c10)) / total
        bh = row["methods"].get("bh", {}).get("mean_within_0.5")
        for name, m in row["methods"].items():
            if bh and "mean_within_0.5" in m:
                m["ratio_to_bh_0.5"] = m["mean_within_0.5"] / bh
        out[f"Ga{n - 1}->Ga{n}"] = row
    return out


def reference_runs(n_atoms: int) -> dict:
    """The long searches of ``bench/ga_reference.py`` kept in ``PARTS/ga_reference.json``
    (``{"bh/seed0/budget300": run, ...}``), if any."""
    path = PARTS / "ga_reference.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())["sizes"].get(f"Ga{n_atoms}", {}).get("runs", {})


def search_benchmark_runs(n_atoms: int, method: str) -> list[dict]:
    """Runs of ``bench/search.py`` (``search_runs/GaN_METHOD_SEED.json``) in this script's run
    format (history, best energy, calls; no minima)."""
    out = []
    for path in sorted((RESULTS / "search_runs").glob(f"Ga{n_atoms}_{method}_*.json")):
        rep = json.loads(path.read_text())
        out.append({"method": method, "seed": rep["seed"], "budget": rep["budget"],
                    "report": rep, "minima": [],
                    "load_before": rep.get("load_before") or [float("nan")] * 3})
    return out


def race_report(args, runs: dict, refs: dict) -> dict:
    """Relaxations, calls and seconds until a run's best energy is within :data:`REACH_TOL` of
    the reference (all sources); median over the seeds that reached it, and with the failures
    counted as "more than the budget" (median is ``None`` when half or more failed)."""
    out = {}
    for n in args.race:
        system = f"Ga{n}"
        if system not in refs:
            continue
        ref = refs[system]["energy"]
        row = {"reference_energy": ref, "reference_source": refs[system]["source"],
               "tolerance": REACH_TOL, "methods": {}}
        extra = {}
        if args.seed_db:
            extra = dataset_seed_cost(args.seed_db, n - 1)
        mine = {label: reps for (label, s), reps in runs.items() if s == system}
        if "bh" not in mine:          # the search benchmark's runs (same protocol), when there
            bench = search_benchmark_runs(n, "bh")
            if bench:
                mine["bh"] = bench
                row["bh_from"] = "bench/results/search_runs"
        long_runs = [{"method": "bh", "seed": int(key.split("/seed")[1].split("/")[0]),
                      "budget": r["relaxations"], "report": r, "minima": [],
                      "load_before": r.get("load_average") or [float("nan")] * 3}
                     for key, r in reference_runs(n).items() if key.startswith("bh/")]
        if long_runs:
            mine["bh long (ga_reference)"] = long_runs
        for label, reps in sorted(mine.items()):
            if label == "random":
                continue
            variants = {label: {"relaxations": 0, "calls": 0}}
            if extra and reps[0].get("options", {}).get("seeds"):   # dataset seeds used
                variants[label + " (seed relaxations counted)"] = extra
            for name, add in variants.items():
                hits = [next((h for h in r["report"]["history"]
                              if h["energy"] <= ref + REACH_TOL), None) for r in reps]
                per = {k: [h[k] + add.get(k, 0) if h else None for h in hits]
                       for k in ("relaxations", "calls", "seconds")}

                def median(values, budget_of=None):
                    vals = [v if v is not None else np.inf for v in values]
                    m = float(np.median(vals))
                    return m if np.isfinite(m) else None

                row["methods"][name] = {
                    "success": f"{sum(h is not None for h in hits)}/{len(reps)}",
                    "seeds": [r["seed"] for r in reps],
                    "budget": [r["budget"] for r in reps],
                    "best_energies": [r["report"]["best_energy"] for r in reps],
                    **{f"{k}_to_reference": v for k, v in per.items()},
                    **{f"median_{k}": median(v) for k, v in per.items()},
                    "total_calls": [r["report"]["calls"] + add.get("calls", 0) for r in reps],
                    "reward_calls": [r["report"].get("reward_calls") for r in reps],
                    "load_before": [round(r["load_before"][0], 2) for r in reps]}
        out[system] = row
    return out


def stage_report(args) -> None:
    """References, Table 1 and the race from the stored runs → ``PARTS/report.json``."""
    runs = load_runs()
    refs = references(args, runs)
    report = {"references": refs, "table1": table1_report(args, runs, refs),
              "race": race_report(args, runs, refs), "load_now": os.getloadavg()}
    _write_part("report", report)
    print(json.dumps({k: v for k, v in report.items() if k != "references"}, indent=1))
    print(json.dumps({k: {"energy": v["energy"], "source": v["source"]}
                      for k, v in refs.items()}, indent=1))


def stage_seeds(args) -> None:
    """Seed files ``PARTS/seeds_GaM.xyz`` for every size M = N−1 of Table 1 and the race: the
    unique teacher minima of the dataset within 1 eV of its lowest (at most 5)."""
    if not args.seed_db:
        raise SystemExit("--stage seeds needs --seed-db")
    for n in sorted(set(args.table1) | set(args.race)):
        seeds = dataset_minima(args.seed_db, n - 1)
        emin = seeds[0].info["energy"]
        seeds = [s for s in seeds if s.info["energy"] <= emin + 1.0][:5]
        _save_seeds(PARTS / f"seeds_Ga{n - 1}.xyz", seeds)
        print(f"Ga{n - 1}: {len(seeds)} seeds, {[round(s.info['energy'], 3) for s in seeds]}")


def stage_usable(args) -> None:
    """Is the trained policy usable? For Ga(N−1)→GaN (N = 8, 13, 18, 20): 200 candidates from
    the dataset's N−1 minima by the untrained and the trained policy; the teacher's single-point
    energy released by the placed atom (eV, larger is better) and the Spearman correlation of
    DART and GAP energies among candidates of one seed (how well the reward ranks sites)."""
    from scipy.stats import spearmanr

    from ase_mlgen.calculators.specs import calculator_from_spec
    from ase_mlgen.generators.megen import MeGen
    from ase_mlgen.generators.megen.env import energies_of

    gap = calculator_from_spec(_teacher())
    dart = calculator_from_spec(args.reward)
    model = PARTS / "megen_ga.pt"
    out = {"model": str(model), "reward": args.reward, "candidates": 200,
           "load_before": os.getloadavg(), "sizes": {}}
    for n in (8, 13, 18, 20):
        seeds = dataset_minima(args.seed_db, n - 1)
        emin = seeds[0].info["energy"]
        seeds = [s for s in seeds if s.info["energy"] <= emin + 1.0][:5]
        e_seed = np.array([s.info["energy"] for s in seeds])
        row = {}
        for name, megen in (("untrained", MeGen(seeds=seeds, random_state=0)),
                            ("trained", MeGen.load(model, seeds=seeds, random_state=0))):
            t0 = time.perf_counter()
            cands = megen.generate(200)
            seconds = time.perf_counter() - t0
            idx = np.array([a.info["seed_index"] for a in cands])
            e_gap = energies_of(cands, gap)
            e_dart = energies_of(cands, dart)
            released = e_seed[idx] - e_gap
            rho = [spearmanr(e_dart[idx == k], e_gap[idx == k]).correlation
                   for k in range(len(seeds)) if (idx == k).sum() >= 5]
            row[name] = {"released_mean": float(released.mean()),
                         "released_median": float(np.median(released)),
                         "released_best": float(released.max()),
                         "released_dart_top10_mean": float(released[np.argsort(e_dart)[:10]]
                                                           .mean()),
                         "spearman_dart_gap_within_seed": float(np.nanmean(rho)),
                         "generate_seconds": seconds}
        out["sizes"][f"Ga{n - 1}->Ga{n}"] = row
        print(f"Ga{n}", json.dumps(row), flush=True)
    out["load_after"] = os.getloadavg()
    _write_part("usable", out)


def stage_speed(args) -> None:
    import torch

    from ase_mlgen.generators.megen import MeGen

    model = PARTS / "megen_ga.pt"
    megen = MeGen.load(model) if model.exists() else MeGen()
    seeds_file = PARTS / "seeds_Ga17.xyz"
    if seeds_file.exists():
        from ase.io import read

        megen.seeds = list(read(seeds_file, ":"))
    else:
        megen.seeds = megen.grow([megen.seeds[0]] * 4, 17)
    megen.generate(10)
    out = {"threads": torch.get_num_threads()}
    for dedupe in (None, "paper"):
        megen.dedupe = dedupe
        t0, c0 = time.perf_counter(), time.process_time()
        cands = megen.generate(1000)
        out[f"dedupe={dedupe}"] = {"candidates": len(cands), "atoms": len(cands[0]),
                                   "wall_seconds": time.perf_counter() - t0,
                                   "cpu_seconds": time.process_time() - c0}
    _write_part("speed", out)
    print(json.dumps(out), flush=True)


def stage_collect(args) -> None:
    """``bench/results/megen.json`` and ``megen.png`` from the parts (train, dart_test, usable,
    report = references + Table 1 + race, table2, speed, site_check)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ase_mlgen.utils.io import atomic_json_dump

    result = {"teacher": f"GAP ({GAP.name}), FIRE to fmax 0.05 eV/Å, at most 2000 steps, for "
                         "every method", "machine": os.uname().nodename, "cpus": os.cpu_count(),
              "parts": str(PARTS.relative_to(ROOT)) if PARTS.is_relative_to(ROOT)
              else str(PARTS),
              "note": "counts by the paper's duplicate criterion; every teacher relaxation of a "
                      "run is counted; the dataset's seed relaxations are counted in the "
                      "'(seed relaxations counted)' rows. Timings were taken on a shared "
                      "2-core machine (load averages recorded with each part)"}
    for part in ("train", "dart_test", "usable", "report", "table2", "speed", "site_check"):
        path = PARTS / f"{part}.json"
        if path.exists():
            result[part] = json.loads(path.read_text())
    atomic_json_dump(result, RESULTS / "megen.json")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    table1 = result.get("report", {}).get("table1", {})
    if table1:
        labels = list(table1)
        names = ["megen", "megen (seed relaxations counted)", "megen_paper", "bh", "random"]
        names = [m for m in names if any(m in table1[l]["methods"] for l in labels)]
        x = np.arange(len(labels))
        w = 0.8 / len(names)
        for k, m in enumerate(names):
            vals = [table1[l]["methods"].get(m, {}).get("within_0.5_per_100", np.nan)
                    for l in labels]
            axes[0].bar(x + w * (k - (len(names) - 1) / 2), vals, w, label=m)
        axes[0].set_xticks(x, [f"{l}\n({table1[l]['budget']} relax.)" for l in labels])
        axes[0].set_ylabel("unique isomers within 0.5 eV per 100 relaxations")
        axes[0].legend(fontsize=7)
        axes[0].set_title("Table 1 (mean over seeds)")
    run = PARTS / "train_run" / "log.jsonl"
    if run.exists():
        recs = [json.loads(line) for line in run.read_text().splitlines()]
        it = [r["epoch"] for r in recs]
        ret = np.array([r["mean_return"] for r in recs])
        axes[1].plot(it, ret, lw=0.5, alpha=0.5, label="mean return (eV)")
        k = 20
        if len(ret) > k:
            axes[1].plot(it[k - 1:], np.convolve(ret, np.ones(k) / k, "valid"),
                         label=f"running mean of {k}")
        axes[1].plot(it, [r["valid_fraction"] for r in recs], label="valid fraction")
        axes[1].set_xlabel("PPO iteration (64 episodes)")
        axes[1].legend(fontsize=7)
        secs = result.get("train", {}).get("train_seconds")
        axes[1].set_title(f"training, DART reward ({secs:.0f} s)" if secs else "training")
    race = result.get("report", {}).get("race", {})
    if race:
        labels = list(race)
        names = sorted({m for l in labels for m in race[l]["methods"]})
        x = np.arange(len(labels))
        w = 0.8 / max(len(names), 1)
        for k, m in enumerate(names):
            xs = x + w * (k - (len(names) - 1) / 2)
            med = [race[l]["methods"].get(m, {}).get("median_relaxations") or np.nan
                   for l in labels]
            bars = axes[2].bar(xs, med, w, label=m)
            for xi, l in zip(xs, labels):
                pts = race[l]["methods"].get(m, {}).get("relaxations_to_reference", [])
                budget = race[l]["methods"].get(m, {}).get("budget", [0])
                ys = [v if v is not None else max(budget) * 1.05 for v in pts]
                axes[2].scatter([xi] * len(ys), ys, s=8, color="k", zorder=3)
            del bars
        axes[2].set_xticks(x, [f"{l}\n{race[l]['methods'].get('megen', {}).get('success', '')}"
                               f" / {race[l]['methods'].get('bh', {}).get('success', '')}"
                               for l in labels])
        axes[2].set_ylabel("relaxations to the reference (median; dots: seeds)")
        axes[2].set_title("race (dots above the budget: not reached)")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "megen.png", dpi=100)
    print(json.dumps({k: v for k, v in result.items() if k not in ("report",)}, indent=1)[:3000])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", nargs="+", default=["train", "speed", "table1", "table2", "race",
                                                  "collect"])
    p.add_argument("--reward", default=None, help="reward calculator spec (default: GAP)")
    p.add_argument("--iterations", type=int, default=120)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--train-time-limit", type=float, default=None,
                   help="seconds: PPO stops after the iteration that reaches it")
    p.add_argument("--train-seed-relax", type=int, default=6)
    p.add_argument("--seed-db", default=None,
                   help="take the training seeds from the relaxed rows of this cluster dataset "
                        "(ase-mlgen dataset clusters) instead of new random searches")
    p.add_argument("--max-atoms", type=int, default=20, help="largest cluster grown in training")
    p.add_argument("--parts", default=str(RESULTS / "megen_parts"),
                   help="folder of the stage results and the trained model")
    p.add_argument("--table1", type=int, nargs="+", default=[8, 18, 30])
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--seed-relax", type=int, default=20)
    p.add_argument("--table2", type=int, nargs=2, default=[10, 15])
    p.add_argument("--per-size", type=int, default=50)
    p.add_argument("--race", type=int, nargs="+", default=[13, 18, 20])
    p.add_argument("--race-budget", type=int, default=200)
    p.add_argument("--n-seeds", type=int, default=5)
    p.add_argument("--oversample", type=int, default=4,
                   help="MeGen proposes oversample x n candidates and keeps the n lowest by reward")
    p.add_argument("--predicted-tol", type=float, default=None,
                   help="eV: screened candidates with equal predicted energy count once")
    p.add_argument("--beam", type=int, default=4,
                   help="width of MeGen's growth beam from a dimer when no seeds are known")
    p.add_argument("--untrained", action="store_true")
    p.add_argument("--jobs", default=None, help="job file of the 'runs' stage (JSON lines)")
    p.add_argument("--wait-model", type=float, default=0.0,
                   help="seconds to wait for the trained model of a parallel train stage")
    p.add_argument("--quick", action="store_true",
                   help="scaled down for a shared CPU (options left at their defaults): Ga8/Ga18 "
                        "budget 20, Ga10→12 with 8 per size, Ga13 race 3 seeds × 20")
    args = p.parse_args(argv)
    if args.quick:   # scaled-down values for options left at their defaults
        quick = dict(iterations=40, episodes=32, table1=[8, 18], budget=20, seed_relax=8,
                     table2=[10, 12], per_size=8, race=[13], race_budget=20, n_seeds=3,
                     train_seed_relax=4)
        for key, value in quick.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    args.reward = args.reward or _teacher()
    global PARTS, RUNS
    PARTS = Path(args.parts)
    RUNS = PARTS / "runs"
    _threads()
    for stage in args.stage:
        globals()[f"stage_{stage}"](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
