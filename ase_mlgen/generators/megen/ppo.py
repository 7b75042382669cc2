"""PPO training of the MeGen policy (clipped objective, GAE, entropy bonus) as a job task.

The task :func:`train_task` runs through :func:`ase_mlgen.jobs.submit` (foreground or background,
resumable): each iteration rolls out ``episodes`` growth episodes in parallel (a
:class:`~ase_mlgen.generators.megen.env.BatchGrowthEnv`), computes advantages with GAE, and takes
``ppo_epochs`` passes of minibatch updates. Every iteration appends a record to the run's
``log.jsonl`` (``mean_reward``, ``mean_return``, losses, validity, best energy) — ``curve.png`` and
``ase-mlgen status RUN`` read it — and writes ``checkpoint_last.pt`` atomically (plus
``checkpoint_best.pt`` when the smoothed return improved). ``loader`` returns a ready
:class:`~ase_mlgen.generators.megen.MeGen`.

Episodes start from a seed drawn from the pool (the given relaxed seeds, plus — with
``grow_pool=True`` — the lowest-energy canvases grown so far, which lets a policy learn growth
from a dimer up to ``max_atoms``) with a bag of ``bag_size`` atoms.

``mask_invalid=True`` (default) gives the policy the placement windows as an action mask on the
direction (:class:`~ase_mlgen.generators.megen.policy.MeGenPolicy`): the paper's penalty still
applies when no direction at the sampled distance obeys the rules, but the policy no longer spends
its training learning the rules themselves and can spend it on the energy. ``False`` is the
paper's setting. ``time_limit`` (seconds of this process) stops the run after the iteration
that reaches it; a resumed run starts a new clock.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ase_mlgen.generators.megen.env import BatchGrowthEnv, PlacementRules
from ase_mlgen.generators.megen.policy import MeGenPolicy

#: default hyper-parameters of a training run
DEFAULTS = dict(iterations=40, episodes=64, ppo_epochs=4, minibatch=64, lr=3e-4, clip=0.2,
                gamma=1.0, lam=0.95, entropy_coef=0.01, value_coef=0.5, max_grad_norm=0.5,
                bag_size=1, grow_pool=True, pool_size=256, max_atoms=20, reward="delta",
                seed=0, device="auto", threads=None, mask_invalid=True, time_limit=None)


def _calculator(config):
    from ase_mlgen.calculators.specs import calculator_from_spec

    return calculator_from_spec(config["calculator"])


def _load_seeds(config) -> list:
    from ase_mlgen.generators.megen.generator import read_seeds

    return read_seeds(config["seeds"], config.get("element", "Ga"))


def rollout(policy: MeGenPolicy, env: BatchGrowthEnv, seeds, bags, seed_energies=None,
            generator: torch.Generator | None = None) -> list[dict]:
    """Run the episodes to the end; returns one transition dict per action taken."""
    env.reset(seeds, bags, seed_energies)
    transitions = []
    while env.active.any():
        idx = np.nonzero(env.active)[0]
        canvases = [env.episodes[i].canvas.copy() for i in idx]
        bags_now = [list(env.episodes[i].bag) for i in idx]
        with torch.no_grad():
            out = policy(policy.make_batch(canvases, bags_now), generator=generator)
        focal = np.zeros(len(env.episodes), dtype=int)
        dist = np.zeros(len(env.episodes))
        direc = np.zeros((len(env.episodes), 3))
        focal[idx] = out["focal"].cpu().numpy()
        dist[idx] = out["distance"].cpu().numpy()
        direc[idx] = out["direction"].cpu().numpy().astype(float)
        rewards, done, valid = env.step(focal, dist, direc)
        for k, i in enumerate(idx):
            transitions.append(dict(episode=int(i), canvas=canvases[k], bag=bags_now[k],
                                    focal=int(focal[i]), distance=float(dist[i]),
                                    dir_index=int(out["dir_index"][k]),
                                    log_prob=float(out["log_prob"][k]),
                                    value=float(out["value"][k]), reward=float(rewards[i]),
                                    done=bool(done[i]), valid=bool(valid[i])))
    return transitions


def gae(transitions: list[dict], gamma: float, lam: float) -> None:
    """Add ``advantage`` and ``return`` to every transition (episodes end at ``done``)."""
    by_episode: dict[int, list[dict]] = {}
    for t in transitions:
        by_episode.setdefault(t["episode"], []).append(t)
    for steps in by_episode.values():
        next_value, adv = 0.0, 0.0
        for t in reversed(steps):
            nonterminal = 0.0 if t["done"] else 1.0
            delta = t["reward"] + gamma * next_value * nonterminal - t["value"]
            adv = delta + gamma * lam * nonterminal * adv
            t["advantage"], t["return"] = adv, adv + t["value"]
            next_value = t["value"]


def ppo_update(policy, optimiser, transitions, config, rng: np.random.Generator) -> dict:
    """``ppo_epochs`` passes of clipped-objective minibatch updates; returns mean losses."""
    adv = np.array([t["advantage"] for t in transitions])
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    stats = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": []}
    n = len(transitions)
    dev = policy.device
    for _ in range(config["ppo_epochs"]):
        order = rng.permutation(n)
        for start in range(0, n, config["minibatch"]):
            ids = order[start:start + config["minibatch"]]
            batch = [transitions[i] for i in ids]
            g = policy.make_batch([t["canvas"] for t in batch], [t["bag"] for t in batch])
            out = policy(g, focal=torch.tensor([t["focal"] for t in batch], device=dev),
                         distance=torch.tensor([t["distance"] for t in batch], device=dev,
                                               dtype=torch.float32),
                         dir_index=torch.tensor([t["dir_index"] for t in batch], device=dev))
            old = torch.tensor([t["log_prob"] for t in batch], device=dev)
            a = torch.tensor(adv[ids], device=dev, dtype=torch.float32)
            ret = torch.tensor([t["return"] for t in batch], device=dev, dtype=torch.float32)
            ratio = torch.exp(out["log_prob"] - old)
            clipped = torch.clamp(ratio, 1 - config["clip"], 1 + config["clip"])
            policy_loss = -torch.min(ratio * a, clipped * a).mean()
            value_loss = torch.nn.functional.mse_loss(out["value"], ret)
            entropy = out["entropy"].mean()
            loss = (policy_loss + config["value_coef"] * value_loss
                    - config["entropy_coef"] * entropy)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config["max_grad_norm"])
            optimiser.step()
            stats["policy_loss"].append(policy_loss.item())
            stats["value_loss"].append(value_loss.item())
            stats["entropy"].append(entropy.item())
            stats["approx_kl"].append((old - out["log_prob"]).mean().item())
    return {k: float(np.mean(v)) for k, v in stats.items()}


def train_task(run_dir, config: dict, resume: bool) -> dict:
    """Job task (``ase_mlgen.generators.megen.ppo:train_task``): PPO on the growth environment."""
    from ase_mlgen.generators.megen.duplicates import DuplicateFilter
    from ase_mlgen.utils.device import resolve_device

    cfg = {**DEFAULTS, **config}
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    device = resolve_device(cfg["device"])
    rng = np.random.default_rng(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    rules = PlacementRules.fromdict(cfg["rules"]) if cfg.get("rules") else \
        PlacementRules.for_element(cfg.get("element", "Ga"))
    policy_kw = {"species": [cfg.get("element", "Ga")], "bond_length": rules.bond_length,
                 "max_atoms": max(int(cfg["max_atoms"]), 8),
                 "windows": [list(w) for w in rules.windows] if cfg["mask_invalid"] else None,
                 **cfg.get("policy", {})}
    policy = MeGenPolicy(**policy_kw).to(device)
    optimiser = torch.optim.Adam(policy.parameters(), lr=cfg["lr"])
    calculator = _calculator(cfg)
    env = BatchGrowthEnv(calculator, rules, reward=cfg["reward"])
    pool = _load_seeds(cfg)
    n_given = len(pool)
    pool_energies = list(env.energies(pool))
    start_iter, best_score, best_energy = 0, -np.inf, {}
    smoothed = None
    if resume:
        state = run_dir.load_checkpoint("last", map_location=device)
        if state is not None:
            policy.load_state_dict(state["policy"]["state_dict"])
            optimiser.load_state_dict(state["optimiser"])
            start_iter = state["iteration"]
            best_score, smoothed = state["best_score"], state["smoothed"]
            best_energy = state.get("best_energy", {})
            pool, pool_energies = state["pool"], state["pool_energies"]
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"].cpu())   # mapped to `device` with the rest
    element = cfg.get("element", "Ga")
    t_start = time.time()
    for it in range(start_iter + 1, cfg["iterations"] + 1):
        t0 = time.time()
        eligible = [i for i, s in enumerate(pool) if len(s) + 1 <= cfg["max_atoms"]]
        pick = rng.choice(eligible, size=cfg["episodes"])
        seeds = [pool[i] for i in pick]
        bags = [[element] * int(min(cfg["bag_size"], cfg["max_atoms"] - len(s))) for s in seeds]
        policy.eval()
        transitions = rollout(policy, env, seeds, bags, [pool_energies[i] for i in pick])
        gae(transitions, cfg["gamma"], cfg["lam"])
        policy.train()
        stats = ppo_update(policy, optimiser, transitions, cfg, rng)
        # grown canvases become seeds of bigger sizes (lowest energy per size kept)
        finals = [e for e in env.episodes if e.n_placed > 0 and len(e.canvas) < cfg["max_atoms"]]
        for e in finals:
            key = str(len(e.canvas))
            if e.energy < best_energy.get(key, np.inf):
                best_energy[key] = float(e.energy)
        if cfg["grow_pool"] and finals:
            filt = DuplicateFilter("paper", energy_tol=None)
            for s in pool:
                filt.add(s)
            for e in sorted(finals, key=lambda e: e.energy / len(e.canvas)):
                if filt.add(e.canvas):
                    pool.append(e.canvas.copy())
                    pool_energies.append(e.energy)
            if len(pool) > cfg["pool_size"]:
                keep = list(range(min(n_given, len(pool))))
                rest = sorted(range(len(keep), len(pool)),
                              key=lambda i: pool_energies[i] / len(pool[i]))
                keep += rest[:cfg["pool_size"] - len(keep)]
                pool = [pool[i] for i in keep]
                pool_energies = [pool_energies[i] for i in keep]
        ep_returns = [sum(e.rewards) for e in env.episodes]
        valid = float(np.mean([t["valid"] for t in transitions]))
        mean_return = float(np.mean(ep_returns))
        smoothed = mean_return if smoothed is None else 0.8 * smoothed + 0.2 * mean_return
        improved = smoothed > best_score
        best_score = max(best_score, smoothed)
        record = {"epoch": it, "max_epochs": cfg["iterations"],
                  "mean_reward": float(np.mean([t["reward"] for t in transitions])),
                  "mean_return": mean_return, "valid_fraction": valid,
                  "pool": len(pool), "energy_calls": env.n_energy_calls,
                  "epoch_seconds": time.time() - t0, **stats}
        run_dir.log(record, plot_every=5)
        run_dir.save_checkpoint({"policy": policy.state(), "optimiser": optimiser.state_dict(),
                                 "iteration": it, "best_score": best_score,
                                 "smoothed": smoothed, "best_energy": best_energy,
                                 "pool": pool, "pool_energies": pool_energies,
                                 "rng": rng.bit_generator.state,
                                 "torch_rng": torch.get_rng_state(), "rules": rules.todict(),
                                 "config": cfg}, best=improved)
        print(f"iteration {it}/{cfg['iterations']} return {mean_return:.3f} valid {valid:.2f} "
              f"({time.time() - t0:.1f} s)", flush=True)
        if cfg["time_limit"] and time.time() - t_start >= float(cfg["time_limit"]):
            print(f"time limit of {cfg['time_limit']} s reached after iteration {it}",
                  flush=True)
            break
    run_dir.plot(keys=("mean_return", "mean_reward"))
    return {"iterations": it if start_iter < cfg["iterations"] else start_iter,
            "max_iterations": cfg["iterations"], "best_score": best_score,
            "seconds": time.time() - t_start, "energy_calls": env.n_energy_calls,
            "best_energy_per_size": best_energy}


def load_run(path) -> "MeGen":
    """Job loader: the MeGen of a finished run (best checkpoint), with its seed pool."""
    from ase_mlgen.generators.megen.generator import MeGen

    return MeGen.load(Path(path) / "checkpoint_best.pt")
