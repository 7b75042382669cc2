"""Fast, exact inference for DART on the integer TAD: tabulated embeddings, folded first layer.

The same numbers as :meth:`ase_mlgen.nn.dart.DARTNet.forward` (to floating-point rounding), with
about 60 % of its arithmetic for Ga50 and far less memory traffic. Three exact rewrites:

1. **Tabulation.** With the paper's integer TAD an atom's embeddings ``MLP_f(t)``, ``MLP_J(t)``,
   ``MLP_K(t)``, ``MLP_L(t)`` depend only on its integer triple ``t``; they are computed once per
   distinct triple of a batch (a few hundred rows for thousands of atoms) and looked up.
2. **Folding the first interaction layer.** The interaction block starts with a linear layer
   ``W₁ x + b₁`` acting on the sum ``x = Y_f + ΣJ + ΣK + ΣL``. Being linear, it distributes over
   the sum, so the tables hold ``W₁ MLP_·(t)`` (256 wide) and the shell sums deliver the first
   layer's pre-activation directly; the 128→256 product per atom disappears.
3. **Nested shells.** With ``A_r`` the pairs closer than ``r`` (the atom itself included), the
   J, K and L shells are ``A_J − I``, ``A_K − A_J`` and ``A_L − A_K``, so

   ``ΣJ + ΣK + ΣL = A_J (T_J − T_K) + A_K (T_K − T_L) + A_L T_L − T_J(t_i)``.

   When every pair of a cluster is inside the outer radius (any cluster narrower than 15 Å,
   Ga up to ~100 atoms, and always for the unbounded L shell) ``A_L`` is all ones and its product
   is a column sum (a bag sum of table rows, ``embedding_bag``). The other two products are bag
   sums too: each atom sums the ``X_JK`` rows of its J neighbours and the ``X_KL`` rows of its K
   neighbours (itself included in both), about 27 rows for a Ga50 atom against the ``2N = 100``
   columns of the dense product ``[A_J | A_K] [X_JK; X_KL]``.

Measured on 2 cores (AVX-512, MKL), one thread, CPU time per Ga50: the interaction tail's
256→128 product takes about a third, the CELU activations (~21k values per cluster; NumPy's
vectorised ``expm1``, see :func:`celu_`) and the bag sums a sixth each.

Per Ga50 atom that leaves about ``27·256`` additions (bag sums) ``+ 256·128 + 128·32 + 32``
multiply-adds (interaction tail), against ``3·50·128 + 128·256 + 256·128 + 128·32 + 32`` ≈ 88.8 k
for the plain forward pass (embeddings negligible in both when tabulated).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

def macs_per_atom(natoms: int, interaction_dims=(128, 256, 128, 32, 1), fast: bool = True) -> int:
    """Multiply-adds per atom of DART inference on an ``natoms`` cluster with the interaction
    block ``interaction_dims`` (embeddings excluded: tabulated, they cost next to nothing), for
    the fast path (``fast=True``) or the plain forward pass. The fast path's shell sums are
    counted as the dense ``2·N·256`` bound; its bag sums add only each atom's J and K rows."""
    dims = tuple(int(d) for d in interaction_dims)
    layers = [a * b for a, b in zip(dims[:-1], dims[1:])]
    if fast:
        return 2 * natoms * dims[1] + sum(layers[1:])
    return 3 * natoms * dims[0] + sum(layers)


def _flush_denormal_on() -> bool:
    """Whether this thread flushes subnormal floats to zero (a subnormal product comes out 0)."""
    return float(torch.full((1,), 1e-30).mul_(1e-9)) == 0.0


@contextmanager
def flushed_denormals():
    """Flush subnormal float32 values to zero in the calling thread while inside (x86 FTZ/DAZ;
    nothing happens where torch cannot set it), restoring the previous mode afterwards.

    The CELU of a strongly negative pre-activation, ``exp(x) − 1`` for ``x < −87``, passes
    through a subnormal ``exp(x)``; subnormal arithmetic is many times slower on x86 (measured
    here: CELU 3.0 against 1.6 ns per value on pre-activations of spread 100). The flushed value
    differs from the subnormal one by less than 1.2e-38, far below the rounding of ``−1``, so the
    energies are the same."""
    switched = not _flush_denormal_on() and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if switched:
            torch.set_flush_denormal(False)


def celu_(h: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """In place ``CELU(h) = max(0, h) + min(0, α·(exp(h/α) − 1))``, as ``F.celu_``.

    On the CPU the exponential goes through NumPy's vectorised ``expm1`` on the negative part
    (about twice as fast as torch's CELU kernel here: 12 against 22 µs per 12.8k float32 values,
    one thread); the result differs from ``F.celu`` by at most one unit in the last place.
    Elsewhere (CUDA) it is ``F.celu_``."""
    if h.device.type != "cpu" or h.requires_grad or not h.is_contiguous():
        return F.celu_(h, alpha)
    negative = torch.clamp_max(h, 0.0)
    if alpha != 1.0:
        negative.div_(alpha)
    values = negative.numpy()
    np.expm1(values, out=values)
    if alpha != 1.0:
        negative.mul_(alpha)
    return h.clamp_min_(0.0).add_(negative)


def _activation(layer: nn.Module):
    """In-place function of an activation module (same numbers as the module to rounding)."""
    if isinstance(layer, nn.CELU):
        return lambda h: celu_(h, layer.alpha)
    if isinstance(layer, nn.ReLU):
        return F.relu_
    if isinstance(layer, nn.SiLU):
        return lambda h: F.silu(h, inplace=True)
    if isinstance(layer, nn.Tanh):
        return torch.tanh_
    raise TypeError(f"no fast path for the activation {type(layer).__name__}")


class TabulatedDART:
    """Inference-only view of a :class:`~ase_mlgen.nn.dart.DARTNet` trained on the integer TAD.

    It shares the network's weights (no copy: later training is seen at the next call) and
    computes per-atom energies of unpadded batches of same-size clusters, a block of whole
    clusters with about ``chunk_atoms`` atoms at a time so that the work arrays (800 atoms × 256
    floats: 0.8 MB) stay in the core's cache (measured best at 400-800 atoms on this CPU). On the CPU, ``threads`` (default:
    torch's intra-op thread count) workers take whole chunks, each with single-threaded kernels:
    the blocks are too small for torch's intra-op threads to pay off.
    """

    def __init__(self, net, chunk_atoms: int = 800, threads: int | None = None):
        if net.tad.width != 0:
            raise ValueError("the tabulated fast path needs the integer TAD (width=0); a smooth "
                             "TAD gives every atom its own real-valued descriptor")
        layers = list(net.interaction)
        if not isinstance(layers[0], nn.Linear):
            raise ValueError("the interaction block must start with a linear layer")
        self.net = net
        self.first = layers[0]
        self.tail = [(layer if isinstance(layer, nn.Linear) else _activation(layer))
                     for layer in layers[1:]]
        if chunk_atoms < 1:
            raise ValueError(f"chunk_atoms must be >= 1, got {chunk_atoms}")
        self.chunk_atoms = int(chunk_atoms)
        self.threads = threads

    def _tables(self, tad: torch.Tensor):
        """Per distinct TAD triple: ``W₁(Y_f) + b₁ − W₁ T_J``, ``W₁(T_J − T_K)`` stacked over
        ``W₁(T_K − T_L)``, and ``W₁ T_L`` (the shell embeddings divided by their shell scales, as in
        :meth:`DARTNet._embed`), and the index of every atom's row."""
        net = self.net
        flat = tad.reshape(-1, 3)
        key = (flat[:, 0] * 4096 + flat[:, 1]) * 4096 + flat[:, 2]
        uniq, inverse = torch.unique(key, return_inverse=True)
        rows = torch.stack([uniq // (4096 * 4096), (uniq // 4096) % 4096, uniq % 4096], dim=-1)
        x = rows.to(net.tad_scale.dtype) / net.tad_scale
        s = net.tad_scale
        w, b = self.first.weight, self.first.bias
        y_f = F.linear(net.mlp_f(x), w, b)
        t_j = F.linear(net.mlp_j(x) / s[0], w)
        t_k = F.linear(net.mlp_k(x) / s[1], w)
        t_l = F.linear(net.mlp_l(x) / s[2], w)
        # the J and K tables stacked: row u is W₁(T_J − T_K)(u), row U + u is W₁(T_K − T_L)(u)
        return (y_f - t_j, torch.cat([t_j - t_k, t_k - t_l]), t_l), inverse.reshape(tad.shape[:-1])

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ``(B, N)`` in eV of ``positions (B, N, 3)`` (Å), no padding (see
        :meth:`_evaluate`); subnormal floats are flushed to zero meanwhile
        (:func:`flushed_denormals`)."""
        with flushed_denormals():
            return self._evaluate(positions)

    @torch.inference_mode()
    def _evaluate(self, positions: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ``(B, N)`` in eV of ``positions (B, N, 3)`` (Å), no padding.

        Two passes over blocks of clusters: the first finds every atom's TAD (and keeps
        the J and K shell masks, 2 bytes per pair), one table is computed for the distinct TADs
        of the whole batch, the second pass does the shell sums and the interaction tail.
        """
        if positions.dim() != 3 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape (B, N, 3), got {tuple(positions.shape)}")
        net = self.net
        positions = positions.to(net.tad_scale.dtype)
        b, n, _ = positions.shape
        chunk = max(1, self.chunk_atoms // max(n, 1))
        starts = list(range(0, b, chunk))
        threads = self.threads or torch.get_num_threads()
        threads = 1 if positions.device.type != "cpu" else max(1, min(int(threads), len(starts)))
        tad = torch.empty(b, n, 3, dtype=torch.long, device=positions.device)
        out = positions.new_empty(b, n)
        if threads == 1:
            masks = [self._shells(positions[i:i + chunk], tad[i:i + chunk])
                     for i in starts]
            tables, inv = self._tables(tad)
            self._second_pass(starts, chunk, masks, inv, tables, out)
            return out
        from concurrent.futures import ThreadPoolExecutor

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            def first(i):
                with torch.inference_mode():       # thread-local: set in every worker
                    return self._shells(positions[i:i + chunk], tad[i:i + chunk])

            def second(k):
                with torch.inference_mode(), flushed_denormals():
                    self._second_pass(starts[k::threads], chunk, masks[k::threads], inv, tables,
                                      out)

            with ThreadPoolExecutor(threads) as pool:
                masks = list(pool.map(first, starts))
                tables, inv = self._tables(tad)
                list(pool.map(second, range(threads)))
        finally:
            torch.set_num_threads(previous)
        return out

    def _second_pass(self, starts, chunk: int, masks, inv, tables, out) -> None:
        """Shell sums and interaction tail of the chunks beginning at ``starts`` into ``out``."""
        for start, m in zip(starts, masks):
            stop = min(start + chunk, len(inv))
            out[start:stop] = self._energies(m, inv[start:stop], tables)

    def _shells(self, pos: torch.Tensor, tad_out: torch.Tensor):
        """Write the TAD ``(b, n, 3)`` into ``tad_out``; return the shell matrices with the atom
        itself included: ``[A_J | A_K]`` (bool ``(b, n, 2n)``: closer than the J and K radii),
        the number of true entries in each of its rows (``(b·n,)``: the atom's bag size in
        :meth:`_energies`), and ``A_L`` (or None when every pair is inside the outer radius)."""
        shells = self.net.tad.shells
        n = pos.shape[1]
        # squared distances with the same operations, in the same order, as the plain model's
        # shell matrices ((Δx² + Δy²) + Δz²), one coordinate plane at a time (7× faster)
        x = pos.transpose(1, 2).contiguous()              # (b, 3, n)
        d = x[:, :, :, None] - x[:, :, None, :]           # (b, 3, n, n)
        d.mul_(d)
        d2 = d[:, 0].add_(d[:, 1]).add_(d[:, 2])
        jk = torch.empty(pos.shape[0], n, 2 * n, dtype=torch.bool, device=pos.device)
        torch.lt(d2, shells[0] ** 2, out=jk[:, :, :n])   # the atom itself included (d² = 0)
        torch.lt(d2, shells[1] ** 2, out=jk[:, :, n:])
        inner = jk.view(-1, n).sum(-1, dtype=torch.int32).view(pos.shape[0], n, 2)
        n_j = inner[..., 0] - 1
        n_k = inner[..., 1] - inner[..., 0]
        outer = None
        if len(shells) == 3:
            outer = d2 < shells[2] ** 2
            c_l = outer.sum(-1, dtype=torch.int32)
            n_l = c_l - inner[..., 1]
            if bool(c_l.eq(n).all()):
                outer = None                          # A_L all ones: a column sum
        else:
            n_l = n - inner[..., 1]
        tad_out.copy_(torch.stack([n_j, n_k, n_l], dim=-1))
        return jk, inner.sum(-1).view(-1).long(), outer

    def _energies(self, masks, inv: torch.Tensor, tables) -> torch.Tensor:
        """Per-atom energies ``(b, n)`` of one block of clusters from its shell masks and table
        rows.

        The J and K shell sums ``A_J X_JK + A_K X_KL`` are bag sums of table rows: for every
        atom, the rows of its J neighbours (itself included) from the J table and of its K
        neighbours from the K table, gathered once with ``masked_select`` and summed by
        ``embedding_bag``. A Ga50 atom has about 27 such rows against the 100 columns of the
        dense product ``[A_J | A_K] [X_JK; X_KL]``, and the bag sum needs no float mask and no
        gathered ``2n × 256`` neighbour matrix.
        """
        net = self.net
        jk, counts, outer = masks
        b, n = inv.shape
        t0, t_jk_kl, t_l = tables
        flat = inv.reshape(-1)
        y = torch.index_select(t0, 0, flat)
        # row of every (atom, neighbour) pair: J part from the first table half, K from the second
        src = torch.cat([inv, inv + len(t_l)], dim=-1)[:, None, :].expand(b, n, 2 * n)
        rows = torch.masked_select(src, jk)
        offsets = torch.zeros_like(counts)
        torch.cumsum(counts[:-1], 0, out=offsets[1:])
        y += F.embedding_bag(rows, t_jk_kl, offsets, mode="sum")
        y = y.view(b, n, -1)
        if outer is None:
            # A_L all ones: every atom gets the cluster's sum of X_L (a bag sum of table rows)
            y += F.embedding_bag(inv, t_l, mode="sum")[:, None, :]
        else:
            y.baddbmm_(outer.to(y.dtype), torch.index_select(t_l, 0, flat).view(b, n, -1))
        h = y.view(b * n, -1)
        for layer in self.tail:
            h = F.linear(h, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else layer(h)
        ref, scale = net.energy_reference.to(y.dtype), net.energy_scale.to(y.dtype)
        return ref + scale * h.view(b, n)
