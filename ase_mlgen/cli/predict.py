"""``ase-mlgen predict MODEL STRUCTURES [--db OUT]``: energies of structures from a trained model."""
from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ase.io import read

    from ase_mlgen.calculators.dart import DART

    calc = DART.load(args.model, device=args.device)
    if args.structures.endswith(".db"):
        from ase.db import connect

        images = [row.toatoms() for row in connect(args.structures).select(args.select)]
    else:
        images = list(read(args.structures, args.index))
    energies = calc.predict(images)
    if args.db:
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.db import connect

        with connect(args.db) as con:
            for k, (atoms, e) in enumerate(zip(images, energies)):
                atoms = atoms.copy()
                atoms.calc = SinglePointCalculator(atoms, energy=float(e))
                con.write(atoms, model="dart", index=k, source=str(args.structures))
        print(f"wrote {len(images)} predictions to {args.db}", file=sys.stderr)
    else:
        print("index natoms energy_eV energy_per_atom_eV")
        for k, (atoms, e) in enumerate(zip(images, energies)):
            print(f"{k} {len(atoms)} {e:.6f} {e / len(atoms):.6f}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="energies of structures from a trained DART model")
    p.add_argument("model", help="DART model file (model.pt) or a training run directory")
    p.add_argument("structures", help="structure file readable by ase.io, or an ase.db")
    p.add_argument("--index", default=":", help="ase.io index (default: all frames)")
    p.add_argument("--select", default=None, help="ase.db selection when reading a database")
    p.add_argument("--db", help="write structures with predicted energies to this ase.db")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)
