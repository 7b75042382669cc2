"""LoGAN at small scale: C5H12O isomers from C4H10O and C6H14O molecules (none is C5H12O).

    python examples/logan_c5h12o.py [--data ../shared/data/logan/C5H12O/C5H12O_training.extxyz]
                                    [--models 2] [--epochs 600] [--k 15]

Trains a small ensemble (keeping generator snapshots every 50 epochs from epoch 350, which are
all sampled: the generator visits different isomers while it trains), generates candidates, keeps k representatives (PCA + k-means), relaxes
them with GFN2-xTB (extra ``xtb``; skipped with a message when tblite is missing) and prints the
C5H12O isomers found. The paper's scale (60,000 epochs per model, 12 models) needs a GPU; this
runs in minutes on a CPU and finds fewer isomers. ``bench/logan.py`` is the full experiment.
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
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--per-model", type=int, default=1000)
    p.add_argument("--k", type=int, default=15)
    p.add_argument("--out", default="runs/logan_c5h12o")
    args = p.parse_args(argv)

    from ase.io import read, write

    from ase_mlgen.generators.logan import LoGANEnsemble, train_ensemble
    from ase_mlgen.select import representatives
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
                         lr_generator=1e-3, lr_critic=1e-3, snapshot_every=50,
                         snapshot_start=min(350, args.epochs))
    result = job.result()
    ensemble = result if isinstance(result, LoGANEnsemble) else LoGANEnsemble([result])
    print(f"trained {len(ensemble)} models in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    pool = ensemble.generate(args.per_model * len(ensemble), random_state=0, snapshots=True)
    print(f"generated {len(pool)} structures in {time.perf_counter() - t0:.2f} s")
    picked = representatives(pool, args.k)
    print(f"{len(picked)} representatives")
    write(Path(args.out) / "representatives.extxyz", picked)

    try:
        from ase_mlgen.calculators.specs import CalculatorSpec

        CalculatorSpec("xtb")()
    except ImportError as exc:
        print(f"no relaxation: {exc}")
        return 0
    try:
        from ase_mlgen.search.relax import relax_many
    except ImportError:
        relax_many = None
    if relax_many is not None:
        relaxed = relax_many(picked, "xtb", fmax=0.05, steps=300)
        relaxed = [r[0] if isinstance(r, tuple) else getattr(r, "atoms", r) for r in relaxed]
    else:
        from ase.optimize import BFGS

        relaxed = []
        for atoms in picked:
            atoms = atoms.copy()
            atoms.calc = CalculatorSpec("xtb")()
            try:
                BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
            except Exception:  # noqa: BLE001 - an SCF failure on a wild candidate
                atoms = None
            relaxed.append(atoms)
    names = [classify_c5h12o(a) if a is not None else None for a in relaxed]
    found = sorted({n for n in names if n})
    print(f"{len(found)} distinct C5H12O isomers from {len(picked)} relaxations: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
