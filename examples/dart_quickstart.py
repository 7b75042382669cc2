"""DART quickstart: build a small labelled cluster dataset, train DART briefly, predict, plot.

Runs in a few minutes on a laptop CPU with the EMT teacher (no extra packages). With the GAP
extra installed, ``--teacher gap:../shared/data/ga/Ga_gap.xml --element Ga --sizes 20-24`` uses the
Ga GAP potential instead (about 0.15 s per Ga50 call, so keep the dataset small).

The same steps on the command line::

    ase-mlgen dataset clusters --element Cu --sizes 8-12 --per-size 4 --frames 3 --steps 30 \\
        --teacher emt --db quickstart/cu.db --workers 2
    ase-mlgen train dart quickstart/cu.db --out quickstart/run --max-epochs 40
    ase-mlgen predict quickstart/run/model.pt quickstart/cu.db --db quickstart/predictions.db \\
        --parity quickstart/parity.png
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="quickstart", help="folder for data, run and plots")
    ap.add_argument("--element", default="Cu")
    ap.add_argument("--sizes", default="8-12")
    ap.add_argument("--per-size", type=int, default=4)
    ap.add_argument("--teacher", default="emt")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    from ase_mlgen import DART
    from ase_mlgen.cli.predict import parity_plot
    from ase_mlgen.data import build_cluster_dataset, load_dataset
    from ase_mlgen.nn.training import split_indices

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # 1. teacher-labelled data: random starts, relaxation frames and minima in an ase.db
    summary = build_cluster_dataset(args.element, args.sizes, args.per_size, args.teacher,
                                    out / "clusters.db", frames=3, steps=30,
                                    workers=args.workers)
    print(summary)
    images = load_dataset(out / "clusters.db")
    train_idx, test_idx = split_indices(len(images), [0.85, 0.15], seed=0)
    train = [images[i] for i in train_idx]
    test = [images[i] for i in test_idx]

    # 2. train DART (the paper's network and optimiser; few epochs for a quick look)
    run = out / "run"
    calc = DART.train(train, validation=0.1, run_dir=run, resume=(run / "log.jsonl").exists(),
                      max_epochs=args.max_epochs)
    calc.save(out / "dart.pt")

    # 3. predictions on held-out structures, and a parity plot
    pred = calc.predict(test)
    for atoms in test:
        atoms.info["reference_energy"] = atoms.get_potential_energy()
    parity_plot(test, pred, out / "parity.png")
    atoms = test[0].copy()
    atoms.calc = DART.load(out / "dart.pt")
    print(f"{atoms.get_chemical_formula()}: DART {atoms.get_potential_energy():.3f} eV, "
          f"teacher {test[0].get_potential_energy():.3f} eV")
    print(f"model {out / 'dart.pt'}, learning curve {run / 'curve.png'}, parity "
          f"{out / 'parity.png'}")


if __name__ == "__main__":
    main()
