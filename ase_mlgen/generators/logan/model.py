"""LoGAN: a local-environment Wasserstein GAN (Kovács, Heid, De Landsheere, Madsen,
Mach. Learn.: Sci. Technol. 5, 035079, 2024), in PyTorch.

The generator turns latent noise into all coordinates of a structure of the *target* composition
at once; the critic never sees whole structures, only each atom's local environment (a
rotation-invariant spherical-Bessel descriptor plus the one-hot of its species). The "real"
environments for a target composition are drawn atom by atom from per-species pools of training
environments (composition-aware resampling), so the training structures may have other
compositions than the target.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from ase_mlgen.generators.logan.contacts import (contact_penalty, floor_matrix,
                                                 shortest_pair_distances)
from ase_mlgen.generators.logan.nets import Critic, Generator
from ase_mlgen.utils.device import resolve_device

#: defaults of the paper (generator/critic widths, latent size, leaky ReLU, RMSProp, batch 15,
#: 5 critic steps and 2 gradient-penalty steps after each, i.e. 10 per generator step, 20 rattled
#: copies of each training structure with 0.05 Å, r_cut 5 Å, n_max 4, 12 neighbours) with two
#: deliberate departures: ``epochs`` 2000 instead of 60,000 and learning rates 1e-3 instead of
#: 1e-4, so that a model learns something in minutes on a CPU (use the paper's values on a GPU),
#: and, for crystals only, ``cell_margin`` 0.5 instead of 0: the sigmoid spans fractional
#: coordinates (-0.5, 1.5) and the atoms are wrapped into the cell. With the paper's span (0, 1)
#: the generator separates atoms by pushing them against the cell faces, where an atom at 0.99 and
#: one at 0.01 are neighbours through the boundary and the sigmoid is saturated: SiO2 models
#: collapsed to O–O pairs at 0.4–0.5 Å (see doc/logan.md).
DEFAULTS: dict[str, Any] = {
    "latent_dim": 20,
    "generator_layers": (512, 256, 128, 64, 32),
    "critic_layers": (256, 128, 64, 32),
    "generator_slope": 0.1,
    "critic_slope": 0.01,
    "critic_reduce": "mean",
    "r_cut": 5.0,
    "n_max": 4,
    "max_neighbours": 12,
    "radial": "bessel",
    "batch_size": 15,
    "n_critic": 5,
    "n_penalty": 10,
    "penalty_weight": 1.0,
    "lr_generator": 1e-3,
    "lr_critic": 1e-3,
    "epochs": 2000,
    "rattle": 20,
    "rattle_size": 0.05,
    "standardize": True,
    "fresh_penalty_fakes": False,
    "penalty_mode": "separate",
    "log_every": 25,
    "checkpoint_every": 250,
    "snapshot_every": 0,
    "snapshot_start": 0,
    "device": "auto",
    "threads": 1,
    "cell_margin": 0.5,
    "repulsion": 0.0,
    "repulsion_scale": 0.9,
}


def parse_composition(composition: str | Atoms | Sequence | dict) -> list[int]:
    """Atomic numbers of the target structure, grouped by element in the order given.

    Accepts a formula (``"C5H12O"``), an ``Atoms`` template, a dict ``{"C": 5, "H": 12, "O": 1}``
    or a sequence of symbols / atomic numbers.
    """
    if isinstance(composition, Atoms):
        return [int(z) for z in composition.numbers]
    if isinstance(composition, str):
        from ase.formula import Formula

        counts = Formula(composition).count()
        return [atomic_numbers[s] for s, n in counts.items() for _ in range(n)]
    if isinstance(composition, dict):
        return [atomic_numbers[s] if isinstance(s, str) else int(s)
                for s, n in composition.items() for _ in range(int(n))]
    out = [atomic_numbers[s] if isinstance(s, str) else int(s) for s in composition]
    if not out:
        raise ValueError("the composition is empty")
    return out


def _as_cell(cell) -> np.ndarray:
    arr = np.asarray(cell.array if hasattr(cell, "array") else cell, dtype=float)
    if arr.shape == (3,):
        arr = np.diag(arr)
    if arr.shape != (3, 3):
        raise ValueError(f"cell must be 3 lengths or a 3x3 matrix, got shape {arr.shape}")
    if abs(np.linalg.det(arr)) < 1e-6:
        raise ValueError("cell has zero volume")
    return arr


def default_box(images: Sequence[Atoms], padding: float = 1.5) -> np.ndarray:
    """A box for molecules: the largest extents of the training molecules along their principal
    axes, sorted (longest first), plus ``padding``; C4H10O/C6H14O give about 10.7 × 6.9 × 5.4 Å."""
    extents = []
    for atoms in images:
        pos = atoms.positions - atoms.positions.mean(axis=0)
        _, _, vt = np.linalg.svd(pos, full_matrices=False)
        proj = pos @ vt.T
        ext = np.sort(proj.max(axis=0) - proj.min(axis=0))[::-1]
        extents.append(np.pad(ext, (0, 3 - len(ext))))
    ext = np.max(np.array(extents), axis=0) + padding
    return np.diag(np.maximum(ext, 2.0))


def make_descriptor(species: Sequence[int], r_cut: float, n_max: int, max_neighbours: int,
                    radial: str):
    """The spherical-Bessel descriptor of :mod:`ase_mlgen.descriptors` for these species."""
    from ase_mlgen.descriptors import SphericalBessel

    return SphericalBessel(species=[chemical_symbols[z] for z in species], r_cut=r_cut,
                           n_max=n_max, max_neighbours=max_neighbours, radial=radial)


class LoGAN:
    """Local-environment Wasserstein GAN for molecules, clusters and crystals.

    Parameters (all keyword; defaults in :data:`DEFAULTS`): ``latent_dim``, ``generator_layers``,
    ``critic_layers``, ``generator_slope`` / ``critic_slope`` (leaky ReLU), ``critic_reduce``
    (``"mean"`` or ``"sum"`` of the per-atom scores), descriptor settings ``r_cut``, ``n_max``,
    ``max_neighbours``, ``radial`` (``"bessel"`` or ``"gaussian"``) or a ready ``descriptor``
    object, ``batch_size``, ``n_critic`` (critic steps per generator step), ``n_penalty``
    (gradient-penalty steps per generator step, spread evenly after the critic steps),
    ``penalty_weight``, ``fresh_penalty_fakes`` (new generated structures for every penalty
    step, as in the paper's code, instead of reusing the critic steps' ones: 3× the descriptor
    work), ``lr_generator``, ``lr_critic`` (RMSProp), ``epochs`` (generator steps),
    ``rattle`` / ``rattle_size`` (rattled copies of each training structure for the pools),
    ``standardize`` (scale descriptor features by the pools' mean and spread), ``cell_margin``
    (crystals: fractional coordinates come out in (-margin, 1 + margin) and are wrapped into
    the cell; 0 is the paper's sigmoid into the cell; ignored for molecules), ``repulsion``
    (weight of an optional generator penalty, Å⁻², on pairs closer than ``repulsion_scale`` ×
    the shortest training distance of their species pair; 0, the paper's loss, by default;
    see :mod:`ase_mlgen.generators.logan.contacts`), ``device``,
    ``threads`` (torch CPU threads during ``fit``, restored afterwards; default 1: the batches
    are a few hundred atoms, and on a busy machine more threads only spin — 6–10 s per epoch
    with two threads at load 4 against 0.4 s with one; ``None`` leaves torch's setting),
    ``random_state``.

    >>> model = LoGAN(random_state=0).fit(images, composition="C5H12O")   # doctest: +SKIP
    >>> candidates = model.generate(1000)                                   # doctest: +SKIP
    """

    def __init__(self, descriptor=None, random_state: int | None = None, **params):
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown LoGAN parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        if self.params["critic_reduce"] not in ("mean", "sum"):
            raise ValueError("critic_reduce must be 'mean' or 'sum'")
        if self.params["penalty_mode"] not in ("separate", "joint"):
            raise ValueError("penalty_mode must be 'separate' or 'joint'")
        if self.params["radial"] not in ("bessel", "gaussian"):
            raise ValueError("radial must be 'bessel' or 'gaussian'")
        if not float(self.params["repulsion"]) >= 0:
            raise ValueError("repulsion must be non-negative (weight of the contact penalty)")
        if not 0 < float(self.params["repulsion_scale"]) <= 1.5:
            raise ValueError("repulsion_scale must be in (0, 1.5] (fraction of the shortest "
                             "training distance of each species pair)")
        if not float(self.params["cell_margin"]) >= 0:
            raise ValueError("cell_margin must be non-negative (fractions of the cell)")
        for key in ("batch_size", "epochs", "latent_dim"):
            if int(self.params[key]) < 1:
                raise ValueError(f"{key} must be at least 1")
        self.random_state = random_state
        self._descriptor = descriptor
        self.generator: Generator | None = None
        self.critic: Critic | None = None
        self.numbers: list[int] | None = None
        self.species: list[int] | None = None
        self.cell: np.ndarray | None = None
        self.periodic = False
        self.history: list[dict] = []
        self.snapshots: list[dict] = []
        self.fit_seconds: float | None = None
        self._feature_mean: torch.Tensor | None = None
        self._feature_std: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return resolve_device(self.params["device"])

    @property
    def is_fitted(self) -> bool:
        return self.generator is not None

    @property
    def descriptor(self):
        if self._descriptor is None:
            if self.species is None:
                raise RuntimeError("the descriptor is set up by fit(); call fit() first")
            p = self.params
            self._descriptor = make_descriptor(self.species, p["r_cut"], p["n_max"],
                                               p["max_neighbours"], p["radial"])
        return self._descriptor

    def __repr__(self) -> str:
        state = (f"composition={self.formula!r}, periodic={self.periodic}" if self.is_fitted
                 else "not fitted")
        return f"LoGAN({state})"

    @property
    def formula(self) -> str | None:
        if self.numbers is None:
            return None
        return Atoms(numbers=self.numbers).get_chemical_formula()

    # -- descriptors ---------------------------------------------------------------------------
    def _describe(self, positions: torch.Tensor, numbers: torch.Tensor,
                  cell: torch.Tensor | None) -> torch.Tensor:
        """Per-atom features ``(B, N, F + n_species)``: descriptor (standardized) + one-hot."""
        desc = self.descriptor
        out = desc.forward_batch(positions, numbers, cell, self.periodic)
        if self._feature_mean is not None:
            out = (out - self._feature_mean) / self._feature_std
        if not self._append_onehot:
            return out
        onehot = self._onehot(numbers).to(out.dtype)
        return torch.cat([out, onehot.expand(out.shape[0], -1, -1)], dim=-1)

    @property
    def _append_onehot(self) -> bool:
        """False for descriptors whose features already end with the centre's one-hot species
        (SphericalBessel); True for any other descriptor object."""
        return type(self.descriptor).__name__ != "SphericalBessel"

    @property
    def _n_onehot(self) -> int:
        return len(self.species) if self._append_onehot else 0

    def _onehot(self, numbers: torch.Tensor) -> torch.Tensor:
        index = {z: i for i, z in enumerate(self.species)}
        idx = torch.tensor([index[int(z)] for z in numbers.tolist()], device=numbers.device)
        return torch.nn.functional.one_hot(idx, len(self.species)).unsqueeze(0)

    def _cell_tensor(self, batch: int) -> torch.Tensor:
        cell = torch.as_tensor(self.cell, dtype=torch.float32, device=self.device)
        return cell.unsqueeze(0).expand(batch, 3, 3)

    def _positions(self, frac: torch.Tensor) -> torch.Tensor:
        """Cartesian positions (Å) of the generator's fractional output; crystals are wrapped
        into the cell (``frac - floor(frac)``: the gradient passes unchanged)."""
        if self.periodic:
            frac = frac - torch.floor(frac.detach())
        return frac @ torch.as_tensor(self.cell, dtype=frac.dtype, device=frac.device)

    def _build_pools(self, images: Sequence[Atoms], rng: np.random.Generator
                     ) -> dict[int, torch.Tensor]:
        """Per-species pools of training environments (raw descriptors, on the device)."""
        p = self.params
        copies: list[Atoms] = []
        for atoms in images:
            n_copies = max(int(p["rattle"]), 1)
            for c in range(n_copies):
                a = atoms.copy()
                if p["rattle"] and p["rattle_size"] > 0:
                    a.positions = a.positions + rng.normal(0.0, p["rattle_size"],
                                                           a.positions.shape)
                copies.append(a)
        groups: dict[tuple, list[Atoms]] = {}
        for a in copies:
            key = (tuple(a.numbers), bool(np.any(a.pbc)))
            groups.setdefault(key, []).append(a)
        pools: dict[int, list[torch.Tensor]] = {z: [] for z in self.species}
        dev = self.device
        with torch.no_grad():
            for (numbers, periodic), group in groups.items():
                num = torch.as_tensor(numbers, dtype=torch.long, device=dev)
                for start in range(0, len(group), 256):
                    chunk = group[start:start + 256]
                    pos = torch.as_tensor(np.array([a.positions for a in chunk]),
                                          dtype=torch.float32, device=dev)
                    cell = (torch.as_tensor(np.array([a.cell.array for a in chunk]),
                                            dtype=torch.float32, device=dev)
                            if periodic else None)
                    d = self.descriptor.forward_batch(pos, num, cell, periodic)
                    for z in set(numbers):
                        mask = num == z
                        pools[z].append(d[:, mask].reshape(-1, d.shape[-1]))
        out = {}
        for z, chunks in pools.items():
            if not chunks:
                raise ValueError(f"no training structure contains {chemical_symbols[z]}; the "
                                 "target composition may only use elements of the training set")
            out[z] = torch.cat(chunks).float()
        return out

    def _sample_real(self, pools: dict[int, torch.Tensor], batch: int,
                     gen: torch.Generator) -> torch.Tensor:
        """Composition-aware resampling: atom i of each structure gets a random training
        environment of its species. Returns standardized features with one-hot ``(B, N, F')``."""
        n = len(self.numbers)
        feat = next(iter(pools.values())).shape[-1]
        out = torch.empty(batch, n, feat, device=self.device)
        for z, idx in self._species_slots.items():
            pool = pools[z]
            pick = torch.randint(len(pool), (batch, len(idx)), generator=gen, device="cpu")
            out[:, idx] = pool[pick.to(pool.device)]
        if self._feature_mean is not None:
            out = (out - self._feature_mean) / self._feature_std
        if not self._append_onehot:
            return out
        onehot = self._onehot(self._numbers_t).to(out.dtype).expand(batch, -1, -1)
        return torch.cat([out, onehot], dim=-1)

    def _score(self, features: torch.Tensor) -> torch.Tensor:
        per_atom = self.critic(features)
        return per_atom.mean(-1) if self.params["critic_reduce"] == "mean" else per_atom.sum(-1)

    # -- training ------------------------------------------------------------------------------
    def _setup(self, images: Sequence[Atoms], composition, cell, pbc) -> None:
        if len(images) == 0:
            raise ValueError("fit() needs at least one training structure")
        train_periodic = {bool(np.any(a.pbc)) for a in images}
        if len(train_periodic) > 1:
            raise ValueError("mix of periodic and non-periodic training structures")
        self.periodic = train_periodic.pop() if pbc is None else bool(pbc)
        if composition is None:
            formulas = {a.get_chemical_formula() for a in images}
            if len(formulas) != 1:
                raise ValueError("the training structures have several compositions "
                                 f"({sorted(formulas)[:4]}...); pass composition=")
            composition = images[0]
        self.numbers = parse_composition(composition)
        self.species = sorted(set(self.numbers) | {int(z) for a in images for z in a.numbers})
        if cell is None:
            if self.periodic:
                cells = {tuple(np.round(a.cell.array, 6).ravel()) for a in images}
                if len(cells) != 1:
                    raise ValueError("periodic training structures with different cells: pass "
                                     "cell= (the cell of the target structure)")
                cell = images[0].cell.array
            else:
                cell = default_box(images)
        self.cell = _as_cell(cell)
        z_index = {}
        for i, z in enumerate(self.numbers):
            z_index.setdefault(z, []).append(i)
        self._species_slots = {z: torch.tensor(idx, dtype=torch.long)
                               for z, idx in z_index.items()}

    def _init_nets(self) -> None:
        p = self.params
        dev = self.device
        with torch.random.fork_rng(devices=[]):
            if self.random_state is not None:
                torch.manual_seed(int(self.random_state))
            margin = float(p["cell_margin"]) if self.periodic else 0.0
            self.generator = Generator(len(self.numbers), p["latent_dim"],
                                       p["generator_layers"], p["generator_slope"],
                                       span=(-margin, 1.0 + margin)).to(dev)
            self.critic = Critic(self._n_features + self._n_onehot, p["critic_layers"],
                                 p["critic_slope"]).to(dev)

    def fit(self, images: Sequence[Atoms] | Atoms, composition=None, cell=None, pbc=None,
            run_dir=None, resume: bool = False, verbose: bool = False) -> "LoGAN":
        """Train on ``images`` to generate structures of ``composition`` in ``cell``.

        ``composition``: formula, ``Atoms`` or list (default: the training composition, when all
        images share one). ``cell``: the target cell for crystals (default: the training cell
        when all are equal) or the box for molecules/clusters (3 lengths or 3×3; default from the
        training molecules' extents). ``run_dir``: a :class:`~ase_mlgen.jobs.RunDirectory` (or
        path) that receives ``log.jsonl`` and resumable checkpoints; ``resume=True`` continues
        from its last checkpoint. Returns ``self``.
        """
        threads = self.params["threads"]
        if threads is None:
            return self._fit(images, composition, cell, pbc, run_dir, resume, verbose)
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return self._fit(images, composition, cell, pbc, run_dir, resume, verbose)
        finally:
            torch.set_num_threads(before)

    def _fit(self, images, composition, cell, pbc, run_dir, resume, verbose) -> "LoGAN":
        from ase_mlgen.jobs.run_directory import RunDirectory

        t0 = time.perf_counter()
        if isinstance(images, Atoms):
            images = [images]
        images = list(images)
        self._setup(images, composition, cell, pbc)
        p = self.params
        dev = self.device
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        self._numbers_t = torch.as_tensor(self.numbers, dtype=torch.long, device=dev)
        for z in self._species_slots:
            self._species_slots[z] = self._species_slots[z].to(dev)
        if hasattr(self.descriptor, "to"):
            self._descriptor = self.descriptor.to(dev)

        floors = None
        if float(p["repulsion"]) > 0:
            floors = floor_matrix(self.numbers, shortest_pair_distances(images),
                                  float(p["repulsion_scale"])).to(dev)
        pools = self._build_pools(images, rng)
        self._n_features = next(iter(pools.values())).shape[-1]
        if p["standardize"]:
            allfeat = torch.cat(list(pools.values()))
            self._feature_mean = allfeat.mean(0)
            self._feature_std = allfeat.std(0).clamp_min(1e-6)
        else:
            self._feature_mean = self._feature_std = None
        self._init_nets()
        opt_g = torch.optim.RMSprop(self.generator.parameters(), lr=p["lr_generator"])
        opt_c = torch.optim.RMSprop(self.critic.parameters(), lr=p["lr_critic"])

        rd = (run_dir if isinstance(run_dir, RunDirectory) or run_dir is None
              else RunDirectory(run_dir))
        start_epoch = 0
        self.history = []
        self.snapshots = []
        if rd is not None and resume:
            state = rd.load_checkpoint("last", map_location=dev)
            if state is not None:
                self.generator.load_state_dict(state["generator"])
                self.critic.load_state_dict(state["critic"])
                opt_g.load_state_dict(state["opt_generator"])
                opt_c.load_state_dict(state["opt_critic"])
                gen.set_state(state["torch_rng"])
                self.history = state.get("history", [])
                self.snapshots = list(state.get("snapshots", []))
                start_epoch = int(state["epoch"])

        B = int(p["batch_size"])
        n_crit, n_pen = int(p["n_critic"]), int(p["n_penalty"])
        joint = p["penalty_mode"] == "joint"
        if joint:  # the penalty is part of every critic step's loss
            n_pen = 0
        # penalty steps after critic step c: spread n_pen evenly over the n_crit critic steps
        pen_after = [n_pen // max(n_crit, 1) + (1 if c < n_pen % max(n_crit, 1) else 0)
                     for c in range(max(n_crit, 1))]
        # penalty steps reuse the critic steps' fakes (with fresh real batches and weights)
        # unless fresh_penalty_fakes: the generator does not change in between
        n_fake = max(n_crit, 1) * B + (n_pen * B if p["fresh_penalty_fakes"] else 0)
        cell_b = self._cell_tensor(max(B, n_fake)) if self.periodic else None
        epochs = int(p["epochs"])
        log_every = max(int(p["log_every"]), 1)
        ckpt_every = max(int(p["checkpoint_every"]), 1)
        acc = Counter()
        n_acc = 0
        t_epoch = time.perf_counter()
        for epoch in range(start_epoch + 1, epochs + 1):
            # generator step
            z = torch.randn(B, p["latent_dim"], generator=gen).to(dev)
            pos = self._positions(self.generator(z))
            fake = self._describe(pos, self._numbers_t, None if cell_b is None else cell_b[:B])
            g_loss = -self._score(fake).mean()
            if floors is not None:   # optional prior against contacts shorter than training's
                contact = contact_penalty(pos, floors,
                                          None if cell_b is None else cell_b[0]).mean()
                g_loss = g_loss + float(p["repulsion"]) * contact
                acc["contact_penalty"] += float(contact.detach())
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()

            # critic and penalty steps on one batch of fresh fakes (the generator is fixed here)
            with torch.no_grad():
                z = torch.randn(n_fake, p["latent_dim"], generator=gen).to(dev)
                pos = self._positions(self.generator(z))
                fakes = self._describe(pos, self._numbers_t,
                                       None if cell_b is None else cell_b[:n_fake])
            k = 0
            w_sum = gp_sum = 0.0
            fresh = bool(p["fresh_penalty_fakes"])
            for c in range(n_crit):
                real = self._sample_real(pools, B, gen)
                fake_c = fakes[k:k + B]
                k += B
                w = self._score(real).mean() - self._score(fake_c).mean()
                loss = -w
                if joint:
                    gp = self._gradient_penalty(real, fake_c, gen)
                    loss = loss + p["penalty_weight"] * gp
                    gp_sum += float(gp.detach())
                opt_c.zero_grad(set_to_none=True)
                loss.backward()
                opt_c.step()
                w_sum += float(w.detach())
                for _ in range(pen_after[c]):
                    if fresh:
                        fake_p = fakes[k:k + B]
                        k += B
                    else:
                        fake_p = fake_c
                    gp_sum += self._penalty_step(pools, fake_p, gen, opt_c)
            if n_crit == 0:
                for _ in range(n_pen):
                    fake_p = fakes[k:k + B] if fresh else fakes[:B]
                    k += B if fresh else 0
                    gp_sum += self._penalty_step(pools, fake_p, gen, opt_c)
            acc["generator_loss"] += float(g_loss.detach())
            acc["wasserstein"] += w_sum / max(n_crit, 1)
            acc["penalty"] += gp_sum / max(n_crit if joint else n_pen, 1)
            n_acc += 1
            if epoch % log_every == 0 or epoch == epochs:
                now = time.perf_counter()
                record = {"epoch": epoch, "max_epochs": epochs,
                          **{key: v / n_acc for key, v in acc.items()},
                          "epoch_seconds": (now - t_epoch) / n_acc}
                self.history.append(record)
                if rd is not None:
                    rd.log(record, plot_every=log_every * 10)
                if verbose:
                    print(json.dumps(record))
                acc.clear()
                n_acc = 0
                t_epoch = now
            snap = int(p["snapshot_every"])
            if snap > 0 and epoch % snap == 0 and epoch >= int(p["snapshot_start"]):
                self.snapshots.append({"epoch": epoch, "generator": {
                    k: v.detach().cpu().clone() for k, v in self.generator.state_dict().items()}})
            if rd is not None and (epoch % ckpt_every == 0 or epoch == epochs):
                rd.save_checkpoint({"epoch": epoch, "generator": self.generator.state_dict(),
                                    "critic": self.critic.state_dict(),
                                    "opt_generator": opt_g.state_dict(),
                                    "opt_critic": opt_c.state_dict(),
                                    "torch_rng": gen.get_state(),
                                    "history": self.history,
                                    "snapshots": self.snapshots})
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor,
                          gen: torch.Generator) -> torch.Tensor:
        """``mean (|∇ critic| - 1)²`` at random points between a real and a fake environment of
        the *same* atom slot (hence the same species)."""
        u = torch.rand(fake.shape[0], fake.shape[1], 1, generator=gen).to(fake.device)
        mid = u * real.detach() + (1 - u) * fake.detach()
        grad = self.critic.input_gradient(mid)  # analytic: no double backward
        return ((grad.norm(dim=-1) - 1.0) ** 2).mean()

    def _penalty_step(self, pools, fake: torch.Tensor, gen: torch.Generator, opt) -> float:
        """One separate gradient-penalty step (the paper's code): a fresh real batch, the
        penalty of :meth:`_gradient_penalty` times ``penalty_weight``, one optimizer step."""
        real = self._sample_real(pools, fake.shape[0], gen)
        gp = self._gradient_penalty(real, fake, gen)
        opt.zero_grad(set_to_none=True)
        (self.params["penalty_weight"] * gp).backward()
        opt.step()
        return float(gp.detach())

    def wasserstein_estimate(self, images: Sequence[Atoms], n: int = 500, seed: int = 0,
                             generator: "LoGAN | None" = None) -> float:
        """Critic estimate of the Wasserstein distance between real and generated environments
        (mean score of ``n`` structures resampled from the pools of ``images``, normally the
        training images, minus that of ``n`` generated ones). ``generator``: judge the
        structures of another model of the same composition with this model's critic."""
        self._check_fitted()
        gen = torch.Generator().manual_seed(seed)
        pools = self._build_pools(list(images), np.random.default_rng(seed))
        with torch.no_grad():
            real = self._sample_real(pools, n, gen)
            source = generator if generator is not None else self
            z = torch.randn(n, source.params["latent_dim"], generator=gen).to(self.device)
            pos = self._positions(source.generator.to(self.device)(z))
            fake = self._describe(pos, self._numbers_t,
                                  self._cell_tensor(n) if self.periodic else None)
            return float(self._score(real).mean() - self._score(fake).mean())

    # -- generation ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("this LoGAN is not fitted; call fit() or load() first")

    def generate_positions(self, n: int, random_state: int | np.random.Generator | None = None,
                           batch: int = 100_000) -> np.ndarray:
        """Cartesian positions ``(n, N, 3)`` of ``n`` generated structures (no Atoms objects)."""
        self._check_fitted()
        if n < 0:
            raise ValueError("n must be non-negative")
        if isinstance(random_state, np.random.Generator):
            seed = int(random_state.integers(2**62))
        elif random_state is None:
            seed = np.random.SeedSequence().entropy % 2**62
        else:
            seed = int(random_state)
        gen = torch.Generator().manual_seed(int(seed))
        out = []
        self.generator.eval()
        with torch.no_grad():
            for start in range(0, n, batch):
                m = min(batch, n - start)
                z = torch.randn(m, self.params["latent_dim"], generator=gen).to(self.device)
                out.append(self._positions(self.generator(z)).cpu().numpy().astype(float))
        self.generator.train()
        return np.concatenate(out) if out else np.zeros((0, len(self.numbers), 3))

    def generate(self, n: int, random_state: int | np.random.Generator | None = None,
                 snapshots: bool = False) -> list[Atoms]:
        """``n`` new structures as ``Atoms`` (``info["generator"] = "logan"``). Crystals are
        periodic in the target cell with positions wrapped into it; molecules/clusters lie in the
        box (``pbc=False``, the box as their cell).

        ``snapshots=True`` (with ``snapshot_every`` set in training) splits ``n`` evenly over the
        generator snapshots kept during training (``info["snapshot"]`` = the epoch): a WGAN's
        generator wanders between modes while it trains, so its snapshots together cover more
        basins than its final state, at no extra training cost."""
        if snapshots and self.snapshots:
            self._check_fitted()
            if isinstance(random_state, np.random.Generator):
                base = int(random_state.integers(2**31))
            else:
                base = 0 if random_state is None else int(random_state)
            final = {k: v.detach().clone() for k, v in self.generator.state_dict().items()}
            out: list[Atoms] = []
            k = len(self.snapshots)
            try:
                for i, snap in enumerate(self.snapshots):
                    m = n // k + (1 if i < n % k else 0)
                    self.generator.load_state_dict(snap["generator"])
                    for atoms in self.generate(m, random_state=base * 7919 + i):
                        atoms.info["snapshot"] = int(snap["epoch"])
                        out.append(atoms)
            finally:
                self.generator.load_state_dict(final)
            return out
        positions = self.generate_positions(n, random_state)
        out = []
        for pos in positions:
            atoms = Atoms(numbers=self.numbers, positions=pos, cell=self.cell, pbc=self.periodic)
            if self.periodic:
                atoms.wrap()
            atoms.info["generator"] = "logan"
            out.append(atoms)
        return out

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        self._check_fitted()
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()}
        return {"format": "ase_mlgen.logan/1", "params": params,
                "random_state": self.random_state, "numbers": self.numbers,
                "species": self.species, "cell": self.cell.tolist(), "periodic": self.periodic,
                "n_features": self._n_features,
                "feature_mean": self._feature_mean.cpu() if self._feature_mean is not None else None,
                "feature_std": self._feature_std.cpu() if self._feature_std is not None else None,
                "generator": {k: v.cpu() for k, v in self.generator.state_dict().items()},
                "critic": {k: v.cpu() for k, v in self.critic.state_dict().items()},
                "history": self.history, "fit_seconds": self.fit_seconds,
                "snapshots": self.snapshots}

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` (a torch file, written atomically)."""
        from ase_mlgen.utils.io import atomic_torch_save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.state_dict(), path)
        return path

    @classmethod
    def from_state_dict(cls, state: dict, device: str | None = None) -> "LoGAN":
        if state.get("format") != "ase_mlgen.logan/1":
            raise ValueError("not a LoGAN model file")
        params = dict(state["params"])
        # files written before cell_margin existed hold generators trained on the (0, 1) span
        params.setdefault("cell_margin", 0.0)
        if device is not None:
            params["device"] = device
        model = cls(random_state=state["random_state"], **params)
        model.numbers = list(state["numbers"])
        model.species = list(state["species"])
        model.cell = np.array(state["cell"])
        model.periodic = bool(state["periodic"])
        model._n_features = int(state["n_features"])
        dev = model.device
        model._feature_mean = (state["feature_mean"].to(dev)
                               if state["feature_mean"] is not None else None)
        model._feature_std = (state["feature_std"].to(dev)
                              if state["feature_std"] is not None else None)
        model._numbers_t = torch.as_tensor(model.numbers, dtype=torch.long, device=dev)
        z_index: dict[int, list[int]] = {}
        for i, z in enumerate(model.numbers):
            z_index.setdefault(z, []).append(i)
        model._species_slots = {z: torch.tensor(i, device=dev) for z, i in z_index.items()}
        model._init_nets()
        model.generator.load_state_dict(state["generator"])
        model.critic.load_state_dict(state["critic"])
        model.history = list(state.get("history", []))
        model.snapshots = list(state.get("snapshots", []))
        model.fit_seconds = state.get("fit_seconds")
        return model

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "LoGAN":
        """Read a model written by :meth:`save` (``device``: where to put it; default auto)."""
        from ase_mlgen.utils.io import read_model_file

        path, state = read_model_file(path, "LoGAN")
        return cls.from_state_dict(state, device=device)

    def critic_scores(self, images: Iterable[Atoms]) -> np.ndarray:
        """Per-structure critic score of each of ``images`` (target composition only): higher
        is more like the training environments."""
        self._check_fitted()
        out = []
        with torch.no_grad():
            for atoms in images:
                if list(atoms.numbers) != list(self.numbers):
                    raise ValueError("critic_scores needs structures in the model's atom order "
                                     f"({self.formula})")
                pos = torch.as_tensor(atoms.positions[None], dtype=torch.float32,
                                      device=self.device)
                cell = (torch.as_tensor(atoms.cell.array[None], dtype=torch.float32,
                                        device=self.device) if self.periodic else None)
                out.append(float(self._score(self._describe(pos, self._numbers_t, cell))))
        return np.array(out)


def _train_classmethod(cls, images, composition=None, cell=None, **kwargs):
    """Train as a job (see :func:`ase_mlgen.generators.logan.training.train`); returns a Job."""
    from ase_mlgen.generators.logan.training import train

    return train(images, composition, cell, **kwargs)


LoGAN.train = classmethod(_train_classmethod)
