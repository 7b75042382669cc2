"""Is a reconstructed structure the original one? RMSD up to rotation, reflection, translation and
permutation of like atoms (clusters and molecules), and up to the lattice symmetry, translation and
permutation in a fixed cell (crystals).

Rotation-invariant descriptors (ACSF, SOAP, …) are also invariant under reflection, so a mirror
image is an exact reconstruction; both :func:`cluster_rmsd` and :func:`periodic_rmsd` allow it.
"""
from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms
from scipy.optimize import linear_sum_assignment


def _kabsch(p: np.ndarray, q: np.ndarray, allow_reflection: bool = True) -> np.ndarray:
    """Orthogonal matrix R minimising |p @ R - q| (both centred)."""
    h = p.T @ q
    u, _, vt = np.linalg.svd(h)
    r = u @ vt
    if not allow_reflection and np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _assign(p: np.ndarray, q: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """perm with p[i] matched to q[perm[i]], within each element."""
    perm = np.empty(len(p), dtype=int)
    for z in np.unique(numbers):
        idx = np.nonzero(numbers == z)[0]
        d = ((p[idx, None, :] - q[None, idx, :]) ** 2).sum(-1)
        rows, cols = linear_sum_assignment(d)
        perm[idx[rows]] = idx[cols]
    return perm


def _rotations(n_random: int, rng: np.random.Generator):
    """The 48 signed axis permutations plus random orthogonal matrices (starting orientations)."""
    for axes in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), axes] = signs
            yield m
    for _ in range(n_random):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        yield q


def cluster_rmsd(a: Atoms, b: Atoms, allow_reflection: bool = True, n_random: int = 24,
                 seed: int = 0) -> float:
    """Smallest RMSD (Å) between two finite structures over rotations (and reflections),
    translations and permutations of atoms of the same element.

    Both are centred, brought to principal axes, then every starting orientation (the 48 signed
    axis permutations and ``n_random`` random ones) is refined by alternating optimal assignment
    (Hungarian) and optimal superposition (Kabsch) until it stops changing.
    """
    if sorted(a.numbers) != sorted(b.numbers):
        return float("inf")
    # bring b into the element order of a
    order_a = np.argsort(a.numbers, kind="stable")
    order_b = np.argsort(b.numbers, kind="stable")
    numbers = a.numbers[order_a]
    p = a.positions[order_a] - a.positions.mean(axis=0)
    q = b.positions[order_b] - b.positions.mean(axis=0)
    if len(p) == 1:
        return 0.0

    def principal(x):
        _, vecs = np.linalg.eigh(x.T @ x)
        return x @ vecs

    p = principal(p)
    q = principal(q)
    rng = np.random.default_rng(seed)
    best = np.inf
    for r0 in _rotations(n_random, rng):
        if not allow_reflection and np.linalg.det(r0) < 0:
            continue
        x = p @ r0
        prev = np.inf
        for _ in range(30):
            perm = _assign(x, q, numbers)
            r = _kabsch(x, q[perm], allow_reflection)
            x = x @ r
            rmsd = float(np.sqrt(((x - q[perm]) ** 2).sum(-1).mean()))
            if prev - rmsd < 1e-10:
                break
            prev = rmsd
        best = min(best, rmsd)
        if best < 1e-6:
            break
    return float(best)


def _lattice_operations(cell: np.ndarray, symprec: float = 1e-3) -> list[np.ndarray]:
    """Integer rotations (fractional coordinates) that map the lattice onto itself (spglib)."""
    import warnings

    import spglib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sym = spglib.get_symmetry((np.asarray(cell), [[0.0, 0.0, 0.0]], [1]), symprec=symprec)
    rots = [] if sym is None else list(sym["rotations"])
    if not rots:
        rots = [np.eye(3, dtype=int), -np.eye(3, dtype=int)]
    return rots


def periodic_rmsd(a: Atoms, b: Atoms, symprec: float = 1e-3) -> float:
    """Smallest minimum-image RMSD (Å) between two structures in the same cell, over the
    operations of the lattice's point group (spglib; includes inversion, hence mirror images),
    translations (every translation that puts an atom of ``b`` on an atom of ``a`` of the rarest
    element) and permutations of like atoms (Hungarian on minimum-image distances).
    """
    if sorted(a.numbers) != sorted(b.numbers):
        return float("inf")
    cell = np.asarray(a.cell)
    if not np.allclose(cell, np.asarray(b.cell), atol=1e-6):
        raise ValueError("periodic_rmsd compares structures in the same cell")
    fa = a.get_scaled_positions(wrap=True)
    fb = b.get_scaled_positions(wrap=True)
    za, zb = a.numbers, b.numbers
    values, counts = np.unique(za, return_counts=True)
    rare = values[np.argmin(counts)]
    anchors_a = np.nonzero(za == rare)[0]
    anchor_a = anchors_a[0]
    best = np.inf
    for rot in _lattice_operations(cell, symprec):
        fr = fb @ np.asarray(rot, dtype=float).T
        for j in np.nonzero(zb == rare)[0]:
            shifted = fr - fr[j] + fa[anchor_a]
            total = 0.0
            for z in values:
                ia = np.nonzero(za == z)[0]
                ib = np.nonzero(zb == z)[0]
                d = shifted[ib][None, :, :] - fa[ia][:, None, :]
                d -= np.round(d)
                dist2 = ((d @ cell) ** 2).sum(-1)
                rows, cols = linear_sum_assignment(dist2)
                total += dist2[rows, cols].sum()
            best = min(best, total)
        if best < 1e-12:
            break
    return float(np.sqrt(best / len(a)))


def structure_rmsd(a: Atoms, b: Atoms) -> float:
    """:func:`periodic_rmsd` when ``a`` is periodic, :func:`cluster_rmsd` otherwise."""
    if a.pbc.any():
        return periodic_rmsd(a, b)
    return cluster_rmsd(a, b)


def same_spacegroup(a: Atoms, b: Atoms, symprec: float = 0.1) -> bool:
    """True when spglib finds the same space group for both (a coarse crystal match)."""
    import warnings

    import spglib

    warnings.filterwarnings("ignore", category=DeprecationWarning, module="spglib")

    def sg(x):
        return spglib.get_spacegroup((np.asarray(x.cell), x.get_scaled_positions(), x.numbers),
                                     symprec=symprec)

    return sg(a) == sg(b)
