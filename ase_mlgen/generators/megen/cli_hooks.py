"""``ase-mlgen train megen …``: the MeGen sub-command of ``ase-mlgen train``.

``ase_mlgen.cli.train`` discovers this module and calls :func:`register_train` with the
sub-parsers of ``train``. Examples::

    ase-mlgen train megen --calc dart:dart.pt --seeds ga_seeds.xyz --out runs/megen1 --background
    ase-mlgen train megen --calc gap:Ga_gap.xml --seeds dimer --max-atoms 20 --out runs/grow20
    ase-mlgen status runs/megen1
    ase-mlgen train megen --out runs/megen1 --resume       # settings come from the run
"""
from __future__ import annotations

import argparse
import json


def run_train(args: argparse.Namespace) -> int:
    from ase_mlgen.generators.megen.generator import MeGen
    from ase_mlgen.jobs import RunDirectory

    if args.resume:
        config = RunDirectory(args.out).read_config()
        megen = MeGen(element=config.get("element", "Ga"), device=args.device or "auto")
        calc, seeds = config["calculator"], config["seeds"]
        hyper = {k: v for k, v in config.items()
                 if k not in ("calculator", "seeds", "element", "rules", "policy", "task",
                              "loader")}
    else:
        if not args.calc:
            raise ValueError("--calc is required (the reward calculator, e.g. dart:PATH)")
        policy_kwargs = {"focal": args.focal}
        megen = MeGen(element=args.element, device=args.device or "auto",
                      policy_kwargs=policy_kwargs, random_state=args.seed)
        calc, seeds = args.calc, args.seeds
        hyper = {"iterations": args.iterations, "episodes": args.episodes,
                 "bag_size": args.bag_size, "max_atoms": args.max_atoms, "seed": args.seed,
                 "lr": args.lr, "entropy_coef": args.entropy_coef, "threads": args.threads,
                 "time_limit": args.time_limit}
    if args.device:
        hyper["device"] = args.device
    result = megen.train(args.out, seeds=seeds, calculator=calc, background=args.background,
                         resume=args.resume, **hyper)
    if args.background:
        print(json.dumps({"run": str(args.out), "pid": result.pid}))
    else:
        print(json.dumps({"run": str(args.out), "state": "done"}))
    return 0


def register_train(subparsers) -> None:
    p = subparsers.add_parser("megen", help="train a MeGen growth policy with PPO")
    p.add_argument("--calc", help="reward calculator spec: dart:PATH (default choice), gap:PATH, "
                                  "emt, lj")
    p.add_argument("--seeds", default="dimer",
                   help="seed clusters (file readable by ase.io, ase.db, or 'dimer')")
    p.add_argument("--element", default="Ga")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--iterations", type=int, default=40, help="PPO iterations")
    p.add_argument("--episodes", type=int, default=64, help="parallel episodes per iteration")
    p.add_argument("--bag-size", type=int, default=1, help="atoms placed per episode")
    p.add_argument("--max-atoms", type=int, default=20, help="largest cluster grown")
    p.add_argument("--focal", choices=("random", "learned"), default="random")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--entropy-coef", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop after the iteration that reaches this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--background", action="store_true", help="return at once; watch with "
                                                              "'ase-mlgen status RUN'")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=run_train)
