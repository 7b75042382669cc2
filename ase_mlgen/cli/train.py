"""``ase-mlgen train MODEL …``: train a model, in the foreground or in the background.

``dart`` and ``hdnn`` (the structural baseline) are defined here. Other models add their own
sub-command without editing this file: a module ``cli_hooks`` next to the model with a function
``register_train(subparsers)``; the modules listed in :data:`TRAIN_HOOKS` are imported when they
exist. A hook module that is not there (``ImportError`` of that very module) simply leaves its
sub-command out; any other error inside a hook surfaces.
"""
from __future__ import annotations

import argparse
import importlib
import json

#: modules whose ``register_train(subparsers)`` adds a ``train`` sub-command
TRAIN_HOOKS = (
    "ase_mlgen.generators.megen.cli_hooks",
    "ase_mlgen.ding.cli_hooks",
    "ase_mlgen.inversion.cli_hooks",
    "ase_mlgen.generators.logan.cli_hooks",
)


def _import_hook(name: str):
    """The hook module, or None when it (or its package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # only a missing hook module (or a missing parent package of it) is tolerated; a missing
        # dependency *inside* an existing hook is a real error
        if exc.name and name.startswith(exc.name):
            return None
        raise


def run_energy_model(args: argparse.Namespace) -> int:
    from ase_mlgen.jobs import RunDirectory, submit

    if args.resume:
        rd = RunDirectory(args.out)
        config = rd.read_config()
        if args.max_epochs is not None:
            config["trainer"]["max_epochs"] = args.max_epochs
        if args.device:
            config["trainer"]["device"] = args.device
        config = {k: v for k, v in config.items() if k not in ("task", "loader")}
    else:
        if not args.data:
            raise ValueError("the training data (an ase.db or a structure file) is required")
        hyper = {}
        if args.kind == "dart":
            hyper["width"] = args.width
            if args.shells:
                hyper["shells"] = [float(x) for x in args.shells.split(",")]
        else:
            hyper["r_cut"] = args.r_cut
        trainer = {"device": args.device or "auto", "seed": args.seed,
                   "batch_size": args.batch_size, "lr": args.lr}
        if args.max_epochs is not None:
            trainer["max_epochs"] = args.max_epochs
        config = {"kind": args.kind, "data": args.data, "select": args.select,
                  "validation": args.validation, "validation_fraction": args.validation_fraction,
                  "split_seed": args.seed, "hyper": hyper, "trainer": trainer}
    loader = ("ase_mlgen.calculators.dart:load_run" if config["kind"] == "dart"
              else "ase_mlgen.nn.hdnn:load_run")
    job = submit("ase_mlgen.nn.training:train_task", config, args.out,
                 background=args.background, resume=args.resume, loader=loader)
    if args.background:
        print(json.dumps({"run": str(args.out), "pid": job.pid,
                          "status": f"ase-mlgen status {args.out}"}))
    else:
        result = job.run_dir.read_result() or {}
        print(json.dumps({"run": str(args.out), "state": "done", **result}, indent=2))
    return 0


def _add_energy_model(sub, kind: str, help_text: str) -> None:
    p = sub.add_parser(kind, help=help_text, description=help_text)
    p.add_argument("data", nargs="?", help="training data: ase.db (see --select) or a structure "
                                           "file with energies (extxyz, traj)")
    p.add_argument("--select", help="ase.db selection, e.g. 'natoms>=31'")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--validation", help="separate validation data file")
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="fraction split off for validation when --validation is not given")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="default auto: CUDA when available")
    p.add_argument("--background", action="store_true",
                   help="return at once; follow with ase-mlgen status RUN")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--max-epochs", type=int, default=None, help="default 2000 (or lr 1e-8)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    if kind == "dart":
        p.add_argument("--width", type=float, default=0.0,
                       help="TAD switch width in Å (0: the paper's integer TAD, no forces)")
        p.add_argument("--shells", help="shell radii in Å, e.g. 3.49,6.3,15 (default) or 3.49,6.3 (unbounded L shell)")
    else:
        p.add_argument("--r-cut", type=float, default=6.0, help="ACSF cut-off radius, Å")
    p.set_defaults(func=run_energy_model, kind=kind)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (DART, HDNN, MeGen, …)")
    sub = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    _add_energy_model(sub, "dart", "train DART (TAD per-atom energy model) on cluster energies")
    _add_energy_model(sub, "hdnn", "train the ACSF + per-atom MLP baseline (Behler-Parrinello)")
    for name in TRAIN_HOOKS:
        module = _import_hook(name)
        if module is not None:
            module.register_train(sub)
