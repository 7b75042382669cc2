"""``ase-mlgen search METHOD``: one global search at a fixed relaxation budget, reported as JSON.

Example::

    ase-mlgen search random --system LJ13 --calc lj --budget 200 --seed 0 \\
        --db out.db --json random-0.json
    ase-mlgen search bh --system Ga13 --calc gap:../shared/data/ga/Ga_gap.xml --budget 200

Methods: ``random``, ``bh`` (ASE BasinHopping), ``mh`` (ASE MinimaHopping), ``ga`` (ase_ga
cluster GA), and the generators ``megen``, ``logan``, ``invert`` (``--model PATH``). Rerunning
a generator method with the same ``--db`` and ``--seed`` continues the stopped run.
"""
from __future__ import annotations

import argparse
import sys


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE; got {pair!r}")
        options[key.strip()] = value.strip()
    return options


def run(args: argparse.Namespace) -> int:
    from ase_mlgen.search.runner import run_search
    from ase_mlgen.utils.io import atomic_json_dump

    options = _parse_options(args.option)
    if args.model:
        options["model"] = args.model
    report = run_search(args.method, args.system, args.calc, budget=args.budget, seed=args.seed,
                        db=args.db, options=options, fmax=args.fmax,
                        steps_per_relaxation=args.steps_per_relaxation,
                        target_energy=args.target, stop_at_target=args.stop_at_target,
                        energy_tol=args.energy_tol, logfile="-" if args.verbose else None)
    if args.json:
        atomic_json_dump(report, args.json)
    unit = report["energy_unit"]
    best = report["best_energy"]
    print(f"{report['method']} on {report['system']} (seed {report['seed']}): best "
          f"{best:.6f} {unit}, {report['n_minima']} distinct minima, "
          f"{report['relaxations']} relaxations, {report['calls']} calls, "
          f"{report['seconds']:.1f} s ({100 * report['overhead_fraction']:.1f} % outside the "
          "calculator)", file=sys.stdout)
    if report.get("known_minimum") is not None:
        print(f"known global minimum {report['known_minimum']:.6f} {unit}: "
              f"{'found' if report['reached_target'] else 'not found'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="global search with one method at a fixed budget",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", help="random, bh, mh, ga, megen, logan or invert")
    p.add_argument("--system", required=True,
                   help="LJ13-style Lennard-Jones cluster, element+size (Ga13, Pt13), or a file")
    p.add_argument("--calc", default=None,
                   help="lj, emt, gap:PATH, gpaw, xtb (default: lj for LJ systems)")
    p.add_argument("--budget", type=int, default=200, help="local relaxations (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", default=None, help="ase.db file or URL for every candidate and minimum")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--model", default=None, help="trained model of a generator method")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable), e.g. --option temperature=0.8")
    p.add_argument("--fmax", type=float, default=0.05, help="relaxation threshold (eV/Å)")
    p.add_argument("--steps-per-relaxation", type=int, default=2000)
    p.add_argument("--energy-tol", type=float, default=0.01,
                   help="energy window of duplicate minima (eV)")
    p.add_argument("--target", type=float, default=None,
                   help="target energy (default: the known minimum of LJ systems)")
    p.add_argument("--stop-at-target", action="store_true",
                   help="stop as soon as the target energy is reached")
    p.add_argument("-v", "--verbose", action="store_true", help="log every step")
    p.set_defaults(func=run)
