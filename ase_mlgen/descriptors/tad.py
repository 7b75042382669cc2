"""Topological Atomic Descriptor (TAD) of the DART paper.

Modee et al., "DART: deep learning enabled topological interaction model for energy prediction of
metal clusters", Phys. Chem. Chem. Phys. 23, 21995 (2021): every atom is described by three
numbers, the counts of its neighbours in three distance shells,

* J shell: closer than ``r_J`` = 3.49 Å,
* K shell: between ``r_J`` and ``r_K`` = 6.3 Å,
* L shell: between ``r_K`` and ``r_L`` = 15 Å. The DART paper describes the L shell as every
  atom beyond 6.3 Å; MeGen's published code, which is what the MeGen reward was trained with,
  bounds it at 15 Å, and so does the default here (``shells=(3.49, 6.3, 15.0)``). For clusters
  smaller than 15 Å across (Ga up to ~100 atoms) the two agree; the bound is also what periodic
  systems require. ``shells=(3.49, 6.3)`` gives the unbounded L shell.

``width=0`` gives the paper's integer counts. ``width>0`` (Å) replaces every step by a logistic
switch ``σ((r − d) / width)`` so that the counts, and any energy built on them, are smooth
functions of the positions and have forces; as ``width → 0`` the smooth counts tend to the integer
ones (except for a pair exactly on a shell boundary, which then counts one half).

The same shell membership, as ``(B, N, N)`` matrices, is what DART's shell sums use
(:func:`shell_masks`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from ase_mlgen.utils.validate import check_atoms

#: shell radii in Å: J/K boundary and K/L boundary (DART paper), outer bound of the L shell
#: (MeGen's published code)
DEFAULT_SHELLS = (3.49, 6.3, 15.0)


def _check_shells(shells: Sequence[float], width: float) -> tuple[float, ...]:
    shells = tuple(float(r) for r in shells)
    if len(shells) not in (2, 3):
        raise ValueError(f"shells must hold 2 radii (J/K, K/L boundaries) or 3 (plus the outer "
                         f"bound of the L shell), in Å; got {shells}")
    if shells[0] <= 0 or any(b <= a for a, b in zip(shells, shells[1:])):
        raise ValueError(f"shell radii must be positive and increasing, got {shells}")
    if not np.isfinite(width) or width < 0:
        raise ValueError(f"width must be >= 0 Å (0 = integer counts), got {width}")
    return shells


def _step(r: float, d: torch.Tensor, width: float) -> torch.Tensor:
    """1 where ``d < r`` (hard) or ``σ((r − d)/width)`` (smooth)."""
    if width > 0:
        return torch.sigmoid((r - d) / width)
    return (d < r).to(d.dtype)


def _shell_weights(d: torch.Tensor, shells: tuple[float, ...], width: float):
    """Membership of pairs at distance ``d`` in the J, K and L shells (same shape as ``d``)."""
    s = [_step(r, d, width) for r in shells]
    j = s[0]
    k = s[1] - s[0]
    l_ = (s[2] - s[1]) if len(shells) == 3 else (1.0 - s[1])
    return j, k, l_


def pair_distances(positions: torch.Tensor, mask: torch.Tensor | None = None):
    """Distances ``(B, N, N)`` and the valid-pair mask (no self pairs, no padding).

    The diagonal and padded pairs are given a distance of 1 before the square root so that the
    gradient stays finite; use the returned mask to ignore them.
    """
    if positions.dim() != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (B, N, 3), got {tuple(positions.shape)}")
    b, n, _ = positions.shape
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=positions.device)
    else:
        mask = mask.to(device=positions.device, dtype=torch.bool)
        if mask.shape != (b, n):
            raise ValueError(f"mask must have shape {(b, n)}, got {tuple(mask.shape)}")
    eye = torch.eye(n, dtype=torch.bool, device=positions.device)
    valid = mask[:, :, None] & mask[:, None, :] & ~eye
    diff = positions[:, :, None, :] - positions[:, None, :, :]
    d2 = (diff * diff).sum(-1)
    d = torch.sqrt(torch.where(valid, d2, torch.ones_like(d2)))
    return d, valid


def shell_masks(positions: torch.Tensor, mask: torch.Tensor | None = None,
                shells: Sequence[float] = DEFAULT_SHELLS, width: float = 0.0):
    """Shell membership matrices ``(J, K, L)``, each ``(B, N, N)``, of padded cluster batches.

    ``J[b, i, j]`` is 1 when atom ``j`` lies in the J shell of atom ``i`` (0/1 for ``width=0``,
    a smooth weight in [0, 1] otherwise); self pairs and padded atoms (``mask`` False) are 0.
    Row sums are the TAD: ``J.sum(-1)`` is the J count of every atom. Non-periodic structures.
    """
    shells = _check_shells(shells, width)
    if width == 0:
        # integer counts: compare squared distances (no square root, no graph: the step has no
        # useful gradient anyway)
        with torch.no_grad():
            d2, valid = _squared_distances(positions, mask)
            steps = [d2 < r * r for r in shells]
            j = steps[0] & valid
            k = steps[1] & ~steps[0] & valid
            l_ = (steps[2] & ~steps[1] if len(shells) == 3 else ~steps[1]) & valid
            dtype = positions.dtype
            return j.to(dtype), k.to(dtype), l_.to(dtype)
    d, valid = pair_distances(positions, mask)
    vf = valid.to(d.dtype)
    return tuple(w * vf for w in _shell_weights(d, shells, width))


def _squared_distances(positions: torch.Tensor, mask: torch.Tensor | None = None):
    if positions.dim() != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (B, N, 3), got {tuple(positions.shape)}")
    b, n, _ = positions.shape
    eye = torch.eye(n, dtype=torch.bool, device=positions.device)
    if mask is None:
        valid = ~eye.expand(b, n, n)
    else:
        mask = mask.to(device=positions.device, dtype=torch.bool)
        if mask.shape != (b, n):
            raise ValueError(f"mask must have shape {(b, n)}, got {tuple(mask.shape)}")
        valid = mask[:, :, None] & mask[:, None, :] & ~eye
    # ((Δx² + Δy²) + Δz²) as separate element-wise operations: each is correctly rounded, so
    # every device gives the same bits. A reduction kernel (``.sum(-1)``) may add in another
    # order on CUDA, and a pair within ~1e-6 Å of a shell radius then changes shell.
    sq = positions[:, :, None, :] - positions[:, None, :, :]
    sq = sq * sq
    d2 = (sq[..., 0] + sq[..., 1]) + sq[..., 2]
    return d2, valid


def _integer_counts(positions: torch.Tensor, mask: torch.Tensor | None,
                    shells: tuple[float, ...], chunk: int = 128) -> torch.Tensor:
    """Integer TAD of a padded batch without building shell matrices (the fast path).

    Squared distances come from the Gram matrix of the centred positions,
    ``|r_i|² + |r_j|² − 2 r_i·r_j`` (one batched matrix product), in chunks of ``chunk``
    structures so that the ``(chunk, N, N)`` blocks stay in cache. Counting ``d² < r²`` includes
    the atom itself (``d² ≈ 0``), which is subtracted. Use float64 positions for counts identical
    to the pairwise differences; float32 can flip pairs within ~1e-5 Å of a shell radius.
    """
    if positions.dim() != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (B, N, 3), got {tuple(positions.shape)}")
    b, n, _ = positions.shape
    if mask is not None:
        mask = mask.to(device=positions.device, dtype=torch.bool)
        if mask.shape != (b, n):
            raise ValueError(f"mask must have shape {(b, n)}, got {tuple(mask.shape)}")
    radii2 = [r * r for r in shells]
    out = torch.empty(b, n, 3, dtype=positions.dtype, device=positions.device)
    with torch.no_grad():
        for start in range(0, b, chunk):
            c = positions[start:start + chunk]
            m = None if mask is None else mask[start:start + chunk]
            if m is None:
                c = c - c.mean(dim=1, keepdim=True)
                n_real = torch.full((c.shape[0], 1), n, device=c.device)
            else:
                mf = m.to(c.dtype)[..., None]
                n_real = m.sum(dim=1, keepdim=True)
                centre = (c * mf).sum(dim=1, keepdim=True) / n_real.clamp(min=1)[..., None]
                c = (c - centre) * mf
            sq = (c * c).sum(-1)
            d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * torch.bmm(c, c.transpose(1, 2))
            inside = [d2 < r2 for r2 in radii2]
            if m is not None:
                inside = [w & m[:, None, :] for w in inside]
            counts = [w.sum(-1) - 1 for w in inside]  # minus the atom itself
            n_j = counts[0]
            n_k = counts[1] - counts[0]
            n_l = (counts[2] - counts[1]) if len(radii2) == 3 else (n_real - 1) - counts[1]
            block = torch.stack([n_j, n_k, n_l], dim=-1).to(positions.dtype)
            if m is not None:
                block = block * m.to(block.dtype)[..., None]
            out[start:start + chunk] = block
    return out


class TAD:
    """Topological Atomic Descriptor: per atom the neighbour counts in the J, K and L shells.

    Parameters
    ----------
    shells:
        ``(r_J, r_K)`` or ``(r_J, r_K, r_L)`` in Å; ``(3.49, 6.3, 15.0)`` by default. The
        third radius bounds the L shell and is required for periodic structures.
    width:
        0 for the paper's integer counts; > 0 (Å) for a smooth logistic switch of that width, so
        that energies built on the descriptor have forces.
    dtype:
        torch dtype used by :meth:`compute` (float64 by default).

    ``compute(atoms)`` returns an ``(n_atoms, 3)`` array (columns J, K, L); ``forward`` keeps the
    autograd graph to the positions (and cell); ``forward_batch`` handles padded cluster batches.
    """

    n_features = 3
    feature_names = ("J", "K", "L")

    def __init__(self, shells: Sequence[float] = DEFAULT_SHELLS, width: float = 0.0,
                 dtype: torch.dtype = torch.float64):
        self.shells = _check_shells(shells, width)
        self.width = float(width)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"TAD(shells={self.shells}, width={self.width})"

    def todict(self) -> dict:
        return {"shells": list(self.shells), "width": self.width}

    @property
    def smooth(self) -> bool:
        return self.width > 0

    # -- numpy entry point ----------------------------------------------------------------------
    def compute(self, atoms: Atoms | Sequence[Atoms]) -> np.ndarray | list[np.ndarray]:
        """TAD of one structure, ``(n_atoms, 3)``; a list of structures gives a list of arrays."""
        if not isinstance(atoms, Atoms):
            return [self.compute(a) for a in atoms]
        check_atoms(atoms)
        pos = torch.as_tensor(atoms.get_positions(), dtype=self.dtype)
        pbc = atoms.pbc
        cell = torch.as_tensor(atoms.cell.array, dtype=self.dtype) if pbc.any() else None
        with torch.no_grad():
            out = self.forward(pos, cell=cell, pbc=pbc)
        return out.cpu().numpy()

    # -- torch entry points ---------------------------------------------------------------------
    def forward(self, positions: torch.Tensor, numbers=None, cell: torch.Tensor | None = None,
                pbc=None) -> torch.Tensor:
        """TAD ``(N, 3)`` of one structure from ``positions (N, 3)`` (Å), differentiable.

        ``numbers`` is accepted for a uniform descriptor interface and ignored (the TAD does not
        distinguish elements). For periodic structures pass ``cell (3, 3)`` and ``pbc``; the L
        shell then needs the third radius of ``shells``.
        """
        if positions.dim() != 2 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
        if not torch.isfinite(positions).all():
            raise ValueError("positions contain NaN or infinite values")
        pbc = np.zeros(3, bool) if pbc is None else np.broadcast_to(np.asarray(pbc, bool), 3)
        if not pbc.any():
            return self.forward_batch(positions[None])[0]
        if cell is None:
            raise ValueError("a periodic structure needs its cell")
        return self._forward_periodic(positions, torch.as_tensor(cell, dtype=positions.dtype,
                                                                 device=positions.device), pbc)

    __call__ = forward

    def forward_batch(self, positions: torch.Tensor, mask: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """TAD ``(B, N, 3)`` of a padded batch of clusters ``positions (B, N, 3)``.

        ``mask (B, N)`` is True for real atoms and False for padding; padded rows are zero.
        """
        if self.width == 0 and not positions.requires_grad:
            return _integer_counts(positions, mask, self.shells)
        j, k, l_ = shell_masks(positions, mask, self.shells, self.width)
        out = torch.stack([j.sum(-1), k.sum(-1), l_.sum(-1)], dim=-1)
        if mask is not None:
            out = out * mask.to(device=out.device, dtype=out.dtype)[..., None]
        return out

    def masks(self, positions: torch.Tensor, mask: torch.Tensor | None = None):
        """Shell membership matrices ``(J, K, L)``, each ``(B, N, N)`` (see :func:`shell_masks`)."""
        return shell_masks(positions, mask, self.shells, self.width)

    def _forward_periodic(self, positions, cell, pbc) -> torch.Tensor:
        if len(self.shells) < 3:
            raise ValueError("the L shell of a periodic structure is infinite: give a third "
                             "radius that bounds it, e.g. TAD(shells=(3.49, 6.3, 15.0))")
        from ase.neighborlist import primitive_neighbor_list

        vol = torch.det(cell).abs()
        if float(vol) < 1e-8:
            raise ValueError("periodic structure has a cell of zero volume")
        # a smooth switch still contributes slightly beyond r_L: include pairs up to 20 widths on
        r_max = self.shells[-1] + 20.0 * self.width
        pos_np = positions.detach().cpu().numpy().astype(float)
        i, j, shift = primitive_neighbor_list("ijS", pbc, cell.detach().cpu().numpy(), pos_np,
                                              r_max, self_interaction=False)
        i = torch.as_tensor(i, device=positions.device)
        j = torch.as_tensor(j, device=positions.device)
        shift = torch.as_tensor(shift, dtype=positions.dtype, device=positions.device)
        vec = positions[j] - positions[i] + shift @ cell
        d = torch.sqrt((vec * vec).sum(-1))
        zero = positions.new_zeros(len(positions))
        return torch.stack([zero.index_add(0, i, w)
                            for w in _shell_weights(d, self.shells, self.width)], dim=-1)
