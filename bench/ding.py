"""DING benchmark on the shared OQMD set: reconstruction, predictors, targeted generation.

    nice -n 10 python bench/ding.py [--data ../shared/data/oqmd/oqmd_27k.csv] [--seeds 2]
                                    [--epochs 20] [--predictor-epochs 4] [--finetune-epochs 2]
                                    [--n 1000] [--threads 1] [--out bench/results]
                                    [--runs runs/bench_ding] [--quick]
                                    [--predictor-input onehot fractions]
                                    [--warm-start runs/bench_ding/cvae_s0/model.pt]

One fixed 80/10/10 split (seed 0) of the 27,207 compositions. For each model seed a CVAE and an
unconditioned VAE are trained (one after the other, as background jobs of one CPU thread each;
``--parallel`` runs them side by side) on the train split (the validation split drives the
learning-rate schedule and picks the best epoch) and the fraction of test compositions reconstructed exactly
(encoder mean → decoder argmax, all 89 counts right) is reported. The three property predictors
are trained once (seed 0, inside the first CVAE run); their test MAE and R² are reported beside
the paper's. For the paper's target sets (delta_e, energy_pa, volume_pa) = (-2.0, -6.5, 12) and
(-2.5, -3.0, 30), the seed-0 CVAE and VAE each generate ``--n`` unique valid compositions; their
predicted properties (seed-0 predictors) are compared with the targets (median absolute
deviation), with uniqueness (among the valid ones of the first ``--n`` raw samples; valid: at
least ``--min-elements`` different elements, default 2; the JSON also gives uniqueness among
all non-empty samples and the fraction of unaries) and novelty (not in the training split). Training runs live in ``--runs`` and are resumed / reused when run again.

Writes ``ding.json`` and ``ding_properties.png`` into ``--out``. The paper trains on ~250k
compositions for 150 (generator) and 120+120 (predictor) epochs on a GPU; this benchmark runs on
a shared CPU with the epochs given, which the JSON states.

``--predictor-input onehot fractions`` gives the seed-0 CVAE an ensemble of predictors (one per
input kind and property; ``DING.predict`` returns their mean) in ``<runs>/cvae_s0_onehot_
fractions``; the JSON (``ding_onehot_fractions.json``) then reports every member's test MAE and
R² (``DING.predict_members``) beside the ensemble's and the members' spread. ``--warm-start
MODEL`` starts that run from a trained DING file (``DING.train(warm_start=True)``): its
generator and its one-hot predictors are kept, only the new members are trained.
``--predictors-from MODEL`` gives every CVAE run that needs predictors (seed 0; every seed with
``--substitution-labels predicted``) the predictors of MODEL and trains only its generator.
``--early-stopping`` applies to the generator, ``--predictor-early-stopping`` to the predictor
stages. ``--schedule``, ``--substitution``, ``--latent-dim`` and ``--kl-weight`` set the
generator's recipe (the paper's: plateau, 0, 32, 0.05); the recipe that meets issue #8's
targets (``doc/ding.md``, "Seventh round") is ``--epochs 150 --schedule cosine --latent-dim 64
--substitution 0.75 --kl-weight 0.075 --substitution-labels predicted --substitution-variants
32``, generated with ``--latent posterior --sampling categorical --guidance 0.5``
(``DING.generate``'s defaults). A runs folder holds one recipe: give each recipe its own
``--runs`` (finished runs there are reused).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_SETS = [(-2.0, -6.5, 12.0), (-2.5, -3.0, 30.0)]
PAPER = {
    "reconstruction_exact": {"cvae": 0.9430, "cvae_std": 0.0036, "vae": 0.9372,
                             "vae_std": 0.0060, "seeds": 5},
    "predictor_mae": {"delta_e": 0.051, "energy_pa": 0.072, "volume_pa": 0.398},
}
TARGETS = {"reconstruction_exact": 0.94, "mae_delta_e": 0.10, "mad_ratio": 0.5,
           "unique": 0.90, "novel": 0.80}


def _write(results: dict, path: Path) -> None:
    from ase_mlgen.utils.io import atomic_json_dump

    atomic_json_dump(results, path)


def _check_same_recipe(run: Path, kw: dict) -> None:
    """Refuse to reuse or resume a run folder trained with other settings than ``kw``."""
    config = run / "config.json"
    if not config.is_file():
        return
    params = json.loads(config.read_text()).get("params", {})
    ignore = {"threads", "device", "predictor_dropout", "predictor_input"}
    differ = {k: (params[k], v) for k, v in kw.items()
              if k in params and k not in ignore and params[k] != v
              and not (isinstance(v, (list, tuple)) and list(params[k]) == list(v))}
    if differ:
        raise SystemExit(f"{run} was trained with other settings ({differ}, as "
                         f"run: requested); give this recipe its own --runs folder")


def _train_all(specs, train, val, args) -> dict:
    """Train several models at once, each as a background job with one CPU thread (a finished
    run is reused, an interrupted one resumed, a running one waited for); returns
    ``{(kind, seed): (model, seconds)}``."""
    from ase_mlgen import DING
    from ase_mlgen.jobs import Job, RunDirectory

    jobs, out = {}, {}
    inputs = list(args.predictor_input)
    for kind, seed, predictors in specs:
        run = Path(args.runs) / f"{kind}_s{seed}"
        if predictors and inputs != ["onehot"]:
            run = run.with_name(run.name + "_" + "_".join(inputs))
        rd = RunDirectory(run)
        kw = dict(conditional=(kind == "cvae"), epochs=args.epochs,
                  predictors=predictors, predictor_epochs=args.predictor_epochs,
                  finetune_epochs=args.finetune_epochs,
                  predictor_batch_size=args.predictor_batch_size,
                  early_stopping=args.early_stopping, schedule=args.schedule,
                  substitution=args.substitution, latent_dim=args.latent_dim,
                  substitution_labels=(args.substitution_labels if kind == "cvae"
                                       else "original"),
                  substitution_variants=(args.substitution_variants if kind == "cvae"
                                         else 4),
                  decoder_conditioning=(args.decoder_conditioning if kind == "cvae"
                                        else "input"),
                  predictor_early_stopping=args.predictor_early_stopping, random_state=seed,
                  predictor_schedule=args.predictor_schedule,
                  predictor_input=inputs[0] if len(inputs) == 1 else tuple(inputs),
                  **({"predictor_dropout": (0.0, *args.predictor_dropout, 0.0, 0.0, 0.0)}
                     if args.predictor_dropout else {}),
                  kl_weight=args.kl_weight,
                  threads=args.threads, device=args.device)
        _check_same_recipe(run, kw)
        t0 = time.perf_counter()
        if (run / "model.pt").is_file() and rd.state() == "done":
            print(f"[ding bench] reusing {run}", flush=True)
            jobs[(kind, seed)] = (Job(run), t0)
            continue
        if rd.state() == "running":
            print(f"[ding bench] waiting for the running {run}", flush=True)
            jobs[(kind, seed)] = (Job(run), t0)
            continue
        source = args.warm_start or args.predictors_from
        warm = bool(source) and predictors
        model = DING.load(source, device="cpu").set_params(**kw) if warm else DING(**kw)
        resume = (run / "config.json").is_file()
        print(f"[ding bench] training {kind} seed {seed} -> {run}"
              + (" (resuming)" if resume else "")
              + (f" (warm start from {source})" if warm else "")
              + " in the background", flush=True)
        warm_start = (True if args.warm_start else "predictors") if warm else False
        jobs[(kind, seed)] = (model.train(train, val, run_dir=run, resume=resume,
                                          background=True, warm_start=warm_start), t0)
        if not args.parallel:
            jobs[(kind, seed)][0].result()  # one CPU-heavy process at a time
    for k, (job, t0) in jobs.items():
        model = job.result()
        # training time from the run's own log (also right for a reused or resumed run)
        seconds = sum(r.get("epoch_seconds", 0.0) for r in job.run_dir.records())
        out[k] = (model, round(seconds, 1))
    return out


def _raw_uniqueness(model, targets, n: int, seed: int, gen_kw: dict) -> dict:
    """Valid and unique fractions of the first raw samples (before any deduplication), drawn
    and decoded as ``generate`` does with ``gen_kw``."""
    import torch

    from ase_mlgen.ding.composition import key
    from ase_mlgen.ding.model import is_valid

    g = torch.Generator().manual_seed(seed)
    z = model.sample_latent(n, gen_kw["latent"], gen_kw["temperature"], g)
    props = np.repeat(np.asarray(targets, float)[None], n, axis=0) if model.conditional else None
    counts = model.decode(z, properties=props, sampling=gen_kw["sampling"],
                          decode_temperature=gen_kw["decode_temperature"], random_state=g,
                          guidance=gen_kw.get("guidance", 0.0))
    ok = is_valid(counts, gen_kw["min_elements"])
    valid = counts[ok]
    keys = {key(c) for c in valid}
    # the same raw samples judged by the first definition of valid (any atoms)
    nonempty = counts[counts.any(axis=1)]
    n_el = (counts > 0).sum(axis=1)
    return {"samples": n, "min_elements": gen_kw["min_elements"],
            "valid": float(len(valid) / n),
            "unique_of_valid": float(len(keys) / max(len(valid), 1)),
            "nonempty": float(len(nonempty) / n),
            "unique_of_nonempty": float(len({key(c) for c in nonempty})
                                        / max(len(nonempty), 1)),
            "unary_fraction": float(np.mean(n_el == 1))}


def main(argv=None) -> int:
    from ase_mlgen.ding.model import DEFAULTS, SUBSTITUTION_LABELS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="OQMD CSV (default: the shared file)")
    parser.add_argument("--seeds", type=int, default=1, help="model seeds per model (paper: 5)")
    parser.add_argument("--epochs", type=int, default=30, help="generator epochs (paper: 150)")
    parser.add_argument("--predictor-epochs", type=int, default=1,
                        help="predictor epochs with dropout (paper: 120)")
    parser.add_argument("--finetune-epochs", type=int, default=3,
                        help="predictor epochs without dropout (paper: 120)")
    parser.add_argument("--predictor-batch-size", type=int, default=512)
    parser.add_argument("--early-stopping", type=int, default=None,
                        help="generator stage: stop after this many epochs without "
                             "validation improvement")
    parser.add_argument("--predictor-early-stopping", type=int, default=None,
                        help="the same for each predictor stage (default: off)")
    parser.add_argument("--warm-start", default=None, metavar="MODEL",
                        help="start the seed-0 CVAE from this trained DING file: keep its "
                             "generator and the predictors of input kinds still asked for")
    parser.add_argument("--predictors-from", default=None, metavar="MODEL",
                        help="every CVAE run that needs predictors takes them from this "
                             "trained DING file (same split and predictor settings) and "
                             "trains only its own generator (DING.train(warm_start="
                             "'predictors'))")
    parser.add_argument("--predictor-dropout", type=float, nargs=3, default=None,
                        metavar=("D2", "D3", "D4"),
                        help="predictor dropout after layers 2-4 (paper: 0.7 0.7 0.5)")
    parser.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                        help="generator learning-rate schedule (paper: plateau)")
    parser.add_argument("--substitution", type=float, default=0.0, metavar="P",
                        help="generator element-substitution augmentation per composition "
                             "(paper: 0)")
    parser.add_argument("--substitution-labels", choices=SUBSTITUTION_LABELS,
                        default="original",
                        help="condition substituted CVAE compositions on the original's "
                             "properties or on the predictors' values (predictors trained "
                             "first, in every seed's CVAE: slower)")
    parser.add_argument("--substitution-variants", type=int, default=4, metavar="K",
                        help="with --substitution-labels predicted: variants labelled per "
                             "training composition")
    parser.add_argument("--decoder-conditioning", choices=("input", "every_layer"),
                        default="input",
                        help="CVAE decoder gets the conditions with the latent vector (the "
                             "paper's) or at every layer")
    parser.add_argument("--latent-dim", type=int, default=32, help="latent size (paper: 32)")
    parser.add_argument("--kl-weight", type=float, default=DEFAULTS["kl_weight"],
                        help="weight of the KL term of the CVAE and VAE loss (paper: 0.05)")
    parser.add_argument("--name", default=None,
                        help="stem of the JSON and PNG written (default: ding[_inputs])")
    parser.add_argument("--predictor-schedule", choices=("plateau", "cosine"),
                        default="plateau")
    parser.add_argument("--predictor-input", choices=("onehot", "fractions"), nargs="+",
                        default=["onehot"],
                        help="predictor input (paper: onehot); several kinds: an ensemble")
    parser.add_argument("--latent", choices=("prior", "posterior"), default="prior",
                        help="generation: latent points from N(0,1) or the aggregate posterior")
    parser.add_argument("--sampling", choices=("argmax", "categorical"), default="argmax",
                        help="generation: decode by argmax or by sampling each element")
    parser.add_argument("--temperature", type=float, default=1.0, help="latent spread")
    parser.add_argument("--decode-temperature", type=float, default=1.0)
    parser.add_argument("--guidance", type=float, default=0.0,
                        help="CVAE decoding guidance (DING.generate(guidance=...); 0: off)")
    parser.add_argument("--min-elements", type=int, default=2,
                        help="generation: fewest different elements of a valid composition "
                             "(2: compounds, DING.generate's default; 1: any atoms)")
    parser.add_argument("-n", type=int, default=1000, help="generated compositions per set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parallel", action="store_true",
                        help="train the CVAE and the VAE of a seed side by side (two processes); "
                             "default: one after the other")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_ding"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2,000 training compositions, 2 epochs, 1 seed; "
                             "results go to the runs folder, not bench/results")
    args = parser.parse_args(argv)
    if args.warm_start and args.predictors_from:
        parser.error("give --warm-start or --predictors-from, not both")

    import torch

    from ase_mlgen.data.oqmd import PROPERTIES, load_oqmd, split

    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.epochs, args.predictor_epochs, args.finetune_epochs = 1, 2, 1, 1
        args.n = min(args.n, 100)
        args.runs = str(Path(args.runs).with_name(Path(args.runs).name + "_quick"))
    if args.quick and args.out == parser.get_default("out"):
        args.out = args.runs  # smoke-test results stay out of bench/results
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or "ding" + ("_quick" if args.quick else "") + (
        "" if args.predictor_input == ["onehot"] else "_" + "_".join(args.predictor_input))
    json_path = out / f"{name}.json"
    png_path = out / f"{name}_properties.png"

    t_start = time.perf_counter()
    table = load_oqmd(args.data)
    train, val, test = split(table, seed=0)
    if args.quick:
        train, val, test = train.subset(range(2000)), val.subset(range(300)), \
            test.subset(range(300))
    results = {
        "benchmark": "DING (conditional VAE over compositions) on OQMD",
        "data": {"path": table.source, "rows": len(table), "skipped_rows": len(table.skipped),
                 "split": "80/10/10, seed 0", "train": len(train), "val": len(val),
                 "test": len(test)},
        "scale": {"model_seeds": args.seeds, "generator_epochs": args.epochs,
                  "predictor_epochs": args.predictor_epochs,
                  "finetune_epochs": args.finetune_epochs,
                  "generator_batch_size": 256,
                  "predictor_batch_size": args.predictor_batch_size,
                  "early_stopping": args.early_stopping,
                  "generator_schedule": args.schedule, "substitution": args.substitution,
                  "substitution_labels": args.substitution_labels,
                  "substitution_variants": args.substitution_variants,
                  "decoder_conditioning": args.decoder_conditioning,
                  "latent_dim": args.latent_dim,
                  "kl_weight": args.kl_weight,
                  "predictor_early_stopping": args.predictor_early_stopping,
                  "warm_start": args.warm_start, "predictors_from": args.predictors_from,
                  "torch_threads": args.threads,
                  "predictor_dropout": args.predictor_dropout or [0.7, 0.7, 0.5],
                  "predictor_schedule": args.predictor_schedule,
                  "predictor_input": args.predictor_input,
                  "generation": {"latent": args.latent, "sampling": args.sampling,
                                 "temperature": args.temperature,
                                 "decode_temperature": args.decode_temperature,
                                 "guidance": args.guidance,
                                 "min_elements": args.min_elements},
                  "initialisation": "Glorot-uniform weights, zero biases (the paper's Keras "
                                    "default)",
                  "note": ("reduced from the paper (5 seeds; 150 generator epochs; 120 + 120 "
                           "predictor epochs; ~250k training compositions on a GPU) to fit a "
                           "shared 2-core CPU budget; architecture and loss are the paper's")},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__,
                    "device": "cuda" if (args.device != "cpu" and torch.cuda.is_available())
                    else "cpu"},
        "paper": PAPER, "targets": TARGETS,
        "load_average_start": os.getloadavg(),
        "timing_note": "1 torch thread per model on a shared 2-core machine running other "
                       "jobs (see the load averages); timings are pessimistic",
    }
    _write(results, json_path)

    # -- reconstruction over seeds (seed 0 first; further seeds after generation) ----------
    models = {}
    recon = {"cvae": [], "vae": []}
    timings = {}

    def train_seed(seed):
        # predicted substitution labels need the CVAE's own predictors, in every seed
        specs = [("cvae", seed, seed == 0 or args.substitution_labels == "predicted"),
                 ("vae", seed, False)]
        trained = _train_all(specs, train, val, args)
        for kind in ("cvae", "vae"):
            model, seconds = trained[(kind, seed)]
            timings[f"{kind}_s{seed}"] = seconds
            acc = model.reconstruction_accuracy(test)
            recon[kind].append(acc)
            print(f"[ding bench] {kind} seed {seed}: test exact reconstruction {acc:.4f}",
                  flush=True)
            if seed == 0:
                models[kind] = model
        results["reconstruction_exact"] = {
            k: {"per_seed": v, "mean": float(np.mean(v)) if v else None,
                "std": float(np.std(v)) if v else None} for k, v in recon.items()}
        results["train_seconds_summed_epochs"] = timings
        _write(results, json_path)

    train_seed(0)

    # -- predictors ------------------------------------------------------------------------
    cvae, vae = models["cvae"], models["vae"]
    pred, spread = cvae.predict(test, return_std=True)
    members = cvae.predict_members(test)

    def scores(y, yhat):
        return {"mae": float(np.mean(np.abs(y - yhat))),
                "r2": float(1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2)),
                "median_ae": float(np.median(np.abs(y - yhat)))}

    pred_res = {}
    for p in PROPERTIES:
        y, yhat = test.properties[p], pred[p]
        pred_res[p] = {**scores(y, yhat), "paper_mae": PAPER["predictor_mae"][p]}
        if cvae.is_ensemble:  # every member's own score, and how the spread relates to errors
            pred_res[p]["members"] = {k: scores(y, v) for k, v in members[p].items()}
            err = np.abs(y - yhat)
            pred_res[p]["spread"] = {
                "mean_std": float(np.mean(spread[p])),
                "within_1_std": float(np.mean(err <= spread[p])),
                "within_2_std": float(np.mean(err <= 2 * spread[p])),
                "spearman_std_abs_err": float(np.corrcoef(np.argsort(np.argsort(spread[p])),
                                                          np.argsort(np.argsort(err)))[0, 1])}
        print(f"[ding bench] predictor {p}: MAE {pred_res[p]['mae']:.4f}, R2 "
              f"{pred_res[p]['r2']:.3f}" + "".join(
                  f"; {k} {v['mae']:.4f} / {v['r2']:.3f}"
                  for k, v in pred_res[p].get("members", {}).items()), flush=True)
    results["predictors_test"] = pred_res
    _write(results, json_path)

    # -- targeted generation ---------------------------------------------------------------
    from ase_mlgen.ding.composition import key

    all_keys = {key(c) for c in table.counts} if not args.quick else \
        {key(c) for c in np.concatenate([train.counts, val.counts, test.counts])}
    gen_kw = {"latent": args.latent, "sampling": args.sampling,
              "temperature": args.temperature, "decode_temperature": args.decode_temperature,
              "guidance": args.guidance,
              "min_elements": args.min_elements}
    gen_res, dists = _generation(cvae, vae, gen_kw, args.n, all_keys)
    results["generation"] = gen_res
    _write(results, json_path)
    # the same measurement for each way of drawing latent points and decoding them
    variants = []
    for latent in ("prior", "posterior"):
        for sampling in ("argmax", "categorical"):
            kw = {**gen_kw, "latent": latent, "sampling": sampling}
            res, _ = _generation(cvae, vae, kw, args.n, all_keys, quiet=True)
            variants.append({"settings": kw, "per_target_set": [{
                "targets": e["targets"],
                "cvae_unique_of_valid": e["cvae"]["raw_samples"]["unique_of_valid"],
                "cvae_valid": e["cvae"]["raw_samples"]["valid"],
                "cvae_novel_vs_train": e["cvae"]["novel_vs_train"],
                "cvae_mad": {p: e["cvae"]["predicted"][p]["median_abs_dev"] for p in PROPERTIES},
                "vae_mad": {p: e["vae"]["predicted"][p]["median_abs_dev"] for p in PROPERTIES},
                "mad_ratio": e["mad_ratio_cvae_over_vae"]} for e in res]})
            print(f"[ding bench] variant {latent}/{sampling}: unique "
                  f"{[round(e['cvae']['raw_samples']['unique_of_valid'], 3) for e in res]}, "
                  f"MAD ratios {[{k: round(v, 2) for k, v in e['mad_ratio_cvae_over_vae'].items()} for e in res]}",
                  flush=True)
    results["generation_variants"] = variants

    _plot(dists, test, png_path)
    results["figure"] = png_path.name

    def verdict():
        rc = results["reconstruction_exact"]["cvae"]["mean"]
        gen = generation_summary(gen_res)
        results["verdict"] = {
            "reconstruction_ge_94pct": bool(rc >= TARGETS["reconstruction_exact"]),
            "mae_delta_e_le_0.10": bool(pred_res["delta_e"]["mae"] <= TARGETS["mae_delta_e"]),
            "mad_cvae_le_half_vae": gen["mad_ratio_met"],
            "n_unique_reached": bool(all(e[k]["generated"] >= args.n for e in gen_res
                                         for k in ("cvae", "vae"))),
            "unique_ge_90pct": gen["unique_met"],
            "novel_ge_80pct": gen["novel_met"],
        }
        results["load_average"] = os.getloadavg()
        results["wall_seconds_this_invocation"] = round(time.perf_counter() - t_start, 1)
        _write(results, json_path)

    # -- verdicts (rewritten after every further seed, so an interrupted run keeps them) -----
    verdict()
    for seed in range(1, args.seeds):
        train_seed(seed)
        verdict()
    print(json.dumps(results["verdict"]), flush=True)
    print(f"[ding bench] wrote {json_path} and {png_path}", flush=True)
    return 0


def _generation(cvae, vae, gen_kw: dict, n: int, all_keys: set, quiet: bool = False):
    """For each target set: ``n`` unique compositions from the CVAE (under the targets) and the
    VAE, their predicted properties (the CVAE's predictors), deviations from the targets,
    raw-sample uniqueness and novelty. Returns ``(entries, distributions)``."""
    from ase_mlgen.data.oqmd import PROPERTIES
    from ase_mlgen.ding.composition import key

    gen_res = []
    dists = []
    for ts in TARGET_SETS:
        targets = dict(zip(PROPERTIES, ts))
        entry = {"targets": targets}
        for kind, model in (("cvae", cvae), ("vae", vae)):
            t0 = time.perf_counter()
            # the same settings for both; the VAE has no conditions to guide
            model_kw = gen_kw if kind == "cvae" else \
                {k: v for k, v in gen_kw.items() if k != "guidance"}
            kw = {**targets, **model_kw} if kind == "cvae" else model_kw
            cands = model.generate(n, **kw, random_state=1)
            t_gen = time.perf_counter() - t0
            props = cvae.predict(np.stack([_counts(c) for c in cands])) if len(cands) else \
                {p: np.zeros(0) for p in PROPERTIES}
            dev = {p: np.abs(props[p] - targets[p]) for p in PROPERTIES}
            raw = _raw_uniqueness(model, ts, n, seed=2, gen_kw=model_kw)
            entry[kind] = {
                "generated": len(cands), "generate_seconds": round(t_gen, 2),
                "raw_samples": raw,
                "novel_vs_train": float(np.mean([c.novel for c in cands])) if cands else None,
                "novel_vs_all_27k": float(np.mean([key(_counts(c)) not in all_keys
                                                   for c in cands])) if cands else None,
                "predicted": {p: {"median": float(np.median(props[p])),
                                  "mean": float(np.mean(props[p])),
                                  "std": float(np.std(props[p])),
                                  "median_abs_dev": float(np.median(dev[p]))}
                              for p in PROPERTIES},
                "examples": [c.format() for c in cands[:10]],
            }
            dists.append((ts, kind, props))
        entry["mad_ratio_cvae_over_vae"] = {
            p: entry["cvae"]["predicted"][p]["median_abs_dev"]
            / max(entry["vae"]["predicted"][p]["median_abs_dev"], 1e-12) for p in PROPERTIES}
        gen_res.append(entry)
        if not quiet:
            print(f"[ding bench] targets {ts}: MAD ratio CVAE/VAE "
                  f"{ {k: round(v, 3) for k, v in entry['mad_ratio_cvae_over_vae'].items()} }",
                  flush=True)
    return gen_res, dists


def generation_summary(entries: list) -> dict:
    """The generation targets over the target-set entries of :func:`_generation`: the largest
    MAD ratio CVAE/VAE, the smallest uniqueness and novelty, and whether each target is met."""
    max_ratio = max(v for e in entries for v in e["mad_ratio_cvae_over_vae"].values())
    min_unique = min(e["cvae"]["raw_samples"]["unique_of_valid"] for e in entries)
    min_novel = min(e["cvae"]["novel_vs_train"] or 0.0 for e in entries)
    out = {"max_mad_ratio": max_ratio, "min_unique": min_unique, "min_novel": min_novel,
           "mad_ratio_met": bool(max_ratio <= TARGETS["mad_ratio"]),
           "unique_met": bool(min_unique >= TARGETS["unique"]),
           "novel_met": bool(min_novel >= TARGETS["novel"])}
    out["all_targets_met"] = out["mad_ratio_met"] and out["unique_met"] and out["novel_met"]
    return out


def _counts(formula):
    from ase_mlgen.ding.composition import to_counts

    return to_counts(formula)


def _plot(dists, test, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ase_mlgen.data.oqmd import PROPERTIES, UNITS

    sets = sorted({d[0] for d in dists}, key=lambda t: TARGET_SETS.index(t))
    fig, axes = plt.subplots(len(sets), 3, figsize=(12, 3.4 * len(sets)), squeeze=False)
    ranges = {"delta_e": (-4.5, 2.0), "energy_pa": (-11, 0), "volume_pa": (5, 60)}
    for r, ts in enumerate(sets):
        for j, p in enumerate(PROPERTIES):
            ax = axes[r, j]
            bins = np.linspace(*ranges[p], 60)
            ax.hist(np.clip(test.properties[p], *ranges[p]), bins=bins, density=True,
                    color="0.8", label="OQMD test (DFT)")
            for ts_, kind, props in dists:
                if ts_ != ts:
                    continue
                ax.hist(np.clip(props[p], *ranges[p]), bins=bins, density=True,
                        histtype="step", lw=1.8, label=kind.upper() + " (predicted)",
                        color="C0" if kind == "cvae" else "C1")
            ax.axvline(ts[j], color="k", ls="--", lw=1, label="target")
            ax.set_xlabel(f"{p} ({UNITS[p]})")
            if j == 0:
                ax.set_ylabel(f"targets {ts}\ndensity")
            if r == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle("DING: predictor values of the unique compositions generated for each target "
                 "set (up to 1,000; see ding.json for the counts)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
