"""Crystal identity: space group (spglib) plus the distance between averaged local descriptors.

Two periodic structures are taken as the same crystal when they have the same composition per
formula unit, the same space group at ``symprec`` and per-species averaged
:class:`~ase_mlgen.descriptors.SphericalBessel` descriptors closer than ``tolerance`` (relative
Euclidean distance). The descriptors are invariant to rotation, translation, permutation and the
choice of cell, so supercells and rotated copies match.
"""
from __future__ import annotations

from math import gcd
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols


def space_group(atoms: Atoms, symprec: float = 0.1) -> str | None:
    """International symbol and number, e.g. ``"P3_221 (154)"``; None if spglib finds none."""
    import warnings

    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return spglib.get_spacegroup(cell, symprec=symprec)


def reduced_formula(atoms: Atoms) -> tuple:
    counts: dict[int, int] = {}
    for z in atoms.numbers:
        counts[int(z)] = counts.get(int(z), 0) + 1
    g = 0
    for n in counts.values():
        g = gcd(g, n)
    return tuple(sorted((z, n // g) for z, n in counts.items()))


def averaged_descriptors(images: Sequence[Atoms], species: Sequence[int] | None = None,
                         r_cut: float = 5.0, n_max: int = 4,
                         max_neighbours: int = 24) -> np.ndarray:
    """Per-species averaged SphericalBessel descriptors, one row per structure."""
    from ase_mlgen.descriptors import SphericalBessel

    if species is None:
        species = sorted({int(z) for a in images for z in a.numbers})
    desc = SphericalBessel([chemical_symbols[z] for z in species], r_cut=r_cut, n_max=n_max,
                           max_neighbours=max_neighbours)
    return np.asarray(desc.averaged_many(list(images)))


def relative_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance between descriptor vectors ``a`` and ``b`` over their mean norm (rows broadcast:
    one vector against many gives one value per row)."""
    norms = 0.5 * (np.linalg.norm(a, axis=-1) + np.linalg.norm(b, axis=-1)) + 1e-12
    return np.linalg.norm(a - b, axis=-1) / norms


def same_crystal(a: Atoms, b: Atoms, symprec: float = 0.1, tolerance: float = 0.05) -> bool:
    """True when ``a`` and ``b`` have the same reduced formula, the same space group and
    averaged descriptors within ``tolerance`` (distance / mean norm)."""
    if reduced_formula(a) != reduced_formula(b):
        return False
    if space_group(a, symprec) != space_group(b, symprec):
        return False
    d = averaged_descriptors([a, b])
    return bool(relative_distance(d[0], d[1]) < tolerance)


def unique_crystals(images: Sequence[Atoms], symprec: float = 0.1,
                    tolerance: float = 0.05) -> list[list[int]]:
    """Group ``images`` into distinct crystals (lists of indices)."""
    images = list(images)
    if not images:
        return []
    feats = averaged_descriptors(images)
    keys = [(reduced_formula(a), space_group(a, symprec)) for a in images]
    groups: list[list[int]] = []
    for i in range(len(images)):
        for g in groups:
            j = g[0]
            if keys[i] != keys[j]:
                continue
            if relative_distance(feats[i], feats[j]) < tolerance:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups
