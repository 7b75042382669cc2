"""Atom-centred symmetry functions (Behler–Parrinello) in torch, with DScribe's layout.

Behler, J. Chem. Phys. 134, 074106 (2011). Same constructor arguments, definitions and feature
order as ``dscribe.descriptors.ACSF`` (checked to 1e-6 relative in the tests), but batched over
structures and differentiable with respect to positions and cell.

Definitions (``r_ij`` in Å, ``fc(r) = 0.5 (cos(pi r / r_cut) + 1)`` for ``r < r_cut``, else 0; sums
over neighbours ``j`` of element ``A`` and, for the three-body terms, over *unordered* pairs
``{j, k}`` of neighbours with elements ``{A, B}``; ``theta_ijk`` is the angle at ``i``):

* G1 = sum_j fc(r_ij)
* G2 = sum_j exp(-eta (r_ij - R_s)^2) fc(r_ij)                                   (eta, R_s)
* G3 = sum_j cos(kappa r_ij) fc(r_ij)                                            (kappa)
* G4 = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
       exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) fc(r_ij) fc(r_ik) fc(r_jk)            (eta, zeta, lambda)
* G5 = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
       exp(-eta (r_ij^2 + r_ik^2)) fc(r_ij) fc(r_ik)                             (eta, zeta, lambda)

Layout of one atom's vector (species ordered by atomic number, as DScribe does):
``[for A in species: G1_A, G2_A(params in given order), G3_A(params)]`` followed by
``[for each unordered element pair (A, B): G4_AB(params), G5_AB(params)]``, the pairs ordered
(0,0), (1,0), (1,1), (2,0), (2,1), (2,2), ... (index ``a (a + 1) / 2 + b`` for ``a >= b``). The
parameter lists are used in exactly the order given. ``g1=False`` (not a DScribe option) drops
the G1 entries, which gives the 190-value-per-atom layout of the Pt10 ACSF-inversion data.

Three-body sums are computed over neighbour pairs (dense or sparse), or — for G5 with small
integer ``zeta`` and no G4 — in the separable **moment form**: with ``w_j = exp(-eta r_ij^2)
fc(r_ij)`` and unit vectors ``u_j``, ``(1 + lambda cos)^zeta`` is a polynomial in ``cos =
u_j . u_k`` and ``sum_{j,k} w_j w_k (u_j . u_k)^n = sum_{|a|=n} n!/(a!) M_a^2`` with the moments
``M_a = sum_j w_j u_j^a`` (monomials ``u_x^a1 u_y^a2 u_z^a3``); the ``j = k`` terms (``cos = 1``)
are subtracted. Cost per atom ``O(M)`` instead of ``O(M^2)`` in the number of neighbours ``M``;
the same numbers to rounding. ``three_body="auto"`` picks the cheaper form.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from ase_mlgen.descriptors.base import LocalDescriptor, pool
from ase_mlgen.descriptors.neighbours import Neighbours


def _as_params(value, width: int, name: str) -> np.ndarray:
    if value is None:
        return np.zeros((0, width))
    arr = np.asarray(value, dtype=np.float64)
    if width == 1:
        if arr.ndim != 1:
            raise ValueError(f"{name} should be a vector of kappa values")
        return arr[:, None]
    if arr.size == 0:
        return np.zeros((0, width))
    if arr.ndim != 2 or arr.shape[1] != width:
        cols = "(eta, Rs)" if width == 2 else "(eta, zeta, lambda)"
        raise ValueError(f"{name} should be a matrix with {width} columns {cols}, got shape "
                         f"{arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (arr[:, 0] < 0).any():
        raise ValueError(f"{name}: eta must be >= 0")
    return arr


class ACSF(LocalDescriptor):
    """Behler–Parrinello atom-centred symmetry functions, batched and differentiable.

    Parameters
    ----------
    species : list of chemical symbols or atomic numbers that may occur.
    r_cut : cutoff radius in Å (cosine cutoff).
    g2_params : rows ``(eta [1/Å²], R_s [Å])``.
    g3_params : values ``kappa [1/Å]``.
    g4_params, g5_params : rows ``(eta [1/Å²], zeta, lambda)``.
    g1 : include G1 (DScribe always does; False gives the Pt10 ACSF-inversion layout).
    three_body : ``"auto"`` (cheaper of the two), ``"pairs"`` (sums over neighbour pairs) or
        ``"moments"`` (separable moment form; G5 with integer ``zeta`` <= 16 and no G4 only).
    dtype, device : torch dtype (float64 by default) and device of the computation.

    See the module docstring for definitions and the feature layout (identical to
    ``dscribe.descriptors.ACSF(r_cut, g2_params, g3_params, g4_params, g5_params, species)``).
    """

    def __init__(self, species, r_cut: float, g2_params=None, g3_params=None, g4_params=None,
                 g5_params=None, *, g1: bool = True, three_body: str = "auto",
                 dtype: torch.dtype = torch.float64, device="cpu"):
        super().__init__(species, r_cut, dtype=dtype, device=device)
        self.g1 = bool(g1)
        self.g2_params = _as_params(g2_params, 2, "g2_params")
        self.g3_params = _as_params(g3_params, 1, "g3_params")[:, 0]
        self.g4_params = _as_params(g4_params, 3, "g4_params")
        self.g5_params = _as_params(g5_params, 3, "g5_params")
        s = self.n_species
        self.n_pair_types = s * (s + 1) // 2
        self.n_radial = int(self.g1) + len(self.g2_params) + len(self.g3_params)
        self.n_angular = len(self.g4_params) + len(self.g5_params)
        self.n_features = self.n_radial * s + self.n_angular * self.n_pair_types

        # three-body bookkeeping: unique etas (separable radial weights) and unique (lambda, zeta)
        three = np.concatenate([self.g4_params, self.g5_params])
        self._etas = np.unique(three[:, 0]) if len(three) else np.zeros(0)
        self._angles5, self._ang5_idx = self._unique_angles(self.g5_params)
        self._angles4, self._ang4_idx = self._unique_angles(self.g4_params)
        self._eta5_idx = np.searchsorted(self._etas, self.g5_params[:, 0])
        self._eta4_idx = np.searchsorted(self._etas, self.g4_params[:, 0])
        # moment form of G5: possible for integer zeta <= 16 without G4
        zetas = self.g5_params[:, 1]
        self._moments_ok = bool(len(self.g5_params) and not len(self.g4_params)
                                and np.all(zetas == np.round(zetas)) and np.all(zetas >= 1)
                                and np.all(zetas <= 16))
        if three_body not in ("auto", "pairs", "moments"):
            raise ValueError("three_body must be 'auto', 'pairs' or 'moments'")
        if three_body == "moments" and not self._moments_ok:
            raise ValueError("three_body='moments' needs G5 with integer zeta in 1..16 and no G4")
        self.three_body = three_body
        if self._moments_ok:
            self._max_degree = int(zetas.max())
            self._monomials = _monomials(self._max_degree)

    @staticmethod
    def _unique_angles(params: np.ndarray):
        if len(params) == 0:
            return np.zeros((0, 2)), np.zeros(0, np.int64)
        lz = params[:, [2, 1]]  # (lambda, zeta)
        uniq, inv = np.unique(lz, axis=0, return_inverse=True)
        return uniq, inv.reshape(-1)

    def __repr__(self) -> str:
        return (f"ACSF(species={self.species}, r_cut={self.r_cut}, n_g2={len(self.g2_params)}, "
                f"n_g3={len(self.g3_params)}, n_g4={len(self.g4_params)}, "
                f"n_g5={len(self.g5_params)}, g1={self.g1})")

    def todict(self) -> dict:
        return {"species": self.species, "r_cut": self.r_cut,
                "g2_params": self.g2_params.tolist(), "g3_params": self.g3_params.tolist(),
                "g4_params": self.g4_params.tolist(), "g5_params": self.g5_params.tolist(),
                "g1": self.g1}

    # -- implementation ---------------------------------------------------------------------
    def _work_per_structure(self, n_atoms: int, n_slots: int, mean_slots: float | None = None
                            ) -> int:
        m = max(n_slots, 1)
        two = n_atoms * m * max(self.n_radial, 1)
        three = 0
        if self.n_angular:
            n_pairs = m * (m - 1) // 2
            if mean_slots is not None and (mean_slots * mean_slots) < n_pairs:
                n_pairs = int(2 * mean_slots * mean_slots) + 1  # sparse path: real pairs only
            width = max(len(self._angles5) * len(self._etas) * self.n_pair_types,
                        2 * len(self.g4_params) * self.n_pair_types, len(self._angles5) + 4)
            three = n_atoms * n_pairs * width
            if self._use_moments(m, mean_slots):
                three = n_atoms * m * (len(self._monomials[0]) + 3) * len(self._etas) \
                    * self.n_species
        return max(two, three, 1)

    def _use_moments(self, m: int, mean_slots: float | None = None) -> bool:
        """Whether the moment form of the three-body sums is used for ``m`` neighbour slots."""
        if not self._moments_ok or self.three_body == "pairs":
            return False
        if self.three_body == "moments":
            return True
        pairs = m * (m - 1) / 2
        if mean_slots is not None:
            pairs = min(pairs, mean_slots * mean_slots)
        pair_work = pairs * len(self._angles5) * len(self._etas) * self.n_pair_types
        moment_work = m * len(self._monomials[0]) * len(self._etas) * self.n_species
        return moment_work < pair_work

    def _angular(self, cos: torch.Tensor, angles: np.ndarray) -> torch.Tensor:
        """``2^-zeta (1 + lambda cos)^zeta`` for every (lambda, zeta) row, stacked on dim 1.

        Integer ``zeta`` uses repeated squaring (exact, cheap, well-defined gradients).
        """
        out = []
        cache: dict = {}
        for lam, zeta in angles:
            base = cache.get(lam)
            if base is None:
                base = cache[lam] = 0.5 * (1.0 + lam * cos)
            if float(zeta).is_integer() and 0 < zeta <= 4096:
                out.append(_int_power(base, int(zeta), cache, lam))
            else:
                out.append(base.clamp_min(0.0) ** float(zeta))
        return torch.stack(out, dim=1)  # the factor 2 is applied to the sums

    def _features(self, nb: Neighbours, centre: torch.Tensor) -> torch.Tensor:
        r, mask = nb.distances, nb.mask
        b, n, m = r.shape
        s = self.n_species
        dt, dev = r.dtype, r.device
        bn = b * n
        inplace = not (torch.is_grad_enabled() and r.requires_grad)
        fc = torch.where(mask, 0.5 * (torch.cos(r * (np.pi / self.r_cut)) + 1.0),
                         torch.zeros((), dtype=dt, device=dev)).reshape(bn, m)
        spec = centre[nb.index].reshape(bn, m) if s > 1 else None

        blocks = []
        # ---- two-body: G1, G2, G3 summed over neighbours of each element
        if s == 1:
            def reduce(t):  # (BN, M, K) -> (BN, 1, K), weights fc
                t = t.mul_(fc[..., None]) if inplace else t * fc[..., None]
                return t.sum(dim=1, keepdim=True)
        else:
            wsp = torch.nn.functional.one_hot(spec, s).to(dt) * fc[..., None]  # (BN, M, S)

            def reduce(t):
                return wsp.transpose(1, 2) @ t  # (BN, S, K)
        parts = []
        rr = r.reshape(bn, m, 1)
        if self.g1:
            parts.append(reduce(torch.ones_like(rr)))
        if len(self.g2_params):
            eta = torch.as_tensor(self.g2_params[:, 0], dtype=dt, device=dev)
            rs = torch.as_tensor(self.g2_params[:, 1], dtype=dt, device=dev)
            d = rr - rs
            parts.append(reduce(d.mul_(d).mul_(-eta).exp_() if inplace
                                else torch.exp(-eta * d * d)))
        if len(self.g3_params):
            kappa = torch.as_tensor(self.g3_params, dtype=dt, device=dev)
            parts.append(reduce(torch.cos(rr * kappa)))
        if parts:
            two = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # (BN, S, K)
            blocks.append(two.reshape(b, n, s * self.n_radial))

        # ---- three-body: G4, G5 per unordered neighbour-element pair
        if self.n_angular:
            if m < 2:
                blocks.append(r.new_zeros(b, n, self.n_angular * self.n_pair_types))
            else:
                blocks.append(self._three_body(nb, fc, spec).reshape(
                    b, n, self.n_pair_types * self.n_angular))
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)

    def _three_body(self, nb: Neighbours, fc: torch.Tensor, spec) -> torch.Tensor:
        """G4/G5 block ``(BN, T, n_g4 + n_g5)``: sums over unordered neighbour pairs j < k.

        Dense (all padded slot pairs, contracted with batched matmuls) when most slot pairs are
        real neighbour pairs; otherwise sparse (only real pairs, summed with ``index_add``).
        """
        r = nb.distances
        b, n, m = r.shape
        bn = b * n
        if self._use_moments(m, float(nb.mask.sum()) / max(bn, 1)):
            return self._three_body_moments(nb, fc, spec)
        jp, kp = torch.triu_indices(m, m, offset=1, device=r.device)
        mask = nb.mask.reshape(bn, m)
        pair_mask = mask[:, jp] & mask[:, kp]
        fill = float(pair_mask.sum()) / max(pair_mask.numel(), 1)
        if fill < 0.5:
            return self._three_body_sparse(nb, fc, spec, pair_mask, jp, kp)
        return self._three_body_dense(nb, fc, spec, jp, kp)

    def _combine(self, ang: torch.Tensor, rad: torch.Tensor, a_idx, e_idx, weights):
        """``sum_p ang[u_q, p] rad[e_q, p] weights[p, t]`` for every parameter q: (BN, Q, T).

        ``ang (BN, U, P)``, ``rad (BN, E, P)``, ``weights (BN, P, T)``. Uses the full (U, E) grid
        when it is not much larger than the parameter list, else gathers per parameter.
        """
        bn, u, p = ang.shape
        e = rad.shape[1]
        if u * e <= 2 * len(a_idx):
            prod = (ang[:, :, None, :] * rad[:, None, :, :]).reshape(bn, u * e, p)
            q = (prod @ weights).reshape(bn, u, e, -1)
            return q[:, a_idx, e_idx]
        return (ang[:, a_idx] * rad[:, e_idx]) @ weights

    def _three_body_dense(self, nb: Neighbours, fc, spec, jp, kp) -> torch.Tensor:
        r = nb.distances
        b, n, m = r.shape
        bn = b * n
        dt, dev = r.dtype, r.device
        npt = self.n_pair_types
        vec = nb.vectors.reshape(bn, m, 3)
        rr = r.reshape(bn, m)
        pidx = jp * m + kp
        dot = (vec @ vec.transpose(1, 2)).reshape(bn, m * m)[:, pidx]  # (BN, P)
        cos = dot / (rr[:, jp] * rr[:, kp])
        r2 = rr * rr
        s2 = r2[:, jp] + r2[:, kp]  # r_ij^2 + r_ik^2
        fpair = fc[:, jp] * fc[:, kp]
        if spec is not None:
            hi = torch.maximum(spec[:, jp], spec[:, kp])
            lo = torch.minimum(spec[:, jp], spec[:, kp])
            weights = torch.nn.functional.one_hot(hi * (hi + 1) // 2 + lo, npt).to(dt)
        else:
            weights = torch.ones(bn, jp.numel(), 1, dtype=dt, device=dev)
        out = r.new_zeros(bn, npt, self.n_angular)
        n4, n5 = len(self.g4_params), len(self.g5_params)
        etas = torch.as_tensor(self._etas, dtype=dt, device=dev)
        if n5:
            ang = self._angular(cos, self._angles5)  # (BN, U, P)
            rad = torch.exp(-etas[None, :, None] * s2[:, None, :]) * fpair[:, None, :]
            u, ne = ang.shape[1], len(etas)
            if spec is not None:
                rad = (rad[:, :, :, None] * weights[:, None, :, :]).transpose(1, 2).reshape(
                    bn, jp.numel(), ne * npt)
            else:
                rad = rad.transpose(1, 2)
            q = ang @ rad  # (BN, U, E*T)
            q = q.reshape(bn, u, ne, npt)
            a_idx = torch.as_tensor(self._ang5_idx, device=dev)
            e_idx = torch.as_tensor(self._eta5_idx, device=dev)
            out[:, :, n4:] = q[:, a_idx, e_idx, :].transpose(1, 2)
        if n4:
            rjk2 = (s2 - 2.0 * dot).clamp_min(0.0)
            rjk = torch.sqrt(rjk2.clamp_min(1e-300))
            fcjk = torch.where(rjk <= self.r_cut,
                               0.5 * (torch.cos(rjk * (np.pi / self.r_cut)) + 1.0),
                               torch.zeros((), dtype=dt, device=dev))
            ang = self._angular(cos, self._angles4)  # (BN, U4, P)
            rad = torch.exp(-etas[None, :, None] * (s2 + rjk2)[:, None, :])  # (BN, E, P)
            w4 = weights * (fpair * fcjk)[..., None]
            q = self._combine(ang, rad, torch.as_tensor(self._ang4_idx, device=dev),
                              torch.as_tensor(self._eta4_idx, device=dev), w4)  # (BN, P4, T)
            out[:, :, :n4] = q.transpose(1, 2)
        return 2.0 * out

    def _three_body_sparse(self, nb: Neighbours, fc, spec, pair_mask, jp, kp) -> torch.Tensor:
        r = nb.distances
        b, n, m = r.shape
        bn = b * n
        dt, dev = r.dtype, r.device
        npt = self.n_pair_types
        bn_t, p_t = pair_mask.nonzero(as_tuple=True)
        fj = bn_t * m + jp[p_t]  # flat (centre, slot) indices of j and k
        fk = bn_t * m + kp[p_t]
        vec = nb.vectors.reshape(bn * m, 3)
        rr = r.reshape(bn * m)
        fcf = fc.reshape(bn * m)
        vj, vk = vec.index_select(0, fj), vec.index_select(0, fk)
        rj, rk = rr.index_select(0, fj), rr.index_select(0, fk)
        cos = (vj * vk).sum(-1) / (rj * rk)
        s2 = rj * rj + rk * rk
        fpair = fcf.index_select(0, fj) * fcf.index_select(0, fk)
        if spec is not None:
            specf = spec.reshape(bn * m)
            sj, sk = specf.index_select(0, fj), specf.index_select(0, fk)
            hi, lo = torch.maximum(sj, sk), torch.minimum(sj, sk)
            row = bn_t * npt + hi * (hi + 1) // 2 + lo
        else:
            row = bn_t
        etas = torch.as_tensor(self._etas, dtype=dt, device=dev)
        n4, n5 = len(self.g4_params), len(self.g5_params)
        ne = len(etas)
        out = r.new_zeros(bn * npt, self.n_angular)

        def accumulate(ang, rad, a_idx, e_idx, cols):
            u = ang.shape[1]
            a_idx = torch.as_tensor(a_idx, device=dev)
            e_idx = torch.as_tensor(e_idx, device=dev)
            if u * ne <= 2 * len(a_idx):  # sum every (angle, eta) product, pick parameters after
                grid = (ang[:, :, None] * rad[:, None, :]).reshape(-1, u * ne)
                summed = r.new_zeros(bn * npt, u * ne).index_add_(0, row, grid)
                out[:, cols] = summed[:, a_idx * ne + e_idx]
            else:
                out[:, cols] = r.new_zeros(bn * npt, len(a_idx)).index_add_(
                    0, row, ang[:, a_idx] * rad[:, e_idx])

        if n4:
            djk = vk - vj
            rjk2 = (djk * djk).sum(-1)
            rjk = torch.sqrt(rjk2.clamp_min(1e-300))
            fcjk = torch.where(rjk <= self.r_cut,
                               0.5 * (torch.cos(rjk * (np.pi / self.r_cut)) + 1.0),
                               torch.zeros((), dtype=dt, device=dev))
            rad = torch.exp(-etas * (s2 + rjk2)[:, None]) * (fpair * fcjk)[:, None]
            accumulate(self._angular(cos, self._angles4), rad, self._ang4_idx, self._eta4_idx,
                       slice(0, n4))
        if n5:
            rad = torch.exp(-etas * s2[:, None]) * fpair[:, None]
            accumulate(self._angular(cos, self._angles5), rad, self._ang5_idx, self._eta5_idx,
                       slice(n4, n4 + n5))
        return 2.0 * out.reshape(bn, npt, self.n_angular)

    def _three_body_moments(self, nb: Neighbours, fc: torch.Tensor, spec) -> torch.Tensor:
        """G5 block ``(BN, T, n_g5)`` in the separable moment form (see the module docstring).

        ``P_n = sum_{j<k} w_j w_k cos^n`` from the moments of degree ``n``; then
        ``G5 = 2^(1-zeta) sum_n binom(zeta, n) lambda^n P_n``.
        """
        r = nb.distances
        b, n, m = r.shape
        bn = b * n
        dt, dev = r.dtype, r.device
        s, npt = self.n_species, self.n_pair_types
        _, coef, degree = self._monomials
        u = (nb.vectors / r[..., None]).reshape(bn, m, 3)
        d = self._max_degree
        x, y, z = u[..., 0:1], u[..., 1:2], u[..., 2:3]
        deg = [torch.ones_like(x)]  # monomials of degree n, in the order of _monomials
        for k in range(1, d + 1):
            prev = deg[-1]
            deg.append(torch.cat([x * prev, y * prev[..., -k:], z * prev[..., -1:]], dim=-1))
        mono = torch.cat(deg, dim=-1)  # (BN, M, K)
        etas = torch.as_tensor(self._etas, dtype=dt, device=dev)
        rr = r.reshape(bn, m)
        w = torch.exp(-etas * (rr * rr)[..., None]) * fc[..., None]  # (BN, M, E)
        ne = len(etas)
        if spec is not None:
            onehot = torch.nn.functional.one_hot(spec, s).to(dt)  # (BN, M, S)
            w = (w[..., :, None] * onehot[..., None, :]).reshape(bn, m, ne * s)
        mom = (w.transpose(1, 2) @ mono).transpose(1, 2).reshape(bn, -1, ne, s)  # (BN,K,E,S)
        self_sq = ((w * w).sum(1)).reshape(bn, ne, s)  # sum_j w_j^2 (cos = 1 terms)
        coef_t = torch.as_tensor(coef, dtype=dt, device=dev)
        deg_t = torch.as_tensor(degree, device=dev)
        # S_n^{AB} = sum_{deg a = n} coef_a M_a^A M_a^B: (BN, D+1, E, S, S)
        prod = coef_t[None, :, None, None, None] * mom[..., :, None] * mom[..., None, :]
        full = prod.new_zeros(bn, d + 1, ne, s, s).index_add_(1, deg_t, prod)
        hi, lo = np.tril_indices(s)  # pair types in DScribe's order hi (hi+1)/2 + lo
        order = np.argsort(hi * (hi + 1) // 2 + lo)
        hi, lo = hi[order], lo[order]
        pairs = full[..., hi, lo]  # (BN, D+1, E, T)
        same = torch.as_tensor(hi == lo, device=dev)
        diag = self_sq[..., lo]  # (BN, E, T): used only where hi == lo
        pairs = torch.where(same, 0.5 * (pairs - diag[:, None]), pairs)
        # G5 per parameter row
        out = []
        for eta, zeta, lam in self.g5_params:
            k = int(round(zeta))
            ei = int(np.searchsorted(self._etas, eta))
            c = torch.as_tensor([math.comb(k, j) * float(lam) ** j for j in range(k + 1)],
                                dtype=dt, device=dev)
            out.append(2.0 ** (1 - k) * (c[None, :, None] * pairs[:, :k + 1, ei]).sum(1))
        return torch.stack(out, dim=-1)  # (BN, T, n_g5)

    # -- pooled global fingerprint ------------------------------------------------------------
    def pooled_batch(self, positions, numbers, cell=None, pbc=None,
                     pooling: Sequence[str] = ("max", "min")) -> torch.Tensor:
        """Global fingerprints ``(B, len(pooling) * F)`` (differentiable), by default max over
        atoms then min over atoms."""
        return pool(self.forward_batch(positions, numbers, cell, pbc), pooling)

    def pooled(self, atoms: Atoms, pooling: Sequence[str] = ("max", "min")) -> np.ndarray:
        """Permutation-invariant global fingerprint of one structure: ``[max over atoms, min over
        atoms]`` by default (the fingerprint of the ACSF-inversion paper), ``len(pooling) * F``."""
        return pool(torch.as_tensor(self.compute(atoms)), pooling, atom_dim=0).numpy()

    def pooled_many(self, images, pooling: Sequence[str] = ("max", "min")) -> np.ndarray:
        """Pooled fingerprints of many structures, ``(n_images, len(pooling) * F)``, batched."""
        fn = lambda p, z, c, pbc: self.pooled_batch(p, z, c, pbc, pooling)  # noqa: E731
        return np.stack(self._batched(images, fn))


def _monomials(max_degree: int):
    """Exponents ``(a1, a2, a3)`` of all monomials of degree 0..``max_degree``, their
    multinomial coefficients ``n! / (a1! a2! a3!)`` and degrees."""
    exps, coef, degree = [], [], []
    for n in range(max_degree + 1):
        for a1 in range(n, -1, -1):
            for a2 in range(n - a1, -1, -1):
                a3 = n - a1 - a2
                exps.append((a1, a2, a3))
                coef.append(math.factorial(n) // (math.factorial(a1) * math.factorial(a2)
                                                  * math.factorial(a3)))
                degree.append(n)
    return np.array(exps, dtype=np.int64), np.array(coef, dtype=np.float64), \
        np.array(degree, dtype=np.int64)


def _int_power(base: torch.Tensor, k: int, cache: dict, lam) -> torch.Tensor:
    """``base ** k`` for a positive integer ``k`` by repeated squaring (cached per lambda)."""
    result = None
    bit = 0
    while k:
        key = (lam, bit)
        sq = cache.get(key)
        if sq is None:
            sq = base if bit == 0 else cache[(lam, bit - 1)] * cache[(lam, bit - 1)]
            cache[key] = sq
        if k & 1:
            result = sq if result is None else result * sq
        k >>= 1
        bit += 1
    return result
