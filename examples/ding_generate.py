"""DING: train (or load) a composition CVAE on OQMD and generate compositions for targets.

    python examples/ding_generate.py                       # quick toy training, then generate
    python examples/ding_generate.py --model runs/ding1    # a trained model or run directory
    python examples/ding_generate.py --data ../shared/data/oqmd/oqmd_27k.csv --epochs 150 \
        --out runs/ding_full                               # the paper's settings (long on a CPU)
    python examples/ding_generate.py --recipe issue8 --epochs 150 --out runs/ding_issue8
                                 # the recipe that meets issue #8's targets (~1 h on one core)

Generates 1,000 unique compositions for formation enthalpy -2.0 eV/atom, energy -6.5 eV/atom and
volume 12 Å³/atom (a target set of the DING paper), keeps those the predictors place within
0.3 eV/atom of the formation-enthalpy target, writes them to ``ding_candidates.csv`` and walks
the latent space between two compositions (the paper's Figure 9).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    from ase_mlgen import DING
    from ase_mlgen.data.oqmd import default_path, load_oqmd, split

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="trained DING model file or run directory")
    p.add_argument("--data", default=None, help="OQMD CSV (default: the shared file)")
    p.add_argument("--out", default="runs/ding_example", help="run directory for training")
    p.add_argument("--epochs", type=int, default=5, help="generator epochs (paper: 150)")
    p.add_argument("--recipe", choices=("paper", "issue8"), default="paper",
                   help="generator recipe: the paper's, or the one that meets issue #8's "
                        "targets (doc/ding.md, 'Seventh round')")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--csv", default="ding_candidates.csv")
    args = p.parse_args(argv)

    if args.model:
        model = DING.load(args.model)
    else:
        path = Path(args.data) if args.data else default_path()
        if not path.is_file():
            print(f"no OQMD data at {path}; pass --data or --model", file=sys.stderr)
            return 1
        train, val, test = split(load_oqmd(path), seed=0)
        run = Path(args.out)
        resume = (run / "config.json").is_file()
        # a toy schedule: a few epochs, small predictor budget; use --epochs 150 (and the
        # default predictor epochs via the CLI) for the paper's settings
        recipe = {} if args.recipe == "paper" else dict(
            substitution=0.75, substitution_labels="predicted", substitution_variants=32,
            schedule="cosine", latent_dim=64, kl_weight=0.075)
        model = DING(epochs=args.epochs, predictor_epochs=1, finetune_epochs=1,
                     predictor_batch_size=1024, random_state=0, **recipe)
        model.train(train, val, run_dir=run, resume=resume)
        print(f"trained: test reconstruction {model.reconstruction_accuracy(test):.3f} "
              f"(the paper reaches 0.943 after 150 epochs on ~250k compositions)")

    targets = {"delta_e": -2.0, "energy_pa": -6.5, "volume_pa": 12.0}
    cands = model.generate(args.n, **targets, random_state=0)
    print(f"{len(cands)} unique compositions, {cands.fraction_novel():.0%} not in training")
    for c in cands[:10]:
        print("  ", c.format(), {k: round(v, 2) for k, v in c.properties.items()})

    close = model.filter(cands, delta_e=(-2.3, -1.7))
    print(f"{len(close)} predicted within 0.3 eV/atom of delta_e = -2.0")
    cands.write_csv(args.csv)
    print(f"wrote {args.csv}")

    print("latent walk Ba1Pt1U1 -> Li2O1:")
    for c in model.walk("Ba1Pt1U1", "Li2O1", steps=9, unique=True):
        print(f"   t={c.info['t']:.2f}  {c.format()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
