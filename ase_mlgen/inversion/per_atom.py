"""Per-atom fingerprints as fixed-length vectors, so that the fingerprint cVAE can generate them.

A pooled (max, min) fingerprint loses which atom has which environment; its inversion is then
inexact for strained, high-energy structures (`doc/inversion.md`, Table 2). The per-atom
fingerprint ``(N, F)`` determines a cluster up to rotation and permutation, but a cVAE needs one
vector with a fixed meaning per entry. :func:`canonical_order` fixes the atom order: by atomic
number, then by decreasing sum of the atom's features (the densest environment first); the
flattened ``(N · F,)`` vector is what :class:`~ase_mlgen.inversion.cvae.FingerprintGenerator`
learns, and :class:`~ase_mlgen.inversion.generator.InversionGenerator` reshapes generated
vectors back to ``(N, F)`` for the per-atom :class:`~ase_mlgen.inversion.ACSFInverter`
(``pooling=None``), which matches atoms to rows by assignment within each element.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms


def canonical_order(fingerprint: np.ndarray, numbers: Sequence[int]) -> np.ndarray:
    """Indices that put the atoms of a per-atom ``fingerprint`` ``(N, F)`` in canonical order:
    ascending atomic number, then descending sum of the atom's features (ties: original order)."""
    fingerprint = np.asarray(fingerprint, dtype=float)
    numbers = np.asarray(numbers)
    if fingerprint.ndim != 2 or len(fingerprint) != len(numbers):
        raise ValueError(f"a per-atom fingerprint (N, F) with N = {len(numbers)} atoms is needed; "
                         f"got shape {fingerprint.shape}")
    # lexsort: the last key is the primary one
    return np.lexsort((np.arange(len(numbers)), -fingerprint.sum(axis=1), numbers))


def per_atom_vectors(images: Sequence[Atoms], descriptor) -> tuple[np.ndarray, np.ndarray]:
    """Canonically ordered, flattened per-atom fingerprints of ``images`` (one composition).

    Returns ``(vectors (n_images, N · F), numbers (N,))``: the training data of a per-atom
    fingerprint cVAE, and the atomic numbers in the canonical order (ascending), which the
    inversion of a generated vector takes as its ``numbers``.
    """
    images = list(images)
    if not images:
        raise ValueError("no structures given")
    numbers = np.sort(images[0].numbers)
    for k, atoms in enumerate(images):
        if len(atoms) == 0:
            raise ValueError(f"structure {k} is empty")
        if not np.array_equal(np.sort(atoms.numbers), numbers):
            raise ValueError(f"structure {k} ({atoms.get_chemical_formula()}) has another "
                             f"composition than structure 0 "
                             f"({images[0].get_chemical_formula()}); a per-atom fingerprint cVAE "
                             "needs one composition")
    features = descriptor.compute_many(images)
    rows = []
    for atoms, fp in zip(images, features):
        fp = np.asarray(fp, dtype=float)
        rows.append(fp[canonical_order(fp, atoms.numbers)].reshape(-1))
    return np.stack(rows), numbers
