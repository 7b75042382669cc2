"""Small tuning runs behind the search defaults (session 2), on seeds 100+ (the benchmark uses
seeds 0-4). Appends one JSON line per result to bench/results/search_tuning.jsonl.

    python bench/search_tune.py randhit LJ19 150 0.3 0.5 0.65   # GM hits of random starts
    python bench/search_tune.py run LJ19 bh 300 100,101,102 [KEY=VALUE ...]  # to the known GM
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from ase.optimize import FIRE  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "search_tuning.jsonl"


def main(argv: list[str]) -> None:
    from ase_mlgen.calculators.lennard_jones import FullLennardJones
    from ase_mlgen.generators.random import make_search_generator
    from ase_mlgen.search.runner import run_search
    from ase_mlgen.systems import parse_system

    what = argv[0]
    with open(OUT, "a") as out:
        def emit(result):
            result["load_average"] = os.getloadavg()
            print(result, flush=True)
            out.write(json.dumps(result) + "\n")
            out.flush()

        if what == "randhit":
            system, n = argv[1], int(argv[2])
            sysm = parse_system(system)
            for packing in [float(x) for x in argv[3:]]:
                gen = make_search_generator(sysm.template, 0, {"packing": packing})
                rng = np.random.default_rng(123)
                hits, steps, energies, start = 0, 0, [], time.time()
                for _ in range(n):
                    atoms = gen.generate(1, rng=rng)[0]
                    atoms.calc = FullLennardJones()
                    opt = FIRE(atoms, logfile=None)
                    opt.run(fmax=0.05, steps=2000)
                    steps += opt.nsteps
                    energies.append(atoms.get_potential_energy())
                    hits += energies[-1] < sysm.known_minimum + 1e-3
                emit(dict(kind="randhit", system=system, packing=packing, n=n, hits=int(hits),
                          mean_steps=steps / n, median_e=float(np.median(energies)),
                          sec=time.time() - start))
        else:
            system, method, budget = argv[1], argv[2], int(argv[3])
            seeds = [int(s) for s in argv[4].split(",")]
            opts = dict(kv.split("=", 1) for kv in argv[5:])
            for seed in seeds:
                r = run_search(method, system, "lj", budget=budget, seed=seed, options=opts,
                               stop_at_target=True)
                emit(dict(kind="run", system=system, method=method, opts=opts, seed=seed,
                          budget=budget, reached=r["reached_target"], relax=r["relaxations"],
                          calls=r["calls"], sec=round(r["seconds"], 1), best=r["best_energy"]))


if __name__ == "__main__":
    main(sys.argv[1:])
