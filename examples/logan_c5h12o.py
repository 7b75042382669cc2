"""LoGAN at small scale: C5H12O isomers from C4H10O and C6H14O molecules (none is C5H12O).

    python examples/logan_c5h12o.py [--data ../shared/data/logan/C5H12O/C5H12O_training.extxyz]
                                    [--models 2] [--epochs 2000] [--k 15]

Trains a small ensemble (generator snapshots every 250 epochs from epoch 1000 are kept and all
sampled: a generator visits different isomers while it trains), generates candidates, picks k of
them by their unrelaxed bond graphs (``molecule_representatives``: one per distinct valid
molecule, then one per heavy-atom skeleton not covered yet with its hydrogens rebuilt, then
PCA + k-means among the plausible rest, the paper's filter) — relaxes them
with GFN2-xTB (extra ``xtb``; skipped with a message when tblite is missing) and prints the
C5H12O isomers found. Two models × 2000 epochs take a few minutes per model on one CPU core and
find fewer isomers than ``bench/logan.py``, the full experiment (6 models × 2800 epochs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "logan" / "C5H12O" / "C5H12O_training.extxyz"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--models", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--per-model", type=int, default=2000)
    p.add_argument("--k", type=int, default=15)
    p.add_argument("--out", default="runs/logan_c5h12o")
    args = p.parse_args(argv)

    from ase.io import read, write

    from ase_mlgen.generators.logan import LoGANEnsemble, train_ensemble
    from ase_mlgen.select import molecule_representatives
    from ase_mlgen.structures.molecules import classify_c5h12o

    if not Path(args.data).is_file():
        print(f"training data {args.data} not found (it lives in ../shared/data); nothing to do")
        return 0
    images = read(args.data, ":")
    print(f"{len(images)} training molecules:",
          sorted({a.get_chemical_formula() for a in images}))

    t0 = time.perf_counter()
    job = train_ensemble(images, "C5H12O", None, run_dir=args.out, n_models=args.models,
                         resume=Path(args.out, "config.json").exists(), epochs=args.epochs,
                         snapshot_every=250, snapshot_start=min(1000, args.epochs))
    result = job.result()
    ensemble = result if isinstance(result, LoGANEnsemble) else LoGANEnsemble([result])
    print(f"trained {len(ensemble)} models in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    pool = ensemble.generate(args.per_model * len(ensemble), random_state=0, snapshots=True)
    print(f"generated {len(pool)} structures in {time.perf_counter() - t0:.2f} s")

    # rebuild=True: the hydrogens of each skeleton pick go back onto its heavy-atom skeleton
    # before the relaxation, which then ends as the isomer the skeleton names
    picked, info = molecule_representatives(pool, args.k, return_info=True, rebuild=True)
    print(f"{info['n_valid']} unrelaxed candidates are valid molecules "
          f"({info['distinct_molecules']} distinct); picked per tier: {info['picked_per_tier']}")
    write(Path(args.out) / "representatives.extxyz", picked)

    try:
        from ase_mlgen.calculators.specs import CalculatorSpec

        CalculatorSpec("xtb")()
    except ImportError as exc:
        print(f"no relaxation: {exc}")
        return 0
    from ase.optimize import BFGS

    from ase_mlgen.search.relax import relax_many

    for atoms in picked:           # a molecule: no cell for the xTB calculator
        atoms.set_cell(None)
    relaxed = relax_many(picked, "xtb", fmax=0.05, steps=300, optimizer=BFGS, errors="skip")
    names = [classify_c5h12o(a) if a is not None else None for a in relaxed]
    found = sorted({n for n in names if n})
    print(f"{len(found)} distinct C5H12O isomers from {len(picked)} relaxations: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
