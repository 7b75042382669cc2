"""LoGAN training speed on C5H12O, one CPU thread → ``bench/results/logan_speed.json``.

Trains one model (the benchmark's settings: r_cut 5 Å, n_max 4, batch 15, 5 critic and 10
gradient-penalty steps per generator step) for ``--epochs`` epochs and reports the mean epoch
time, then times each part of an epoch with the trained networks: the generator step (descriptor
forward and backward), the no-gradient descriptor pass over the critic's fakes, one critic step
and one gradient-penalty step (median of ``--repeats``). An epoch is one generator step, one
fake pass, 5 critic steps and 10 penalty steps.

    python bench/logan_speed.py [--data ../shared/data/logan] [--epochs 100] [--repeats 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main(argv=None) -> int:
    from ase.io import read

    from ase_mlgen import LoGAN
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "logan"))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "logan_speed.json"))
    args = p.parse_args(argv)

    path = Path(args.data) / "C5H12O" / "C5H12O_training.extxyz"
    if not path.is_file():
        print(f"{path} not found (the LoGAN training sets live in ../shared/data); skipped")
        return 0
    torch.set_num_threads(1)
    images = read(path, ":")
    load_before = os.getloadavg()
    model = LoGAN(random_state=args.seed, epochs=args.epochs, r_cut=5.0, n_max=4, log_every=10)
    t0 = time.perf_counter()
    model.fit(images, composition="C5H12O")
    fit_s = time.perf_counter() - t0
    epoch_s = [r["epoch_seconds"] for r in model.history[1:]]   # the first includes set-up

    gen = torch.Generator().manual_seed(args.seed)
    pools = model._build_pools(images, np.random.default_rng(args.seed))
    opt_c = torch.optim.RMSprop(model.critic.parameters(), lr=1e-6)
    opt_g = torch.optim.RMSprop(model.generator.parameters(), lr=1e-6)
    batch, latent = int(model.params["batch_size"]), int(model.params["latent_dim"])
    numbers = model._numbers_t

    def fakes(n):
        z = torch.randn(n, latent, generator=gen)
        return model._describe(model._positions(model.generator(z)), numbers, None)

    with torch.no_grad():
        fake = fakes(batch)

    def generator_step():
        loss = -model._score(fakes(batch)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    def fake_pass():
        with torch.no_grad():
            fakes(int(model.params["n_critic"]) * batch)

    def critic_step():
        real = model._sample_real(pools, batch, gen)
        w = model._score(real).mean() - model._score(fake).mean()
        opt_c.zero_grad(set_to_none=True)
        (-w).backward()
        opt_c.step()

    def penalty_step():
        model._penalty_step(pools, fake, gen, opt_c)

    parts = {"generator_step_ms": _median_ms(generator_step, max(args.repeats // 4, 5)),
             "fake_pass_ms": _median_ms(fake_pass, max(args.repeats // 4, 5)),
             "critic_step_ms": _median_ms(critic_step, args.repeats),
             "penalty_step_ms": _median_ms(penalty_step, args.repeats)}
    # the analytic input gradient of the penalty against autograd's, on real environments
    x = model._sample_real(pools, batch, gen).requires_grad_(True)
    (auto,) = torch.autograd.grad(model.critic(x).sum(), x)
    gradient_diff = float((model.critic.input_gradient(x) - auto).detach().abs().max())
    out = {"benchmark": "LoGAN training speed, C5H12O, one thread", "machine": machine_info(),
           "torch": torch.__version__, "seed": args.seed, "epochs": args.epochs,
           "settings": {k: model.params[k] for k in ("r_cut", "n_max", "max_neighbours",
                                                     "batch_size", "n_critic", "n_penalty")},
           "fit_seconds": fit_s, "epoch_seconds_mean": float(np.mean(epoch_s)),
           "parts": parts,
           "epoch_from_parts_ms": parts["generator_step_ms"] + parts["fake_pass_ms"]
           + model.params["n_critic"] * parts["critic_step_ms"]
           + model.params["n_penalty"] * parts["penalty_step_ms"],
           "input_gradient_max_abs_diff_vs_autograd": gradient_diff,
           "load_average_before": load_before, "load_average_after": os.getloadavg()}
    atomic_json_dump(out, args.out)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()
           if k in ("fit_seconds", "epoch_seconds_mean", "epoch_from_parts_ms")}, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
