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

        images = [row.toatoms(add_additional_information=False)
                  for row in connect(args.structures).select(args.select)]
        for atoms, row in zip(images, connect(args.structures).select(args.select)):
            atoms.info["reference_energy"] = row.get("energy")
    else:
        images = list(read(args.structures, args.index))
        for atoms in images:
            try:
                atoms.info["reference_energy"] = atoms.get_potential_energy()
            except Exception:  # no stored energy: nothing to compare with
                atoms.info["reference_energy"] = None
    energies = calc.predict(images)
    if args.parity:
        parity_plot(images, energies, args.parity)
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


def parity_plot(images, energies, path) -> None:
    """Predicted against stored (teacher) energies per atom, for the structures that have one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = [(a.info["reference_energy"] / len(a), e / len(a), len(a))
             for a, e in zip(images, energies) if a.info.get("reference_energy") is not None]
    if not pairs:
        raise ValueError("--parity needs structures with stored reference energies")
    ref, pred, n = map(np.array, zip(*pairs))
    mae = float(np.mean(np.abs((pred - ref) * n)))
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    sc = ax.scatter(ref, pred, c=n, s=10, cmap="viridis")
    lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("reference energy (eV/atom)")
    ax.set_ylabel("DART energy (eV/atom)")
    ax.set_title(f"{len(ref)} structures, MAE {mae:.3f} eV per structure", fontsize=9)
    fig.colorbar(sc, ax=ax, label="atoms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"parity plot: {path} (MAE {mae:.4f} eV per structure)", file=sys.stderr)


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="energies of structures from a trained DART model")
    p.add_argument("model", help="DART model file (model.pt) or a training run directory")
    p.add_argument("structures", help="structure file readable by ase.io, or an ase.db")
    p.add_argument("--index", default=":", help="ase.io index (default: all frames)")
    p.add_argument("--select", default=None, help="ase.db selection when reading a database")
    p.add_argument("--db", help="write structures with predicted energies to this ase.db")
    p.add_argument("--parity", help="also draw predicted against stored energies to this PNG")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)
