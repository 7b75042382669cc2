"""``ase-mlgen status RUN``: epoch, losses and time left of a training run."""
from __future__ import annotations

import argparse
import json

from ase_mlgen.jobs.job import format_status
from ase_mlgen.jobs.run_directory import RunDirectory


def run(args: argparse.Namespace) -> int:
    rd = RunDirectory(args.run)
    rd.read_config()  # refuses a directory that is not a run
    status = rd.summary()
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 1 if status["state"] == "failed" else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("status", help="show the progress of a training run")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
