"""``python -m ase_mlgen.jobs.worker RUN_DIR [--resume]``: the body of a background run."""
from __future__ import annotations

import argparse
import sys

from ase_mlgen.jobs.job import run_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_task(args.run_dir, resume=args.resume)
    except BaseException:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
