"""Duplicate removal for clusters: the MeGen paper's criterion and a fingerprint criterion.

*Paper criterion* (Modee et al., Mach. Learn.: Sci. Technol. 4, 025032, 2023): two clusters of
the same composition are the same isomer when their sorted lists of all pair distances agree and,
if they do, their sorted lists of nearest-neighbour bond angles agree as well. The distance test
is cheap and rejects most pairs; the angle test separates the rare isomers with nearly identical
distance spectra.

*Fingerprint criterion*: the Oganov–Valle style radial fingerprint (pair distances broadened by
Gaussians on a grid) compared by cosine distance, optionally after an energy pre-check.

Both criteria are invariant to rotation, translation and permutation of atoms, and both are used
before relaxation (on generated candidates) and after it (on the relaxed minima).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from ase import Atoms

#: Ga defaults of the paper's criterion: mean |Δd| of sorted pair distances (Å), mean |Δθ| of
#: sorted nearest-neighbour angles (degrees), and the neighbour cut-off that defines the angles (Å)
DISTANCE_TOL = 0.02
ANGLE_TOL = 1.0
NEIGHBOUR_CUTOFF = 3.1


def sorted_pair_distances(atoms: Atoms) -> np.ndarray:
    """All ``n(n−1)/2`` pair distances in Å, sorted."""
    pos = atoms.get_positions()
    iu = np.triu_indices(len(pos), k=1)
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)[iu]
    return np.sort(d)


def sorted_neighbour_angles(atoms: Atoms, cutoff: float = NEIGHBOUR_CUTOFF) -> np.ndarray:
    """All angles j–i–k (degrees) between neighbours j, k of every atom i within ``cutoff`` Å."""
    pos = atoms.get_positions()
    vec = pos[None, :, :] - pos[:, None, :]                     # vec[i, j] = r_j − r_i
    d = np.linalg.norm(vec, axis=-1)
    nb = (d < cutoff) & (d > 1e-8)
    unit = np.where(nb[..., None], vec / np.maximum(d, 1e-12)[..., None], 0.0)
    cos = np.einsum("ijx,ikx->ijk", unit, unit)                  # cos of angle j-i-k
    mask = nb[:, :, None] & nb[:, None, :]
    n = len(pos)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)[None]
    angles = np.degrees(np.arccos(np.clip(cos[mask & upper], -1.0, 1.0)))
    return np.sort(angles)


def same_by_distances_and_angles(a: Atoms, b: Atoms, distance_tol: float = DISTANCE_TOL,
                                 angle_tol: float = ANGLE_TOL,
                                 cutoff: float = NEIGHBOUR_CUTOFF) -> bool:
    """The paper's test: sorted pair distances, then sorted nearest-neighbour angles."""
    if len(a) != len(b) or sorted(a.numbers) != sorted(b.numbers):
        return False
    if len(a) < 2:
        return True
    if np.mean(np.abs(sorted_pair_distances(a) - sorted_pair_distances(b))) > distance_tol:
        return False
    if len(a) < 3:
        return True
    ta, tb = sorted_neighbour_angles(a, cutoff), sorted_neighbour_angles(b, cutoff)
    if len(ta) != len(tb):
        return False
    return len(ta) == 0 or float(np.mean(np.abs(ta - tb))) <= angle_tol


def radial_fingerprint(atoms: Atoms, r_max: float = 10.0, n_bins: int = 200,
                       sigma: float = 0.05) -> np.ndarray:
    """Pair-distance spectrum on ``[0, r_max]`` Å broadened by Gaussians of width ``sigma`` Å,
    each pair weighted by ``1/r²`` (Oganov & Valle, J. Chem. Phys. 130, 104504, 2009), unit norm."""
    d = sorted_pair_distances(atoms)
    grid = np.linspace(0.0, r_max, n_bins)
    fp = (np.exp(-0.5 * ((grid[None, :] - d[:, None]) / sigma) ** 2)
          / np.maximum(d[:, None], 0.5) ** 2).sum(axis=0)
    norm = np.linalg.norm(fp)
    return fp / norm if norm > 0 else fp


def same_by_fingerprint(a: Atoms, b: Atoms, tol: float = 2e-3) -> bool:
    """Cosine distance of the radial fingerprints below ``tol``."""
    if len(a) != len(b) or sorted(a.numbers) != sorted(b.numbers):
        return False
    return 1.0 - float(radial_fingerprint(a) @ radial_fingerprint(b)) < tol


class DuplicateFilter:
    """Keep a list of known isomers and tell whether a new structure is one of them.

    Parameters
    ----------
    method:
        ``"paper"`` (sorted distances, then angles) or ``"fingerprint"`` (radial fingerprint).
    energy_tol:
        When both structures carry an energy (``atoms.info["energy"]`` or a calculator result),
        a pair whose energies differ by more than ``energy_tol`` eV is distinct without further
        tests. ``None`` disables the energy pre-check (use it before relaxation).
    """

    def __init__(self, method: str = "paper", energy_tol: float | None = 0.02,
                 distance_tol: float = DISTANCE_TOL, angle_tol: float = ANGLE_TOL,
                 cutoff: float = NEIGHBOUR_CUTOFF, fingerprint_tol: float = 2e-3):
        if method not in ("paper", "fingerprint"):
            raise ValueError(f"unknown duplicate method {method!r}; use 'paper' or 'fingerprint'")
        self.method = method
        self.energy_tol = energy_tol
        self.distance_tol, self.angle_tol, self.cutoff = distance_tol, angle_tol, cutoff
        self.fingerprint_tol = fingerprint_tol
        self.known: list[Atoms] = []
        self._groups: dict[tuple, dict] = {}
        self._angle_cache: list[np.ndarray | None] = []

    def _signature(self, atoms: Atoms) -> tuple:
        energy = _energy_of(atoms)
        key = (len(atoms), tuple(sorted(atoms.numbers.tolist())))
        if self.method == "paper":
            return key, energy, sorted_pair_distances(atoms), None
        return key, energy, radial_fingerprint(atoms), None

    def _angles(self, i: int) -> np.ndarray:
        if self._angle_cache[i] is None:
            self._angle_cache[i] = sorted_neighbour_angles(self.known[i], self.cutoff)
        return self._angle_cache[i]

    def _find(self, atoms: Atoms, sig: tuple) -> int | None:
        """Vectorised over the known isomers of the same composition."""
        key, energy, vec, _ = sig
        group = self._groups.get(key)
        if not group:
            return None
        members, stack, energies = group["members"], group["stack"], group["energies"]
        ok = np.ones(len(members), dtype=bool)
        if self.energy_tol is not None and energy is not None:
            ok &= ~(np.abs(energies - energy) > self.energy_tol)     # NaN (unknown) passes
        if self.method == "fingerprint":
            ok &= 1.0 - stack @ vec < self.fingerprint_tol
        elif stack.shape[1]:
            ok &= np.mean(np.abs(stack - vec), axis=1) <= self.distance_tol
        hits = np.nonzero(ok)[0]
        if self.method == "fingerprint" or len(atoms) < 3:
            return int(members[hits[0]]) if len(hits) else None
        angles = None
        for h in hits:
            angles = sorted_neighbour_angles(atoms, self.cutoff) if angles is None else angles
            other = self._angles(members[h])
            if len(other) == len(angles) and (len(angles) == 0 or float(
                    np.mean(np.abs(other - angles))) <= self.angle_tol):
                return int(members[h])
        return None

    def index_of(self, atoms: Atoms) -> int | None:
        """Index of the known isomer equal to ``atoms``, or ``None``."""
        return self._find(atoms, self._signature(atoms))

    def add(self, atoms: Atoms) -> bool:
        """Add ``atoms`` if new; returns True when it was new."""
        sig = self._signature(atoms)
        if self._find(atoms, sig) is not None:
            return False
        key, energy, vec, _ = sig
        group = self._groups.setdefault(key, {"members": [], "stack": np.zeros((0, len(vec))),
                                              "energies": np.zeros(0)})
        group["members"].append(len(self.known))
        group["stack"] = np.vstack([group["stack"], vec[None]])
        group["energies"] = np.append(group["energies"], np.nan if energy is None else energy)
        self.known.append(atoms)
        self._angle_cache.append(None)
        return True


def unique_indices(images: Sequence[Atoms], method: str = "paper",
                   energy_tol: float | None = 0.02, **kwargs) -> list[int]:
    """Indices of the first occurrence of every distinct isomer in ``images`` (order kept)."""
    filt = DuplicateFilter(method=method, energy_tol=energy_tol, **kwargs)
    return [i for i, atoms in enumerate(images) if filt.add(atoms)]


def unique(images: Iterable[Atoms], method: str = "paper", energy_tol: float | None = 0.02,
           **kwargs) -> list[Atoms]:
    """The distinct isomers of ``images`` (first occurrence of each, order kept)."""
    images = list(images)
    return [images[i] for i in unique_indices(images, method, energy_tol, **kwargs)]


def count_within(images: Sequence[Atoms], window: float, reference: float | None = None,
                 method: str = "paper", **kwargs) -> int:
    """Number of distinct isomers whose energy lies within ``window`` eV of ``reference`` (the
    lowest energy among ``images`` when ``None``) — the paper's Table 1 statistic."""
    energies = np.array([_energy_of(a) for a in images], dtype=float)
    if len(images) == 0:
        return 0
    ref = float(np.nanmin(energies)) if reference is None else reference
    low = [a for a, e in zip(images, energies) if e <= ref + window]
    return len(unique(sorted(low, key=_energy_of), method=method, **kwargs))


def _energy_of(atoms: Atoms) -> float | None:
    if "energy" in atoms.info:
        return float(atoms.info["energy"])
    calc = atoms.calc
    if calc is not None and getattr(calc, "results", None) and "energy" in calc.results:
        try:
            return float(atoms.get_potential_energy())
        except Exception:
            return None
    return None


#: default tolerance of :class:`SiteFilter`: mean |Δ| (Å) of the sorted distances from the new
#: atom to the seed's atoms
SITE_TOL = 0.15


class SiteFilter:
    """Duplicates of *seeded growth* before relaxation: two candidates grown from the same seed
    are the same when their new atoms sit at equivalent sites.

    A candidate is a seed plus one atom, the new atom last (as :meth:`MeGen.place` builds them).
    The seed is identified by its sorted pair distances (rounded to 1 mÅ: invariant to the
    recentring and rotation of a copy); the site by the sorted distances from the new atom to
    the seed's atoms. Two sites of one seed are equivalent when those lists agree to ``tol`` Å
    on average — placements a few tenths of an Å apart, and sites related by a symmetry of the
    seed, which relax to the same minimum. The paper's criterion on whole clusters
    (:class:`DuplicateFilter`) cannot see this: its 0.02 Å tolerance on all ``N(N−1)/2``
    distances calls two placements 0.5 Å apart distinct for any N ≳ 8.
    """

    def __init__(self, tol: float = SITE_TOL):
        if tol <= 0:
            raise ValueError("SiteFilter tol must be > 0 (Å)")
        self.tol = tol
        self._sites: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _split(atoms: Atoms) -> tuple[bytes, np.ndarray]:
        if len(atoms) < 2:
            raise ValueError("a grown candidate has at least two atoms")
        seed = atoms[:-1]
        key = np.round(sorted_pair_distances(seed), 3).tobytes() if len(seed) > 1 else b""
        key += bytes(sorted(seed.numbers.tolist()))
        site = np.sort(np.linalg.norm(seed.positions - atoms.positions[-1], axis=1))
        return key, site

    def is_known(self, atoms: Atoms) -> bool:
        key, site = self._split(atoms)
        known = self._sites.get(key)
        return known is not None and bool((np.abs(known - site).mean(axis=1) <= self.tol).any())

    def add(self, atoms: Atoms) -> bool:
        """Register the site of ``atoms`` (seed + new atom last); True when it was new."""
        if self.is_known(atoms):
            return False
        key, site = self._split(atoms)
        known = self._sites.get(key)
        self._sites[key] = site[None] if known is None else np.vstack([known, site[None]])
        return True
