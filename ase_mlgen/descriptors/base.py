"""Common machinery of the element-resolved local descriptors (ACSF, SphericalBessel).

A descriptor maps every atom of a structure to a feature vector of fixed length ``n_features``.
Entry points, all sharing one implementation that works on batches of structures with the same
atoms in the same order (``numbers``):

* ``forward_batch(positions (B, N, 3), numbers (N,), cell=None | (3, 3) | (B, 3, 3), pbc=None)``
  → ``(B, N, F)`` torch tensor that keeps the autograd graph to positions and cell;
* ``forward(positions (N, 3), numbers, cell=None, pbc=None)`` → ``(N, F)``, one structure;
* ``compute(atoms)`` → ``ndarray (N, F)``;
* ``compute_many(images)`` → list of arrays, batched internally (structures with the same atoms
  and periodicity are stacked and computed together).

``pbc=None`` means "periodic in all three directions if a cell is given, else not periodic".
Bad input raises ``ValueError`` naming the problem (empty structure, NaN positions, element not in
``species``, periodic cell of zero volume).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers as _Z, chemical_symbols

from ase_mlgen.descriptors.neighbours import Neighbours, build_neighbours
from ase_mlgen.utils.validate import check_atoms

#: number of float elements of the largest intermediate tensor per chunk of structures
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def species_to_numbers(species: Iterable) -> np.ndarray:
    """Sorted unique atomic numbers of ``species`` (symbols or atomic numbers)."""
    if isinstance(species, (str, int, np.integer)):
        raise ValueError("species must be a list of chemical symbols or atomic numbers, "
                         f"e.g. ['Pt'], got {species!r}")
    numbers = []
    for s in species:
        if isinstance(s, (int, np.integer)):
            if not 0 < int(s) < len(chemical_symbols):
                raise ValueError(f"unknown atomic number {s} in species")
            numbers.append(int(s))
        elif isinstance(s, str) and s in _Z and _Z[s] > 0:
            numbers.append(_Z[s])
        else:
            raise ValueError(f"unknown chemical element {s!r} in species")
    if not numbers:
        raise ValueError("species is empty: give the chemical elements the descriptor must know")
    return np.array(sorted(set(numbers)), dtype=np.int64)


def pool(features: torch.Tensor, pooling: Sequence[str] = ("max", "min"),
         atom_dim: int = -2) -> torch.Tensor:
    """Concatenate reductions over atoms (``"max"``, ``"min"``, ``"mean"``, ``"sum"``).

    ``features (..., N, F)`` → ``(..., len(pooling) * F)``: first the whole first reduction, then
    the second, ... (the ACSF-inversion fingerprint is ``("max", "min")``).
    """
    if isinstance(pooling, str):
        pooling = (pooling,)
    out = []
    for p in pooling:
        if p == "max":
            out.append(features.amax(dim=atom_dim))
        elif p == "min":
            out.append(features.amin(dim=atom_dim))
        elif p == "mean":
            out.append(features.mean(dim=atom_dim))
        elif p == "sum":
            out.append(features.sum(dim=atom_dim))
        else:
            raise ValueError(f"unknown pooling {p!r}; use 'max', 'min', 'mean' or 'sum'")
    return torch.cat(out, dim=-1)


class LocalDescriptor:
    """Base class: species bookkeeping, input checks, batching, numpy/torch entry points.

    Subclasses set ``n_features`` and implement ``_features(nb, centre_species) -> (B, N, F)``
    (and may set ``max_neighbours``).
    """

    max_neighbours: int | None = None

    def __init__(self, species: Iterable, r_cut: float, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu"):
        if not np.isfinite(r_cut) or r_cut <= 0:
            raise ValueError(f"r_cut must be a positive distance in Å, got {r_cut}")
        self.r_cut = float(r_cut)
        self._numbers = species_to_numbers(species)
        self.dtype = dtype
        self.device = torch.device(device)
        lookup = np.full(max(len(chemical_symbols), int(self._numbers.max()) + 1), -1, np.int64)
        lookup[self._numbers] = np.arange(len(self._numbers))
        self._lookup = lookup

    # -- species ----------------------------------------------------------------------------
    @property
    def species(self) -> list[str]:
        """Chemical symbols, ordered by atomic number (the order of all species blocks)."""
        return [chemical_symbols[z] for z in self._numbers]

    @property
    def atomic_numbers(self) -> np.ndarray:
        return self._numbers.copy()

    @property
    def n_species(self) -> int:
        return len(self._numbers)

    def get_number_of_features(self) -> int:
        """DScribe-style alias of :attr:`n_features`."""
        return self.n_features

    def to(self, device=None, dtype=None):
        """Move the computation to ``device`` and/or ``dtype``; returns self."""
        if device is not None:
            self.device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype
        return self

    def species_index(self, numbers) -> torch.Tensor:
        """Index of every atom's element in :attr:`species`; ValueError for unknown elements."""
        numbers = np.asarray(torch.as_tensor(numbers).cpu().numpy() if torch.is_tensor(numbers)
                             else numbers)
        if numbers.dtype.kind in "US":
            numbers = np.array([_Z.get(str(s), -1) for s in numbers], dtype=np.int64)
        numbers = numbers.astype(np.int64).reshape(-1)
        bad = (numbers < 0) | (numbers >= len(self._lookup))
        idx = np.full(len(numbers), -1, np.int64)
        idx[~bad] = self._lookup[numbers[~bad]]
        if (idx < 0).any():
            unknown = sorted({chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z)
                              for z in numbers[idx < 0]})
            raise ValueError(f"structure contains element(s) {unknown} that are not among the "
                             f"species {self.species} this descriptor was set up for")
        return torch.as_tensor(idx, device=self.device)

    # -- checks -----------------------------------------------------------------------------
    def _prepare(self, positions, numbers, cell, pbc):
        positions = torch.as_tensor(positions)
        if not positions.is_floating_point():
            positions = positions.to(self.dtype)
        if positions.dim() != 3 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape (B, N, 3), got {tuple(positions.shape)}")
        b, n, _ = positions.shape
        if n == 0:
            raise ValueError("structure is empty (no atoms)")
        if not bool(torch.isfinite(positions.detach()).all()):
            bad = torch.nonzero(~torch.isfinite(positions.detach()).all(-1).all(-1)).flatten()
            raise ValueError(f"structure {int(bad[0])} of the batch has NaN or infinite positions")
        numbers_t = torch.as_tensor(np.asarray(numbers) if not torch.is_tensor(numbers)
                                    else numbers)
        if numbers_t.numel() != n:
            raise ValueError(f"numbers has {numbers_t.numel()} entries for {n} atoms")
        centre = self.species_index(numbers_t).to(positions.device)
        if pbc is None:
            pbc = np.array([cell is not None] * 3)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        if pbc.any():
            if cell is None:
                raise ValueError("structure is periodic but no cell was given")
            cell = torch.as_tensor(cell).to(device=positions.device, dtype=positions.dtype)
            if cell.dim() == 2:
                cell = cell.expand(b, 3, 3)
            if cell.shape != (b, 3, 3):
                raise ValueError(f"cell must have shape (3, 3) or (B, 3, 3), got "
                                 f"{tuple(cell.shape)}")
            vol = torch.det(cell.detach().to(torch.float64)).abs()
            if bool((vol < 1e-8).any()):
                k = int(torch.nonzero(vol < 1e-8).flatten()[0])
                raise ValueError(f"structure {k} is periodic (pbc={pbc.tolist()}) but its cell has "
                                 "zero volume; set a cell or use pbc=False")
        else:
            cell = None
        return positions, centre, cell, pbc

    # -- torch entry points -----------------------------------------------------------------
    def _work_per_structure(self, n_atoms: int, n_slots: int, mean_slots: float | None = None
                            ) -> int:
        """Elements of the largest intermediate tensor for one structure (chunking heuristic)."""
        return max(1, n_atoms * max(n_slots, 1) * self.n_features)

    def forward_batch(self, positions: torch.Tensor, numbers, cell=None, pbc=None,
                      chunk_size: int | None = None, centres=None) -> torch.Tensor:
        """Features ``(B, N, F)`` of a batch ``positions (B, N, 3)`` sharing ``numbers (N,)``.

        Differentiable with respect to ``positions`` and ``cell``. The batch is processed in chunks
        (``chunk_size`` structures, automatic by default) to bound memory. ``centres`` (atom
        indices, non-periodic structures only) returns the rows of those atoms only,
        ``(B, K, F)``, at the cost of K instead of N centres.
        """
        positions, centre, cell, pbc = self._prepare(positions, numbers, cell, pbc)
        if centres is not None:
            centres = torch.as_tensor(np.asarray(centres), dtype=torch.long,
                                      device=positions.device)
        b, n, _ = positions.shape
        if chunk_size is None:
            slots, mean_slots = n - 1, None
            if not pbc.any() and n > 1:
                with torch.no_grad():  # neighbour counts of the whole batch (cheap, no graph)
                    counts = torch.cat([
                        ((torch.cdist(p, p) < self.r_cut).sum(-1) - 1).reshape(-1)
                        for p in positions.detach().split(max(1, (1 << 22) // (n * n)))])
                slots = max(int(counts.max()), 1)
                mean_slots = float(counts.double().mean())
            elif pbc.any():
                # density-based guess of the neighbour count, refined per chunk below
                vol = float(torch.det(cell[0].detach().to(torch.float64)).abs())
                slots = int(n / max(vol, 1e-8) * 4.19 * self.r_cut ** 3) + 1
            if self.max_neighbours is not None:
                slots = min(slots, int(self.max_neighbours))
            if mean_slots is not None and self.max_neighbours is not None:
                mean_slots = min(mean_slots, float(self.max_neighbours))
            chunk_size = max(1, DEFAULT_CHUNK_ELEMENTS
                             // self._work_per_structure(n, slots, mean_slots))
        needs_graph = torch.is_grad_enabled() and (
            positions.requires_grad or (cell is not None and cell.requires_grad))
        threads = torch.get_num_threads()
        parallel = (not needs_graph and threads > 1 and b > 1
                    and positions.device.type == "cpu")
        if parallel:
            chunk_size = min(chunk_size, -(-b // threads))

        def run(start: int) -> torch.Tensor:
            sl = slice(start, start + chunk_size)
            nb = build_neighbours(positions[sl], None if cell is None else cell[sl], pbc,
                                  self.r_cut, self.max_neighbours, centres)
            return self._features(nb, centre)

        starts = range(0, b, chunk_size)
        if parallel and len(starts) > 1:
            # chunks on a thread pool, one torch thread each: independent work per thread scales
            # better than intra-op parallelism on these many small tensors (and on busy machines)
            from concurrent.futures import ThreadPoolExecutor

            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(threads) as pool_:
                    outs = list(pool_.map(run, starts))
            finally:
                torch.set_num_threads(threads)
        else:
            outs = [run(start) for start in starts]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)

    def forward(self, positions: torch.Tensor, numbers, cell=None, pbc=None) -> torch.Tensor:
        """Features ``(N, F)`` of one structure ``positions (N, 3)``, keeping the autograd graph."""
        positions = torch.as_tensor(positions)
        if positions.dim() != 2 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
        if cell is not None:
            cell = torch.as_tensor(cell)
            if cell.dim() == 2:
                cell = cell[None]
        return self.forward_batch(positions[None], numbers, cell, pbc)[0]

    __call__ = forward

    def _features(self, nb: Neighbours, centre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- numpy / ASE entry points -------------------------------------------------------------
    def _atoms_tensors(self, atoms: Atoms):
        pos = torch.as_tensor(atoms.get_positions(), dtype=self.dtype, device=self.device)
        pbc = atoms.pbc.copy()
        cell = (torch.as_tensor(atoms.cell.array, dtype=self.dtype, device=self.device)
                if pbc.any() else None)
        return pos, atoms.numbers, cell, pbc

    def compute(self, atoms: Atoms) -> np.ndarray:
        """Features ``(n_atoms, n_features)`` of one ASE structure, as a numpy array."""
        check_atoms(atoms, species=self.species)
        pos, numbers, cell, pbc = self._atoms_tensors(atoms)
        with torch.no_grad():
            return self.forward(pos, numbers, cell, pbc).cpu().numpy()

    def _groups(self, images: Sequence[Atoms]):
        """Indices of ``images`` grouped by (atomic numbers, pbc), checked at the boundary."""
        groups: "OrderedDict[tuple, list[int]]" = OrderedDict()
        for k, atoms in enumerate(images):
            if not isinstance(atoms, Atoms):
                raise TypeError(f"image {k} must be an ase.Atoms object, got "
                                f"{type(atoms).__name__}")
            key = (atoms.numbers.tobytes(), tuple(bool(p) for p in atoms.pbc))
            if key not in groups:
                check_atoms(atoms, species=self.species, what=f"image {k}")
                groups[key] = []
            groups[key].append(k)
        return groups

    def _batched(self, images: Sequence[Atoms], fn):
        """Apply ``fn(positions (B,N,3), numbers, cell, pbc) -> (B, ...)`` group by group."""
        images = list(images)
        out: list = [None] * len(images)
        for key, idx in self._groups(images).items():
            first = images[idx[0]]
            pos = np.stack([images[k].positions for k in idx])
            if not np.isfinite(pos).all():
                bad = idx[int(np.nonzero(~np.isfinite(pos).all(axis=(1, 2)))[0][0])]
                raise ValueError(f"image {bad} has NaN or infinite positions")
            pbc = first.pbc.copy()
            cell = None
            if pbc.any():
                cell = np.stack([images[k].cell.array for k in idx])
                vol = np.abs(np.linalg.det(cell))
                if (vol < 1e-8).any():
                    bad = idx[int(np.nonzero(vol < 1e-8)[0][0])]
                    raise ValueError(f"image {bad} is periodic (pbc={pbc.tolist()}) but its cell "
                                     "has zero volume; set a cell or use pbc=False")
                cell = torch.as_tensor(cell, dtype=self.dtype, device=self.device)
            with torch.no_grad():
                res = fn(torch.as_tensor(pos, dtype=self.dtype, device=self.device),
                         first.numbers, cell, pbc).cpu().numpy()
            for r, k in zip(res, idx):
                out[k] = r
        return out

    def compute_many(self, images: Sequence[Atoms]) -> list[np.ndarray]:
        """Features of many structures (list of ``(n_atoms_k, F)`` arrays), batched internally."""
        return self._batched(images, self.forward_batch)
