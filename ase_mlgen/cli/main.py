"""Entry point of the ``ase-mlgen`` command: discovers the sub-command modules of ``ase_mlgen.cli``."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import ase_mlgen.cli as cli_package
from ase_mlgen._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ase-mlgen",
        description="Machine-learned structure generation for ASE (DART, MeGen, LoGAN, "
                    "ACSF inversion, DING).")
    parser.add_argument("--version", action="version", version=f"ase-mlgen {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"{cli_package.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"ase-mlgen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
