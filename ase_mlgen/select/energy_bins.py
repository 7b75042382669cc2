"""One structure per predicted-energy bin: the screening step of the DART paper (section 3.5).

Modee et al. (PCCP 23, 21995, 2021) scored thousands of molecular-dynamics snapshots of a cluster
with DART, divided the predicted energy range into bins and took one structure from each, so that
the expensive relaxations that follow cover the whole energy range — low-energy candidates and
the diverse higher ones — instead of many near-copies of the most common configuration.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms


def energy_bins(images: Sequence[Atoms], calculator, n_bins: int, per_atom: bool = True,
                pick: str = "lowest", energies: np.ndarray | None = None,
                random_state=None) -> list[Atoms]:
    """Pick up to one structure per bin of predicted energy.

    Parameters
    ----------
    images:
        Candidate structures (e.g. MD snapshots).
    calculator:
        Scores them: anything with ``predict(images) -> ndarray`` (DART, batched) or an ASE
        calculator (called per structure).
    n_bins:
        Number of equal-width bins between the lowest and highest predicted energy.
    per_atom:
        Bin energies per atom (eV/atom; default, so clusters of several sizes mix) or per
        structure (eV).
    pick:
        ``"lowest"`` (the lowest-energy structure of each bin), ``"centre"`` (nearest to the bin
        centre) or ``"random"``.
    energies:
        Precomputed predictions (eV per structure) instead of calling ``calculator``.

    Returns the picked structures, lowest bin first, each a copy with
    ``info["predicted_energy"]`` (eV), ``info["energy_bin"]`` and ``info["source_index"]``.
    Empty bins give nothing, so fewer than ``n_bins`` structures may come back.
    """
    images = list(images)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if pick not in ("lowest", "centre", "random"):
        raise ValueError(f"pick must be 'lowest', 'centre' or 'random', got {pick!r}")
    if not images:
        return []
    if energies is None:
        if hasattr(calculator, "predict"):
            energies = np.asarray(calculator.predict(images), dtype=float)
        else:
            energies = []
            for atoms in images:
                a = atoms.copy()
                a.calc = calculator
                energies.append(a.get_potential_energy())
            energies = np.asarray(energies, dtype=float)
    energies = np.asarray(energies, dtype=float)
    if len(energies) != len(images):
        raise ValueError(f"{len(energies)} energies for {len(images)} structures")
    score = energies / np.array([len(a) for a in images]) if per_atom else energies
    lo, hi = float(score.min()), float(score.max())
    edges = np.linspace(lo, hi, n_bins + 1)
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, n_bins - 1)
    rng = np.random.default_rng(random_state)
    picked = []
    for b in range(n_bins):
        members = np.flatnonzero(which == b)
        if not len(members):
            continue
        if pick == "lowest":
            k = members[np.argmin(score[members])]
        elif pick == "centre":
            centre = 0.5 * (edges[b] + edges[b + 1])
            k = members[np.argmin(np.abs(score[members] - centre))]
        else:
            k = rng.choice(members)
        atoms = images[k].copy()
        atoms.calc = None
        atoms.info.update({"predicted_energy": float(energies[k]), "energy_bin": int(b),
                           "source_index": int(k)})
        picked.append(atoms)
    return picked
