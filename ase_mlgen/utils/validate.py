"""Checks on user input, raised at the boundary before any work is done."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from ase import Atoms


def check_atoms(atoms: Atoms, species: Iterable[str] | None = None, what: str = "structure",
                min_distance: float | None = None) -> None:
    """Raise ``ValueError`` naming the problem if ``atoms`` cannot be described or evaluated.

    Checks: not empty, finite positions, a periodic cell with non-zero volume, only elements from
    ``species`` (when given), and (when ``min_distance`` in Å is given) no two atoms closer than it.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"{what} must be an ase.Atoms object, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError(f"{what} is empty (no atoms)")
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"{what} has NaN or infinite positions")
    if atoms.pbc.any():
        vol = abs(np.linalg.det(atoms.cell.array))
        if vol < 1e-8:
            raise ValueError(f"{what} is periodic (pbc={atoms.pbc.tolist()}) but its cell has zero "
                             "volume; set a cell or use pbc=False")
    if species is not None:
        allowed = set(species)
        unknown = sorted(set(atoms.get_chemical_symbols()) - allowed)
        if unknown:
            raise ValueError(f"{what} contains element(s) {unknown} that are not among the "
                             f"species {sorted(allowed)} this model/descriptor was set up for")
    if min_distance is not None and len(atoms) > 1:
        d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
        np.fill_diagonal(d, np.inf)
        if d.min() < min_distance:
            i, j = np.unravel_index(np.argmin(d), d.shape)
            raise ValueError(f"{what} has overlapping atoms: {i} and {j} are {d.min():.3f} Å apart "
                             f"(minimum {min_distance} Å)")
