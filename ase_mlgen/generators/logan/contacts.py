"""Short-contact floors for LoGAN's generator: the shortest distance of every species pair in the
training structures, and a differentiable hinge penalty on generated pairs closer than a
fraction of it.

The critic judges environments through smooth radial functions, which resolve a 1.3 Å and a
1.6 Å Si–O contact poorly; a generator can then settle on contacts no training structure has.
The penalty is an optional prior on top of the paper's loss (``LoGAN(repulsion=…)``; off by
default).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms

#: pairs farther apart than this (Å) are not searched for the shortest training contact
SEARCH_CUTOFF = 4.0


def shortest_pair_distances(images: Sequence[Atoms]) -> dict[tuple[int, int], float]:
    """Shortest distance (Å) of each species pair ``(Z_a, Z_b)`` with ``Z_a <= Z_b`` over the
    training structures (periodic images included), for pairs closer than 4 Å."""
    from ase.neighborlist import neighbor_list

    shortest: dict[tuple[int, int], float] = {}
    for atoms in images:
        i, j, d = neighbor_list("ijd", atoms, SEARCH_CUTOFF)
        zi, zj = atoms.numbers[i], atoms.numbers[j]
        for a, b, dist in zip(np.minimum(zi, zj), np.maximum(zi, zj), d):
            key = (int(a), int(b))
            if dist < shortest.get(key, np.inf):
                shortest[key] = float(dist)
    return shortest


def floor_matrix(numbers: Sequence[int], shortest: dict[tuple[int, int], float],
                 scale: float) -> torch.Tensor:
    """``(N, N)`` floors (Å): ``scale`` × the shortest training distance of each pair's species;
    0 on the diagonal and for species pairs the training structures never bring within 4 Å."""
    n = len(numbers)
    out = torch.zeros(n, n)
    for a in range(n):
        for b in range(a + 1, n):
            key = (min(numbers[a], numbers[b]), max(numbers[a], numbers[b]))
            out[a, b] = out[b, a] = scale * shortest.get(key, 0.0)
    return out


def contact_penalty(positions: torch.Tensor, floors: torch.Tensor,
                    cell: torch.Tensor | None = None) -> torch.Tensor:
    """Per structure ``Σ_{a<b} max(0, floor_ab − d_ab)²`` (Å²) for ``positions`` ``(B, N, 3)``.

    With a ``cell`` (3 × 3, Å; periodic in all three directions) every periodic image of ``b``
    closer than the floor counts, found by the descriptors' neighbour lists
    (:func:`~ase_mlgen.descriptors.neighbours.build_neighbours`), so skewed cells are exact too.
    Pairs of an atom with its own image have no floor (the diagonal of ``floors`` is 0)."""
    from ase_mlgen.descriptors.neighbours import build_neighbours

    floors = floors.to(positions)
    r_max = float(floors.max()) if floors.numel() else 0.0
    if r_max <= 0.0:
        return positions.new_zeros(positions.shape[0])
    if cell is None:
        nb = build_neighbours(positions, None, False, r_max)
    else:
        cells = cell.to(positions).expand(positions.shape[0], 3, 3)
        nb = build_neighbours(positions, cells, True, r_max)
    n = positions.shape[1]
    pair_floor = torch.gather(floors.expand(positions.shape[0], n, n), 2, nb.index)
    short = torch.relu(pair_floor - nb.distances) * nb.mask.to(positions.dtype)
    # each pair (and each image pair) is listed from both of its atoms
    return 0.5 * (short ** 2).sum(dim=(-1, -2))
