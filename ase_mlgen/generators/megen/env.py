"""The MeGen growth environment: a canvas (the cluster so far), a bag (atoms still to place) and
an action (focal atom f, distance d, direction x̂) that puts the next atom at ``r_f + d·x̂``.

Placement rules (Modee et al., Mach. Learn.: Sci. Technol. 4, 025032, 2023, Ga): the first,
second and third nearest neighbours of the new atom must lie within 2.3–3.1, 2.5–3.1 and
2.5–5.5 Å; a violating action earns the penalty −10 and ends the episode without placing the atom.
For other elements :meth:`PlacementRules.from_structures` derives the windows from the
nearest-neighbour distance distribution of training structures, and
:meth:`PlacementRules.for_element` scales the Ga windows by covalent radii when no data are given.

The reward of a valid placement is ``−(E(canvas + atom) − E(canvas))`` in eV by default (the
energy released by the placed atom, so that the return of an episode is ``E(seed) − E(final)``),
or ``−E/N`` (``reward="per_atom"``). Energies come from any ASE calculator; when the calculator
offers a batched ``predict(images) -> ndarray`` (DART does), all candidates of a step are scored in
one call.

:class:`BatchGrowthEnv` holds ``B`` independent episodes and steps them together; all geometry
(positions, rule checks) is vectorised over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

#: the paper's Ga windows (Å) for the first, second and third nearest neighbour of a new atom
GA_WINDOWS = ((2.3, 3.1), (2.5, 3.1), (2.5, 5.5))
#: penalty for an action that breaks a placement rule (paper)
PENALTY = -10.0


@dataclass
class PlacementRules:
    """Allowed distance windows (Å) of the k-th nearest canvas neighbour of a new atom.

    ``windows[k] = (low, high)`` for the (k+1)-th nearest neighbour. A rule is only applied when
    the canvas has at least ``k+1`` atoms.
    """

    windows: tuple = GA_WINDOWS
    penalty: float = PENALTY

    @classmethod
    def ga(cls) -> "PlacementRules":
        return cls(GA_WINDOWS, PENALTY)

    @classmethod
    def for_element(cls, symbol: str) -> "PlacementRules":
        """Ga windows scaled by the ratio of covalent radii (a fallback without training data)."""
        if symbol == "Ga":
            return cls.ga()
        scale = covalent_radii[atomic_numbers[symbol]] / covalent_radii[atomic_numbers["Ga"]]
        return cls(tuple((lo * scale, hi * scale) for lo, hi in GA_WINDOWS), PENALTY)

    @classmethod
    def from_structures(cls, images: Sequence[Atoms], low_q: float = 0.005,
                        high_q: float = 0.995, margin: float = 0.05) -> "PlacementRules":
        """Windows from the 1st/2nd/3rd nearest-neighbour distance distributions of ``images``
        (quantiles ``low_q``/``high_q``, widened by ``margin`` relative)."""
        nn = [[], [], []]
        for atoms in images:
            if len(atoms) < 2:
                continue
            d = atoms.get_all_distances()
            np.fill_diagonal(d, np.inf)
            d.sort(axis=1)
            for k in range(min(3, len(atoms) - 1)):
                nn[k].extend(d[:, k].tolist())
        if not nn[0]:
            raise ValueError("placement rules need structures with at least two atoms")
        windows = []
        for k in range(3):
            values = np.asarray(nn[k] or nn[k - 1])
            lo, hi = np.quantile(values, [low_q, high_q])
            windows.append((float(lo * (1 - margin)), float(hi * (1 + margin))))
        # the second neighbour can never be closer than the first allows
        windows[1] = (max(windows[1][0], windows[0][0]), max(windows[1][1], windows[0][1]))
        return cls(tuple(windows), PENALTY)

    @property
    def bond_length(self) -> float:
        """Centre of the first-neighbour window (Å), the natural scale of the distance head."""
        lo, hi = self.windows[0]
        return 0.5 * (lo + hi)

    def valid(self, new_positions: np.ndarray, canvas: np.ndarray,
              mask: np.ndarray) -> np.ndarray:
        """Vectorised test: ``new_positions [B,3]``, padded ``canvas [B,N,3]`` with ``mask [B,N]``.

        Returns a boolean array ``[B]``.
        """
        d = np.linalg.norm(canvas - new_positions[:, None, :], axis=-1)
        d = np.where(mask, d, np.inf)
        d.sort(axis=1)
        n = mask.sum(axis=1)
        ok = np.ones(len(new_positions), dtype=bool)
        for k, (lo, hi) in enumerate(self.windows):
            if k >= d.shape[1]:
                break
            applies = n > k
            ok &= ~applies | ((d[:, k] >= lo) & (d[:, k] <= hi))
        return ok

    def todict(self) -> dict:
        return {"windows": [list(w) for w in self.windows], "penalty": self.penalty}

    @classmethod
    def fromdict(cls, d: dict) -> "PlacementRules":
        return cls(tuple(tuple(w) for w in d["windows"]), d.get("penalty", PENALTY))


def energies_of(images: Sequence[Atoms], calculator) -> np.ndarray:
    """Energies (eV) of ``images``: one batched ``calculator.predict(images)`` when available,
    otherwise ``get_potential_energy()`` structure by structure."""
    if not images:
        return np.zeros(0)
    predict = getattr(calculator, "predict", None)
    if callable(predict):
        return np.asarray(predict(list(images)), dtype=float).reshape(len(images))
    out = np.empty(len(images))
    for i, atoms in enumerate(images):
        atoms = atoms.copy()
        atoms.calc = calculator
        out[i] = atoms.get_potential_energy()
    return out


@dataclass
class Episode:
    """One growth episode: the canvas, the bag and bookkeeping."""

    canvas: Atoms
    bag: list
    energy: float
    done: bool = False
    n_placed: int = 0
    rewards: list = field(default_factory=list)


class BatchGrowthEnv:
    """``B`` growth episodes stepped together.

    Parameters
    ----------
    calculator:
        Any ASE calculator (DART by default in :class:`~ase_mlgen.generators.megen.MeGen`); used
        for the reward.
    rules:
        :class:`PlacementRules`; Ga defaults when ``None``.
    reward:
        ``"delta"`` (default): ``−ΔE`` of the placement in eV; ``"per_atom"``: ``−E/N`` eV/atom
        of the grown canvas.
    """

    def __init__(self, calculator, rules: PlacementRules | None = None, reward: str = "delta"):
        if reward not in ("delta", "per_atom"):
            raise ValueError(f"unknown reward {reward!r}; use 'delta' or 'per_atom'")
        self.calculator = calculator
        self.rules = rules or PlacementRules.ga()
        self.reward = reward
        self.episodes: list[Episode] = []
        self.n_energy_calls = 0

    # -- episodes ------------------------------------------------------------------------------
    def reset(self, seeds: Sequence[Atoms], bags: Sequence[Sequence[str]],
              seed_energies: Sequence[float] | None = None) -> list[Episode]:
        """Start one episode per seed with its bag (list of chemical symbols to place)."""
        if len(seeds) != len(bags):
            raise ValueError("one bag per seed is needed")
        seeds = [_clean(s) for s in seeds]
        if seed_energies is None:
            seed_energies = self.energies(seeds)
        self.episodes = [Episode(s, list(b), float(e), done=len(b) == 0)
                         for s, b, e in zip(seeds, bags, seed_energies)]
        return self.episodes

    def energies(self, images: Sequence[Atoms]) -> np.ndarray:
        self.n_energy_calls += len(images)
        return energies_of(images, self.calculator)

    @property
    def active(self) -> np.ndarray:
        return np.array([not e.done for e in self.episodes], dtype=bool)

    def padded_canvas(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[B, Nmax, 3]`` (Å) and mask ``[B, Nmax]`` of all canvases."""
        nmax = max(len(e.canvas) for e in self.episodes)
        pos = np.zeros((len(self.episodes), nmax, 3))
        mask = np.zeros((len(self.episodes), nmax), dtype=bool)
        for b, e in enumerate(self.episodes):
            n = len(e.canvas)
            pos[b, :n] = e.canvas.positions
            mask[b, :n] = True
        return pos, mask

    def propose(self, focal: np.ndarray, distance: np.ndarray,
                direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the new atoms and whether they obey the rules (no state change)."""
        pos, mask = self.padded_canvas()
        b = np.arange(len(self.episodes))
        new = pos[b, focal] + distance[:, None] * direction
        return new, self.rules.valid(new, pos, mask)

    def step(self, focal: np.ndarray, distance: np.ndarray,
             direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply one action per episode (inactive episodes are ignored).

        Returns ``rewards [B]``, ``done [B]`` and ``valid [B]``.
        """
        active = self.active
        new, valid = self.propose(np.asarray(focal), np.asarray(distance, float),
                                  np.asarray(direction, float))
        rewards = np.zeros(len(self.episodes))
        grown, which = [], []
        for b, e in enumerate(self.episodes):
            if not active[b]:
                continue
            if not valid[b]:
                rewards[b] = self.rules.penalty
                e.done = True
                continue
            symbol = e.bag[0]
            canvas = e.canvas + Atoms(symbol, positions=[new[b]])
            grown.append(canvas)
            which.append(b)
        if grown:
            energies = self.energies(grown)
            for b, canvas, energy in zip(which, grown, energies):
                e = self.episodes[b]
                if self.reward == "delta":
                    rewards[b] = -(energy - e.energy)
                else:
                    rewards[b] = -energy / len(canvas)
                e.canvas, e.energy = canvas, float(energy)
                e.bag.pop(0)
                e.n_placed += 1
                e.done = len(e.bag) == 0
        for b, e in enumerate(self.episodes):
            if active[b]:
                e.rewards.append(float(rewards[b]))
        done = np.array([e.done for e in self.episodes], dtype=bool)
        return rewards, done, valid & active


def _clean(atoms: Atoms) -> Atoms:
    """A calculator-free copy of a cluster, centred at the origin, without cell or pbc."""
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions())
    out.positions -= out.positions.mean(axis=0) if len(out) else 0.0
    return out
