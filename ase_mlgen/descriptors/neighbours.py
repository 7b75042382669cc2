"""Neighbour lists shared by the local descriptors, as padded, batched torch tensors.

For a batch of ``B`` structures with the same ``N`` atoms (same composition and order), every
centre atom ``i`` gets a padded list of ``M`` neighbours: displacement vectors
``vectors[b, i, m] = r_j - r_i (+ S @ cell)`` (Å), their lengths, the neighbour's atom index and a
validity mask. The vectors are built in torch from the positions (and cell), so descriptors
computed from them are differentiable with respect to both.

* Non-periodic structures: dense all pairs (``M <= N - 1``), no Python loop.
* Periodic structures (any ``pbc``), small cells: the positions are wrapped into the cell and
  every atom ``j`` in every image ``S`` of the few cells that can reach ``r_cut`` is a candidate,
  all in one tensor (no Python loop over structures) — when ``N × images`` is at most
  :data:`DENSE_PERIODIC_LIMIT` candidates per atom.
* Periodic structures, otherwise: the pair indices ``i, j`` and integer image shifts ``S`` come
  from :func:`ase.neighborlist.primitive_neighbor_list` (one call per structure, index work only);
  the vectors are then recomputed as ``pos[j] - pos[i] + S @ cell``.

Either way several periodic images of the same atom, and the centre's own images, are separate
neighbours, so a cutoff larger than half the cell is handled correctly.

Afterwards the lists are compacted to the largest number of neighbours actually inside the
cutoff, and optionally truncated to the ``max_neighbours`` nearest ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Neighbours:
    """Padded neighbour lists of a batch of ``B`` structures of ``N`` atoms (``M`` slots each).

    Attributes
    ----------
    vectors : (B, N, M, 3) displacement centre → neighbour in Å; padded slots hold a fixed vector
        of length ``2 r_cut`` (no gradient) so that norms and angles stay finite.
    distances : (B, N, M) lengths of ``vectors`` in Å.
    mask : (B, N, M) bool, True for real neighbours closer than ``r_cut``.
    index : (B, N, M) long, atom index of the neighbour (0 in padded slots).
    centres : (K,) long atom indices of the centres when only K of the N atoms are centres
        (then every N above reads K), None for all atoms.
    """

    vectors: torch.Tensor
    distances: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    centres: torch.Tensor | None = None

    @property
    def n_slots(self) -> int:
        return self.vectors.shape[2]


def _offdiagonal_index(n: int, device) -> torch.Tensor:
    """(N, N-1) indices ``j != i`` for every row ``i``."""
    ar = torch.arange(n - 1, device=device) if n > 1 else torch.zeros(0, dtype=torch.long,
                                                                      device=device)
    rows = torch.arange(n, device=device)[:, None]
    return ar[None, :] + (ar[None, :] >= rows).long()


def _dense_pairs(positions: torch.Tensor, centres: torch.Tensor | None = None):
    b, n, _ = positions.shape
    idx = _offdiagonal_index(n, positions.device)  # (N, N-1)
    if centres is None:
        vectors = positions[:, idx, :] - positions[:, :, None, :]  # (B, N, N-1, 3)
    else:  # only the rows of these centre atoms: (B, K, N-1, 3)
        idx = idx[centres]
        vectors = positions[:, idx, :] - positions[:, centres, None, :]
    index = idx.expand(b, idx.shape[0], max(n - 1, 0))
    valid = torch.ones(index.shape, dtype=torch.bool, device=positions.device)
    return vectors, index, valid


#: largest number of candidate neighbours per atom (atoms × periodic images) for the dense
#: periodic path; larger problems use ASE's neighbour list
DENSE_PERIODIC_LIMIT = 2048


def _image_range(cell: torch.Tensor, pbc, r_cut: float) -> np.ndarray:
    """Per lattice direction, how many cells away an image closer than ``r_cut`` can be for
    positions wrapped into the cell: ``floor(r_cut |b_k|) + 1`` with ``b_k`` the reciprocal
    vectors (no 2π), 0 along non-periodic directions; the maximum over the batch."""
    inv = torch.linalg.inv(cell.detach().to(torch.float64))      # columns: reciprocal vectors
    reach = (r_cut * inv.norm(dim=1)).amax(dim=0).cpu().numpy()  # (3,)
    return np.where(np.asarray(pbc, dtype=bool), np.floor(reach).astype(int) + 1, 0)


def _dense_periodic_pairs(positions: torch.Tensor, cell: torch.Tensor, pbc, n_images):
    """All atoms in all images within ``n_images`` cells, as candidates of every centre.

    Returns the candidate vectors *without* a graph (for choosing the neighbours), their atom
    indices and validity, and a function that builds the differentiable vectors of the chosen
    candidate slots only (so the autograd graph holds the kept neighbours, not every image).
    """
    b, n, _ = positions.shape
    dev, dt = positions.device, positions.dtype
    periodic = torch.as_tensor(np.array(pbc, dtype=bool), device=dev)
    frac = torch.linalg.solve(cell.transpose(1, 2), positions.transpose(1, 2)).transpose(1, 2)
    wrap = torch.where(periodic, torch.floor(frac.detach()), torch.zeros_like(frac))
    wrapped = positions - wrap @ cell                      # differentiable in positions and cell
    ranges = [torch.arange(-int(k), int(k) + 1, device=dev, dtype=dt) for k in n_images]
    shifts = torch.cartesian_prod(*ranges).reshape(-1, 3)  # (S, 3)
    offsets = torch.einsum("sk,bkl->bsl", shifts, cell)    # (B, S, 3)
    n_s = shifts.shape[0]
    with torch.no_grad():
        # candidate (image s, atom j) of centre i: wrapped[j] + offsets[s] - wrapped[i]
        w, o = wrapped.detach(), offsets.detach()
        vectors = ((w[:, None, :, :] + o[:, :, None, :]).reshape(b, 1, n_s * n, 3)
                   - w[:, :, None, :])                     # (B, N, S*N, 3)
    index = torch.arange(n, device=dev).repeat(n_s).expand(b, n, n_s * n)
    zero_shift = int(np.flatnonzero((shifts.cpu().numpy() == 0).all(axis=1))[0])
    own = torch.zeros(n, n_s * n, dtype=torch.bool, device=dev)
    own[torch.arange(n, device=dev), zero_shift * n + torch.arange(n, device=dev)] = True
    valid = (~own).expand(b, n, n_s * n)

    def materialize(order: torch.Tensor | None) -> torch.Tensor:
        slot = (torch.arange(n_s * n, device=dev).expand(b, n, n_s * n) if order is None
                else order)
        image, atom = slot // n, slot % n
        bidx = torch.arange(b, device=dev)[:, None, None]
        return wrapped[bidx, atom] + offsets[bidx, image] - wrapped[:, :, None, :]

    return vectors, index, valid, materialize


def _periodic_pairs(positions: torch.Tensor, cell: torch.Tensor, pbc, r_cut: float):
    """Pairs from ASE's neighbour list, vectors recomputed in torch (differentiable)."""
    from ase.neighborlist import primitive_neighbor_list

    b, n, _ = positions.shape
    pos_np = positions.detach().cpu().numpy().astype(np.float64)
    cell_np = cell.detach().cpu().numpy().astype(np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    lists = []
    counts = np.zeros((b, n), dtype=np.int64)
    for k in range(b):
        i, j, s = primitive_neighbor_list("ijS", pbc, cell_np[k], pos_np[k], float(r_cut),
                                          self_interaction=False)
        order = np.argsort(i, kind="stable")
        i, j, s = i[order], j[order], s[order]
        counts[k] = np.bincount(i, minlength=n)
        lists.append((i, j, s))
    m = int(counts.max()) if counts.size else 0
    idx = np.zeros((b, n, m), dtype=np.int64)
    shifts = np.zeros((b, n, m, 3), dtype=np.float64)
    valid = np.zeros((b, n, m), dtype=bool)
    for k, (i, j, s) in enumerate(lists):
        start = np.concatenate([[0], np.cumsum(counts[k])[:-1]])
        slot = np.arange(len(i)) - start[i]
        idx[k, i, slot] = j
        shifts[k, i, slot] = s
        valid[k, i, slot] = True
    dev = positions.device
    idx_t = torch.as_tensor(idx, device=dev)
    shifts_t = torch.as_tensor(shifts, dtype=positions.dtype, device=dev)
    valid_t = torch.as_tensor(valid, device=dev)
    bidx = torch.arange(b, device=dev)[:, None, None]
    vectors = (positions[bidx, idx_t] - positions[:, :, None, :]
               + torch.einsum("bnmk,bkl->bnml", shifts_t, cell))
    return vectors, idx_t, valid_t


def build_neighbours(positions: torch.Tensor, cell: torch.Tensor | None, pbc, r_cut: float,
                     max_neighbours: int | None = None,
                     centres: torch.Tensor | None = None) -> Neighbours:
    """Padded neighbour lists of a batch ``positions (B, N, 3)``.

    ``cell`` is ``(B, 3, 3)`` (rows are the lattice vectors, Å) or None; ``pbc`` three booleans
    shared by the batch. Neighbours are the atoms (and periodic images) closer than ``r_cut``;
    with ``max_neighbours`` only that many nearest ones are kept (ties broken by list order).
    ``centres`` (non-periodic only): build the lists of these K atoms only, ``(B, K, M)``.
    """
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if centres is not None and pbc.any():
        raise NotImplementedError("centres= is available for non-periodic structures only")
    if pbc.any():
        if cell is None:
            raise ValueError("a periodic structure needs its cell")
        n_images = _image_range(cell, pbc, r_cut)
        candidates = positions.shape[1] * int(np.prod(2 * n_images + 1))
        if candidates <= DENSE_PERIODIC_LIMIT:
            vectors, index, valid, materialize = _dense_periodic_pairs(positions, cell, pbc,
                                                                       n_images)
        else:
            vectors, index, valid = _periodic_pairs(positions, cell, pbc, r_cut)
            materialize = None
    else:
        vectors, index, valid = _dense_pairs(positions, centres)
        materialize = None

    with torch.no_grad():
        d2 = (vectors.detach() ** 2).sum(-1)
        within = valid & (d2 < r_cut * r_cut)
        n_within = within.sum(-1)
        m_keep = int(n_within.max()) if n_within.numel() else 0
        if max_neighbours is not None:
            m_keep = min(m_keep, int(max_neighbours))
        order = None
        if m_keep < within.shape[-1]:
            if max_neighbours is not None and m_keep == int(max_neighbours) \
                    and bool((n_within > m_keep).any()):
                key = torch.where(within, d2, torch.full_like(d2, float("inf")))
            else:
                # only compaction: move the neighbours inside the cutoff to the front
                key = (~within).to(torch.int8)
            order = torch.argsort(key, dim=-1, stable=True)[..., :m_keep]
    if materialize is not None:            # differentiable vectors of the kept slots only
        vectors = materialize(order)
    elif order is not None:
        vectors = torch.gather(vectors, 2, order[..., None].expand(*order.shape, 3))
    if order is not None:
        index = torch.gather(index, 2, order)
        within = torch.gather(within, 2, order)

    pad = torch.zeros(3, dtype=positions.dtype, device=positions.device)
    pad[0] = 2.0 * r_cut
    vectors = torch.where(within[..., None], vectors, pad)
    distances = torch.sqrt((vectors * vectors).sum(-1))
    return Neighbours(vectors=vectors, distances=distances, mask=within, index=index,
                      centres=centres)
