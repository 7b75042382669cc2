"""Train one DING CVAE generator on top of an existing predictor ensemble (a recipe probe).

    nice -n 5 python bench/ding_generator.py --kl-weight 0.2 --seed 0 \
        --predictors-from runs/bench_ding_recipe/cvae_s0_onehot_fractions/model.pt \
        --run runs/probe_kl0.2/cvae_s0

``bench/ding.py`` trains a CVAE and its VAE baseline per seed and scores both; a probe of a
generator setting (KL weight, substitution probability) needs only the CVAE, scored against an
existing VAE with ``bench/ding_sampling.py``. This script trains it through the library
(``DING.train(warm_start="predictors")``: the predictors, split and predictor settings of
``--predictors-from``; only the generator is trained) with the fifth-round recipe of
``doc/ding.md`` as defaults (150 cosine epochs, latent 64, substitution 0.5 with 32 labelled
variants per composition), one torch thread, and prints the test split's exact reconstruction
and the training time as one JSON line (also written to ``<run>/probe.json``). An interrupted
run resumes.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from ase_mlgen.ding.model import DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictors-from", required=True, metavar="MODEL",
                        help="DING file whose predictors (and split settings) are reused")
    parser.add_argument("--run", required=True, help="run folder of the new generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--kl-weight", type=float, default=DEFAULTS["kl_weight"],
                        help="weight of the KL term (default: DING's, the paper's 0.05)")
    parser.add_argument("--substitution", type=float, default=0.5)
    parser.add_argument("--substitution-variants", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--data", default=None, help="OQMD CSV (default: the shared file)")
    args = parser.parse_args(argv)

    import torch

    from ase_mlgen import DING
    from ase_mlgen.data.oqmd import load_oqmd, split
    from ase_mlgen.utils.io import atomic_json_dump

    torch.set_num_threads(1)
    train, val, test = split(load_oqmd(args.data), seed=0)
    recipe = dict(conditional=True, epochs=args.epochs, schedule="cosine",
                  substitution=args.substitution, substitution_labels="predicted",
                  substitution_variants=args.substitution_variants,
                  latent_dim=args.latent_dim,
                  kl_weight=args.kl_weight,
                  random_state=args.seed, threads=1, device="cpu")
    model = DING.load(args.predictors_from, device="cpu").set_params(**recipe)
    run = Path(args.run)
    t0 = time.perf_counter()
    model = model.train(train, val, run_dir=run, warm_start="predictors",
                        resume=(run / "config.json").is_file())
    result = {"run": str(run), "recipe": recipe, "predictors_from": args.predictors_from,
              "test_exact_reconstruction": model.reconstruction_accuracy(test),
              "seconds": round(time.perf_counter() - t0, 1),
              "machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "torch_threads": 1}}
    atomic_json_dump(result, run / "probe.json")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
