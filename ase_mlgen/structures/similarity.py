"""Duplicate detection shared by every search: energy window, then a structural fingerprint.

Two relaxed structures are the same minimum when they have the same composition, their energies
differ by at most ``energy_tol`` (eV, or ε in reduced Lennard-Jones units) and their fingerprints
are closer than the fingerprint's tolerance. Both fingerprints are invariant to translation,
rotation and permutation of like atoms, and scale-free (so the same defaults work in Å and in
Lennard-Jones σ):

* :class:`SortedDistances` (clusters): all pair distances, grouped by element pair and sorted;
  compared by their relative cumulative difference ``Σ|d₁−d₂| / Σ(d₁+d₂)/2`` and the largest single
  difference relative to the mean distance (the criterion of ``ase_ga``'s
  ``InteratomicDistanceComparator``, Vilhelmsen & Hammer, J. Chem. Phys. 141, 044711, 2014);
* :class:`RadialFingerprint` (clusters and crystals): per element pair, Gaussian-broadened pair
  distances within a cutoff on a grid (Oganov & Valle, J. Chem. Phys. 130, 104504, 2009), compared
  by cosine distance; minimum-image distances for periodic structures.

:class:`KnownMinima` keeps the minima found so far and answers ``match(atoms, energy)``.

>>> from ase.cluster import Icosahedron
>>> a = Icosahedron("Ar", 2); b = a.copy(); b.rotate(30, "z"); b.translate([1, 2, 3])
>>> minima = KnownMinima(energy_tol=0.01)
>>> minima.add(a, -44.3268)
0
>>> minima.match(b, -44.3270)
0
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
from ase import Atoms


def _pair_distances(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle pair distances with the atomic numbers of both ends (minimum image)."""
    n = len(atoms)
    iu, ju = np.triu_indices(n, k=1)
    if atoms.pbc.any():
        d = atoms.get_all_distances(mic=True)[iu, ju]
    else:
        pos = atoms.get_positions()
        d = np.linalg.norm(pos[iu] - pos[ju], axis=1)
    z = atoms.numbers
    return d, np.minimum(z[iu], z[ju]), np.maximum(z[iu], z[ju])



class Fingerprint(Protocol):
    """A structural fingerprint: ``compute(atoms)`` and ``distance(f1, f2)`` below ``tol``."""

    tol: float

    def compute(self, atoms: Atoms): ...

    def distance(self, f1, f2) -> float: ...


class SortedDistances:
    """Sorted pair distances per element pair (for clusters).

    Parameters
    ----------
    tol:
        Largest relative cumulative difference ``Σ|d₁−d₂| / Σ(d₁+d₂)/2`` (dimensionless).
    max_tol:
        Largest single ``|d₁−d₂|`` divided by the mean distance (dimensionless).
    """

    def __init__(self, tol: float = 0.015, max_tol: float = 0.7):
        self.tol = tol
        self.max_tol = max_tol

    def compute(self, atoms: Atoms) -> dict:
        d, za, zb = _pair_distances(atoms)
        keys = sorted(set(zip(za.tolist(), zb.tolist())))
        return {k: np.sort(d[(za == k[0]) & (zb == k[1])]) for k in keys}

    def distance(self, f1: dict, f2: dict) -> float:
        if f1.keys() != f2.keys():
            return np.inf
        a = np.concatenate([f1[k] for k in f1]) if f1 else np.zeros(0)
        b = np.concatenate([f2[k] for k in f2]) if f2 else np.zeros(0)
        if a.shape != b.shape:
            return np.inf
        if len(a) == 0:
            return 0.0
        diff = np.abs(a - b)
        mean = 0.5 * (a.mean() + b.mean())
        if diff.max() > self.max_tol * mean:
            return np.inf
        return float(diff.sum() / (0.5 * (a.sum() + b.sum())))


class RadialFingerprint:
    """Gaussian-broadened pair-distance histograms per element pair, compared by cosine distance.

    Lengths are in units of the structure's median nearest-neighbour distance, so the defaults
    work for any element and for reduced Lennard-Jones units.

    Parameters
    ----------
    cutoff:
        Pairs farther than ``cutoff`` × nearest-neighbour distance are ignored (clusters: all
        pairs when ``None``; crystals default to 3).
    sigma:
        Gaussian width in units of the nearest-neighbour distance.
    bins:
        Grid points per element pair.
    tol:
        Largest cosine distance ``1 − f₁·f₂/(|f₁||f₂|)`` for two structures to be the same.
    """

    def __init__(self, cutoff: float | None = None, sigma: float = 0.03, bins: int = 200,
                 tol: float = 0.01):
        self.cutoff = cutoff
        self.sigma = sigma
        self.bins = bins
        self.tol = tol

    def _neighbour_distances(self, atoms: Atoms, cutoff: float):
        from ase.neighborlist import neighbor_list

        i, j, d = neighbor_list("ijd", atoms, cutoff)
        keep = i < j if not atoms.pbc.any() else np.ones_like(i, dtype=bool)
        z = atoms.numbers
        return d[keep], np.minimum(z[i], z[j])[keep], np.maximum(z[i], z[j])[keep]

    def compute(self, atoms: Atoms) -> dict:
        if atoms.pbc.any():
            from ase.neighborlist import neighbor_list

            # nearest-neighbour scale from a generous search radius
            volume = abs(atoms.get_volume()) / max(len(atoms), 1)
            radius = 2.0 * volume ** (1 / 3)
            _, d_first = neighbor_list("id", atoms, radius)
            nn = float(np.min(d_first)) if len(d_first) else volume ** (1 / 3)
            cutoff = (self.cutoff or 3.0) * nn
            d, za, zb = self._neighbour_distances(atoms, cutoff)
        else:
            d, za, zb = _pair_distances(atoms)
            nn = float(np.min(d)) if len(d) else 1.0
            cutoff = (self.cutoff * nn) if self.cutoff else (float(d.max()) if len(d) else 1.0) * 1.05
        grid = np.linspace(0.0, cutoff / nn, self.bins)
        x = d / nn
        out = {}
        for k in sorted(set(zip(za.tolist(), zb.tolist()))):
            sel = x[(za == k[0]) & (zb == k[1])]
            out[k] = np.exp(-0.5 * ((grid[:, None] - sel[None, :]) / self.sigma) ** 2).sum(1)
        return out

    def distance(self, f1: dict, f2: dict) -> float:
        keys = sorted(set(f1) | set(f2))
        zero = np.zeros(self.bins)
        a = np.concatenate([f1.get(k, zero) for k in keys])
        b = np.concatenate([f2.get(k, zero) for k in keys])
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            return 0.0 if na == nb else 1.0
        return float(1.0 - a @ b / (na * nb))


FINGERPRINTS = {"distances": SortedDistances, "rdf": RadialFingerprint}


def make_fingerprint(kind: str | Fingerprint = "auto", periodic: bool = False) -> Fingerprint:
    """``"distances"`` (clusters), ``"rdf"`` (both), ``"auto"`` (distances for clusters, rdf for
    periodic structures) or a fingerprint object."""
    if not isinstance(kind, str):
        return kind
    if kind == "auto":
        kind = "rdf" if periodic else "distances"
    if kind not in FINGERPRINTS:
        raise ValueError(f"unknown fingerprint {kind!r}; use one of auto, {', '.join(FINGERPRINTS)}")
    return FINGERPRINTS[kind]()


def same_structure(a: Atoms, b: Atoms, fingerprint: str | Fingerprint = "auto") -> bool:
    """True when ``a`` and ``b`` have the same composition and matching fingerprints."""
    if sorted(a.numbers.tolist()) != sorted(b.numbers.tolist()):
        return False
    fp = make_fingerprint(fingerprint, periodic=bool(a.pbc.any()))
    return fp.distance(fp.compute(a), fp.compute(b)) <= fp.tol


class KnownMinima:
    """The distinct minima found so far; ``match(atoms, energy)`` returns the index of a known one.

    Parameters
    ----------
    energy_tol:
        Largest energy difference (eV; ε in reduced units) between two copies of one minimum.
    fingerprint:
        ``"auto"``, ``"distances"``, ``"rdf"`` or a :class:`Fingerprint` object.

    Indices are 0, 1, 2, … in order of :meth:`add`.
    """

    def __init__(self, energy_tol: float = 0.01, fingerprint: str | Fingerprint = "auto"):
        if energy_tol < 0:
            raise ValueError("energy_tol must be >= 0")
        self.energy_tol = energy_tol
        self.fingerprint = fingerprint
        self._fp: Fingerprint | None = None
        self.energies: list[float] = []
        self.images: list[Atoms] = []
        self._fingerprints: list = []
        self._compositions: list[tuple] = []

    def __len__(self) -> int:
        return len(self.energies)

    def _fp_for(self, atoms: Atoms) -> Fingerprint:
        if self._fp is None:
            self._fp = make_fingerprint(self.fingerprint, periodic=bool(atoms.pbc.any()))
        return self._fp

    def match(self, atoms: Atoms, energy: float) -> int | None:
        """Index of the known minimum that ``atoms`` (at ``energy``) duplicates, else ``None``."""
        return self._match(atoms, energy, None)

    def _match(self, atoms: Atoms, energy: float, fingerprint) -> int | None:
        if not self.energies:
            return None
        close = np.nonzero(np.abs(np.asarray(self.energies) - energy) <= self.energy_tol)[0]
        if len(close) == 0:
            return None
        fp = self._fp_for(atoms)
        comp = tuple(sorted(atoms.numbers.tolist()))
        if fingerprint is None:
            fingerprint = fp.compute(atoms)
        best, best_d = None, np.inf
        for k in close:
            if self._compositions[k] != comp:
                continue
            dist = fp.distance(fingerprint, self._fingerprints[k])
            if dist <= fp.tol and dist < best_d:
                best, best_d = int(k), dist
        return best

    def add(self, atoms: Atoms, energy: float) -> int:
        """Store ``atoms`` as a new minimum (without checking); return its index."""
        fp = self._fp_for(atoms)
        self.energies.append(float(energy))
        self.images.append(atoms.copy())
        self._fingerprints.append(fp.compute(atoms))
        self._compositions.append(tuple(sorted(atoms.numbers.tolist())))
        return len(self.energies) - 1

    def match_or_add(self, atoms: Atoms, energy: float) -> tuple[int, bool]:
        """``(index, True)`` for a new minimum (stored), ``(index, False)`` for a duplicate."""
        fp = self._fp_for(atoms)
        fingerprint = fp.compute(atoms)
        index = self._match(atoms, energy, fingerprint)
        if index is not None:
            return index, False
        self.energies.append(float(energy))
        self.images.append(atoms.copy())
        self._fingerprints.append(fingerprint)
        self._compositions.append(tuple(sorted(atoms.numbers.tolist())))
        return len(self.energies) - 1, True

    def lowest(self) -> tuple[float, Atoms] | None:
        """``(energy, atoms)`` of the lowest known minimum, or ``None`` when empty."""
        if not self.energies:
            return None
        k = int(np.argmin(self.energies))
        return self.energies[k], self.images[k].copy()
