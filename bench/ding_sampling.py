"""How DING's sampling settings trade closeness to the targets against uniqueness.

    nice -n 10 python bench/ding_sampling.py --cvae runs/bench_ding_relabel/cvae_s0_onehot_fractions
        --vae runs/bench_ding_relabel/vae_s0 [--latent prior posterior]
        [--temperature 1.0 1.15 1.3] [--sampling categorical] [--decode-temperature 1.0]
        [--guidance 0 0.5] [-n 1000]
        [--name ding_sampling]

Several CVAE/VAE pairs (``--cvae A B … --vae a b …``, e.g. the five model seeds of one recipe)
are measured one after the other; ``across_models`` in the JSON then gives, per setting, every
model's largest ratio, smallest uniqueness and novelty, and how many models meet every target.
For every combination of latent source (``prior``: z ~ N(0, T²); ``posterior``: a training
composition's latent mean plus T × its spread), latent temperature T, decoding (``categorical``
at each ``--decode-temperature``, or ``argmax``) and CVAE guidance (``DING.decode(guidance=…)``;
the VAE has no conditions to guide), the trained CVAE (a finished ``bench/ding.py`` run folder
or a DING file) generates ``-n`` unique compositions for each of the paper's two target sets and
the VAE baseline the same number with the same settings, exactly as ``bench/ding.py`` measures
them (its ``_generation``: predicted properties by the CVAE's predictors, median absolute
deviation from the targets, the CVAE/VAE ratio, uniqueness of the first ``-n`` raw samples,
novelty against the training split). Writes ``<name>.json`` into ``--out`` with, per setting,
whether it meets every generation target of issue #8 (ratios ≤ 0.5, ≥ 90 % unique, ≥ 80 %
novel).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _load(path: str):
    from ase_mlgen import DING

    p = Path(path)
    return DING.load(p / "model.pt" if p.is_dir() else p, device="cpu")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cvae", required=True, nargs="+",
                        help="CVAE run folders or DING files (e.g. one per model seed)")
    parser.add_argument("--vae", required=True, nargs="+",
                        help="the VAE baseline of each CVAE, in the same order")
    parser.add_argument("--latent", nargs="+", choices=("prior", "posterior"),
                        default=["prior", "posterior"])
    parser.add_argument("--temperature", type=float, nargs="+", default=[1.0, 1.15, 1.3])
    parser.add_argument("--sampling", nargs="+", choices=("argmax", "categorical"),
                        default=["categorical"])
    parser.add_argument("--decode-temperature", type=float, nargs="+", default=[1.0],
                        help="softmax temperature of categorical decoding")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0],
                        help="CVAE decoding guidance (DING.decode; 0: off)")
    parser.add_argument("--data", default=None,
                        help="OQMD CSV for the novelty against all 27k (default: the shared file)")
    parser.add_argument("--min-elements", type=int, default=2)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--name", default="ding_sampling")
    args = parser.parse_args(argv)

    import torch

    from ding import TARGETS  # bench/ding.py: the same measurement

    from ase_mlgen.data.oqmd import load_oqmd
    from ase_mlgen.ding.composition import key
    from ase_mlgen.utils.io import atomic_json_dump

    torch.set_num_threads(args.threads)
    if len(args.cvae) != len(args.vae):
        raise SystemExit("give one --vae per --cvae")
    table = load_oqmd(args.data)
    all_keys = {key(c) for c in table.counts}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.json"
    results = {
        "benchmark": "DING sampling settings: MAD ratio CVAE/VAE, uniqueness, novelty (issue #8)",
        "models": [{"cvae": c, "vae": v} for c, v in zip(args.cvae, args.vae)],
        "generation": {"n": args.n, "random_state": 1, "raw_uniqueness_seed": 2,
                       "min_elements": args.min_elements},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": args.threads},
        "targets": TARGETS, "settings": [],
    }
    grid = list(itertools.product(args.latent, args.temperature, args.sampling,
                                  args.decode_temperature, args.guidance))
    for pair, (cvae_path, vae_path) in enumerate(zip(args.cvae, args.vae)):
        cvae, vae = _load(cvae_path), _load(vae_path)
        if not cvae.conditional or vae.conditional:
            raise SystemExit(f"{cvae_path} must be a conditional DING and {vae_path} an "
                             f"unconditioned one")
        for setting in grid:
            _measure(results, pair, cvae, vae, setting, args, all_keys)
            atomic_json_dump(results, path)
    results["across_models"] = _across_models(results["settings"])
    results["load_average"] = os.getloadavg()
    atomic_json_dump(results, path)
    print(f"[ding sampling] wrote {path}")
    return 0


def _measure(results: dict, pair: int, cvae, vae, setting: tuple, args, all_keys: set) -> None:
    """One sampling setting of one CVAE/VAE pair, appended to ``results["settings"]``."""
    from ding import _generation, generation_summary

    latent, temperature, sampling, decode_temperature, guidance = setting
    if sampling == "argmax" and decode_temperature != args.decode_temperature[0]:
        return  # argmax decoding has no temperature
    gen_kw = {"latent": latent, "sampling": sampling, "temperature": temperature,
              "decode_temperature": decode_temperature, "guidance": guidance,
              "min_elements": args.min_elements}
    t0 = time.perf_counter()
    entries, _ = _generation(cvae, vae, gen_kw, args.n, all_keys, quiet=True)
    summary = {k: v for k, v in generation_summary(entries).items()
               if k in ("max_mad_ratio", "min_unique", "min_novel", "all_targets_met")}
    results["settings"].append({
        "model": pair, "settings": gen_kw, **summary,
        "seconds": round(time.perf_counter() - t0, 1),
        "per_target_set": [{
            "targets": e["targets"], "mad_ratio": e["mad_ratio_cvae_over_vae"],
            "cvae_mad": {p: v["median_abs_dev"] for p, v in e["cvae"]["predicted"].items()},
            "vae_mad": {p: v["median_abs_dev"] for p, v in e["vae"]["predicted"].items()},
            "unique_of_valid": e["cvae"]["raw_samples"]["unique_of_valid"],
            "valid": e["cvae"]["raw_samples"]["valid"],
            "novel_vs_train": e["cvae"]["novel_vs_train"],
            "generated": e["cvae"]["generated"]} for e in entries]})
    print(f"[ding sampling] model {pair}: {latent} T={temperature} {sampling} "
          f"(decode T={decode_temperature}, guidance {guidance}): max ratio "
          f"{summary['max_mad_ratio']:.3f}, unique ≥ {summary['min_unique']:.3f}, novel ≥ "
          f"{summary['min_novel']:.3f}, all met: {summary['all_targets_met']}", flush=True)


def _across_models(entries: list) -> list:
    """Per sampling setting: every model's largest MAD ratio and smallest uniqueness and
    novelty, and how many models meet every generation target."""
    out = {}
    for e in entries:
        k = json.dumps(e["settings"], sort_keys=True)
        row = out.setdefault(k, {"settings": e["settings"], "models": [], "max_mad_ratio": [],
                                 "min_unique": [], "min_novel": [], "all_targets_met": 0})
        row["models"].append(e["model"])
        for f in ("max_mad_ratio", "min_unique", "min_novel"):
            row[f].append(e[f])
        row["all_targets_met"] += int(e["all_targets_met"])
    return list(out.values())


if __name__ == "__main__":
    raise SystemExit(main())
