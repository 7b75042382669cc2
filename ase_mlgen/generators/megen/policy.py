"""Rotation-covariant actor-critic of MeGen, in the spirit of Simm et al. (ICML 2021,
"Symmetry-aware actor-critic for 3D molecular design").

* An equivariant network (e3nn spherical harmonics and irreps) embeds the canvas and the bag:
  every atom gets scalars (``0e``) and covariant features ``K×(0e + 1o + 2e + 3o)`` — a learned
  neighbour-density expansion in spherical harmonics (:class:`DensityLayer`, two passes, the
  second conditioned on the scalars of the first); the bag (counts per element, next element,
  canvas size) enters as scalars.
* **Focal atom** — uniform over the canvas (the paper's choice, for exploration), or learned
  (``focal="learned"``: a softmax over the atoms' invariant features).
* **Distance** — a mixture density network on invariant features: ``M`` Gaussians with predicted
  weights and means and global learnable widths; a sample is clipped at zero.
* **Direction** — a distribution on the sphere whose log-density is a spherical-harmonic expansion
  ``log p(x̂) = Σ_lm c_lm(f, d) Y_lm(x̂) − log Z`` with coefficients ``c`` built equivariantly from
  the focal atom's covariant features and the sampled distance (a tensor product with a radial
  embedding of ``d``). It is sampled exactly on a fine quasi-uniform (Fibonacci) grid of ``G``
  directions; its log-probability is the categorical one on that grid (``log_density`` adds
  ``log(G/4π)`` to turn it into a density per steradian).
* **Critic** — an MLP on pooled invariant features.

Rotating the canvas by ``R`` rotates the direction distribution (``p(R x̂ | R C) = p(x̂ | C)``)
and leaves focal, distance probabilities and value unchanged; ``tests/test_megen.py`` checks it
with ``e3nn.o3.rand_matrix``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from e3nn import o3
from torch import nn


def fibonacci_sphere(n: int) -> torch.Tensor:
    """``n`` quasi-uniform unit vectors (equal-area Fibonacci lattice), ``[n, 3]``."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi),
                        torch.cos(phi)], dim=-1).float()


def gaussian_basis(r: torch.Tensor, start: float, stop: float, n: int) -> torch.Tensor:
    centres = torch.linspace(start, stop, n, device=r.device, dtype=r.dtype)
    width = (stop - start) / max(n - 1, 1)
    return torch.exp(-0.5 * ((r[..., None] - centres) / width) ** 2)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


@dataclass
class GraphBatch:
    """Flat graph batch of ``B`` canvases (``Ntot`` atoms)."""

    pos: torch.Tensor          # [Ntot, 3] Å
    species: torch.Tensor      # [Ntot] index into the policy's species
    batch: torch.Tensor        # [Ntot] structure index
    globals: torch.Tensor      # [B, n_global]
    offsets: torch.Tensor      # [B] first atom of each structure
    counts: torch.Tensor       # [B] atoms per structure
    src: torch.Tensor          # [E]
    dst: torch.Tensor          # [E]

    @property
    def n_graphs(self) -> int:
        return len(self.counts)


class DensityLayer(nn.Module):
    """One pass of equivariant neighbour-density features (an ACE/SOAP-like atomic expansion).

    For atom ``i`` and channel ``k``: ``A_ik,lm = Σ_j w_k(r_ij, s_j) Y_lm(r̂_ij)`` — covariant
    features of irreps ``K×(0e + 1o + 2e + …)`` — with radial weights ``w`` from an MLP on a radial
    basis and the neighbour's scalars ``s_j``. The invariant power spectrum ``Σ_m A_ik,lm²``
    updates the scalars (residual MLP). Everything is elementwise products and one
    ``index_add`` over edges, so it is cheap on a CPU.
    """

    def __init__(self, n_scalars: int, n_channels: int, n_radial: int, lmax: int,
                 avg_neighbours: float = 8.0):
        super().__init__()
        self.n_channels, self.lmax = n_channels, lmax
        self.radial = _mlp([n_radial + n_scalars, 32, n_channels])
        self.update = _mlp([n_scalars + n_channels * (lmax + 1), 64, n_scalars])
        self.norm = 1.0 / math.sqrt(avg_neighbours)

    def forward(self, s, sh, radial, envelope, src, dst):
        w = self.radial(torch.cat([radial, s[src]], -1)) * envelope[:, None]     # [E, K]
        a = torch.zeros(s.shape[0], self.n_channels, sh.shape[1], dtype=s.dtype,
                        device=s.device)
        a.index_add_(0, dst, w[:, :, None] * sh[:, None, :])
        a = a * self.norm                                                          # [N, K, D]
        power = torch.stack([a[:, :, l * l:(l + 1) ** 2].pow(2).sum(-1)
                             for l in range(self.lmax + 1)], -1)                   # [N, K, L+1]
        s = s + self.update(torch.cat([s, power.flatten(1)], -1))
        return s, a


def covariant_to_irreps(a: torch.Tensor, lmax: int) -> torch.Tensor:
    """``[N, K, (lmax+1)²]`` → e3nn layout of ``K×0e + K×1o + K×2e + …`` (``[N, K·(lmax+1)²]``)."""
    return torch.cat([a[:, :, l * l:(l + 1) ** 2].reshape(a.shape[0], -1)
                      for l in range(lmax + 1)], -1)


class MeGenPolicy(nn.Module):
    """Actor-critic network; see the module docstring.

    Parameters
    ----------
    species:
        Chemical symbols the policy can handle (canvas and bag).
    bond_length:
        Typical nearest-neighbour distance in Å (initial centre of the distance mixture).
    cutoff:
        Neighbour cut-off of the message passing, Å.
    lmax:
        Highest degree of the covariant features and of the direction expansion.
    n_scalars, n_vectors:
        Multiplicity of ``0e`` features and of each ``l ≥ 1`` feature.
    n_mixtures:
        ``M`` Gaussians of the distance head.
    n_directions:
        Size ``G`` of the spherical grid on which directions are sampled.
    focal:
        ``"random"`` (paper) or ``"learned"``.
    windows:
        Placement windows ``((lo, hi), …)`` in Å of the first, second, … nearest canvas
        neighbour of a new atom (:class:`~ase_mlgen.generators.megen.env.PlacementRules`). When
        given, the direction distribution is restricted to the grid directions whose placement
        obeys them at the chosen focal atom and distance (an action mask; exactly covariant,
        since it is computed from the geometry). When no direction obeys them, the distribution is
        left unmasked and the environment's penalty applies. ``None``: no mask (the paper's
        setting, where the policy learns the rules from the penalty alone).
    """

    def __init__(self, species: Sequence[str] = ("Ga",), bond_length: float = 2.7,
                 cutoff: float = 5.0, lmax: int = 3, n_scalars: int = 32, n_vectors: int = 16,
                 n_layers: int = 2, n_radial: int = 10, n_mixtures: int = 4,
                 n_directions: int = 2048, focal: str = "random", max_atoms: int = 64,
                 windows: Sequence[Sequence[float]] | None = None):
        super().__init__()
        if focal not in ("random", "learned"):
            raise ValueError(f"focal must be 'random' or 'learned', got {focal!r}")
        self.config = dict(species=list(species), bond_length=bond_length, cutoff=cutoff,
                           lmax=lmax, n_scalars=n_scalars, n_vectors=n_vectors,
                           n_layers=n_layers, n_radial=n_radial, n_mixtures=n_mixtures,
                           n_directions=n_directions, focal=focal, max_atoms=max_atoms,
                           windows=None if windows is None
                           else [[float(lo), float(hi)] for lo, hi in windows])
        self.windows = self.config["windows"]
        self.species = list(species)
        self.index = {s: i for i, s in enumerate(self.species)}
        self.bond_length, self.cutoff, self.lmax = bond_length, cutoff, lmax
        self.n_radial, self.focal_mode, self.max_atoms = n_radial, focal, max_atoms
        n_sp = len(self.species)
        self.n_global = 2 * n_sp + 2          # bag counts, next element, canvas size, bag size
        self.n_scalars = n_scalars

        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.embed = nn.Linear(n_sp + self.n_global, n_scalars)
        self.layers = nn.ModuleList(DensityLayer(n_scalars, n_vectors, n_radial, lmax)
                                    for _ in range(n_layers))
        #: covariant features of the last layer, ``K×(0e + 1o + 2e + …)``
        self.irreps_node = o3.Irreps([(n_vectors, (l, (-1) ** l)) for l in range(lmax + 1)])

        ctx = 2 * n_scalars + self.n_global   # pooled scalars (mean) + focal/atom scalars + globals
        self.focal_head = _mlp([ctx, 64, 1])
        self.mdn = _mlp([ctx, 64, 2 * n_mixtures])
        self.log_sigma = nn.Parameter(torch.full((n_mixtures,), math.log(0.15)))
        # spread the initial means over the first-neighbour window
        with torch.no_grad():
            last = self.mdn[-1]
            last.weight[n_mixtures:].mul_(0.1)
            last.bias[n_mixtures:] = torch.linspace(-0.6, 0.6, n_mixtures)
            last.weight[:n_mixtures].mul_(0.1)
            last.bias[:n_mixtures] = 0.0
        self.n_dist_basis = 8
        self.irreps_dir = self.irreps_sh
        # c = Σ_k a_k(d, s_f) A_f,k: an e3nn tensor product of the covariant features with
        # invariants (a radial embedding of d and the focal atom's scalars)
        self.dir_head = o3.FullyConnectedTensorProduct(
            self.irreps_node, o3.Irreps(f"{self.n_dist_basis + n_scalars}x0e"), self.irreps_dir)
        self.critic = _mlp([n_scalars + self.n_global, 64, 64, 1])
        self.register_buffer("grid", fibonacci_sphere(n_directions))
        self.register_buffer("grid_sh", o3.spherical_harmonics(self.irreps_sh, self.grid, True,
                                                               normalization="component"))

    # -- inputs --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.grid.device

    def make_batch(self, canvases: Sequence, bags: Sequence[Sequence[str]]) -> GraphBatch:
        """Batch from canvases (``Atoms`` or ``(symbols, positions)``) and bags (symbol lists)."""
        pos_list, sp_list, glob = [], [], []
        n_sp = len(self.species)
        for canvas, bag in zip(canvases, bags):
            symbols = canvas.get_chemical_symbols() if hasattr(canvas, "get_chemical_symbols") \
                else list(canvas[0])
            positions = canvas.get_positions() if hasattr(canvas, "get_positions") \
                else np.asarray(canvas[1])
            try:
                sp = [self.index[s] for s in symbols]
                bag_idx = [self.index[s] for s in bag]
            except KeyError as exc:
                raise ValueError(f"the MeGen policy knows the elements {self.species}; got "
                                 f"{exc.args[0]!r}") from None
            g = np.zeros(self.n_global, dtype=np.float32)
            for i in bag_idx:
                g[i] += 1.0 / 10.0
            if bag_idx:
                g[n_sp + bag_idx[0]] = 1.0
            g[2 * n_sp] = len(symbols) / self.max_atoms
            g[2 * n_sp + 1] = len(bag_idx) / self.max_atoms
            pos_list.append(np.asarray(positions, dtype=np.float32))
            sp_list.append(np.asarray(sp, dtype=np.int64))
            glob.append(g)
        counts = np.array([len(p) for p in pos_list])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # edges: padded pairwise distances, vectorised over the batch
        nmax = int(counts.max())
        pad = np.zeros((len(counts), nmax, 3), dtype=np.float32)
        mask = np.zeros((len(counts), nmax), dtype=bool)
        for b, p in enumerate(pos_list):
            pad[b, :len(p)] = p
            mask[b, :len(p)] = True
        d = np.linalg.norm(pad[:, :, None] - pad[:, None, :], axis=-1)
        ok = (d < self.cutoff) & mask[:, :, None] & mask[:, None, :]
        ok &= ~np.eye(nmax, dtype=bool)[None]
        b_idx, i_idx, j_idx = np.nonzero(ok)
        dev = self.device
        return GraphBatch(
            pos=torch.as_tensor(np.concatenate(pos_list), device=dev),
            species=torch.as_tensor(np.concatenate(sp_list), device=dev),
            batch=torch.as_tensor(np.repeat(np.arange(len(counts)), counts), device=dev),
            globals=torch.as_tensor(np.stack(glob), device=dev),
            offsets=torch.as_tensor(offsets, device=dev),
            counts=torch.as_tensor(counts, device=dev),
            src=torch.as_tensor(offsets[b_idx] + j_idx, device=dev),
            dst=torch.as_tensor(offsets[b_idx] + i_idx, device=dev))

    # -- network -------------------------------------------------------------------------------
    def encode(self, g: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features ``[Ntot, n_scalars + irreps_node.dim]`` (scalars first, then the
        covariant features in e3nn layout) and graph context ``[B, n_scalars + n_global]``."""
        onehot = nn.functional.one_hot(g.species, len(self.species)).float()
        s = self.embed(torch.cat([onehot, g.globals[g.batch]], dim=-1))
        vec = g.pos[g.src] - g.pos[g.dst]
        r = vec.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, True, normalization="component")
        envelope = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        radial = gaussian_basis(r, 0.0, self.cutoff, self.n_radial)
        a = None
        for layer in self.layers:
            s, a = layer(s, sh, radial, envelope, g.src, g.dst)
        h = torch.cat([s, covariant_to_irreps(a, self.lmax)], -1)
        pooled = torch.zeros(g.n_graphs, self.n_scalars, device=s.device, dtype=s.dtype)
        pooled.index_add_(0, g.batch, s)
        pooled = pooled / g.counts[:, None].to(s.dtype)
        return h, torch.cat([pooled, g.globals], dim=-1)

    def value(self, context: torch.Tensor) -> torch.Tensor:
        return self.critic(context).squeeze(-1)

    def focal_logits(self, g: GraphBatch, h, context) -> torch.Tensor:
        """Padded focal logits ``[B, Nmax]`` (−inf on padding); uniform for ``focal='random'``."""
        nmax = int(g.counts.max())
        local = torch.arange(len(g.batch), device=g.batch.device) - g.offsets[g.batch]
        out = torch.full((g.n_graphs, nmax), -torch.inf, device=h.device)
        if self.focal_mode == "random":
            vals = torch.zeros(len(g.batch), device=h.device)
        else:
            vals = self.focal_head(torch.cat([h[:, :self.n_scalars], context[g.batch]],
                                             -1)).squeeze(-1)
        out[g.batch, local] = vals
        return out

    def distance_mixture(self, h_f, context) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-weights ``[B, M]``, means ``[B, M]`` (Å) and widths ``[M]`` (Å)."""
        raw = self.mdn(torch.cat([h_f[:, :self.n_scalars], context], -1))
        m = raw.shape[-1] // 2
        logw = torch.log_softmax(raw[:, :m], -1)
        means = self.bond_length * (1.0 + 0.5 * torch.tanh(raw[:, m:]))
        return logw, means, self.log_sigma.exp().clamp(min=1e-3)

    @staticmethod
    def mixture_log_prob(d, logw, means, sigma) -> torch.Tensor:
        z = (d[:, None] - means) / sigma
        comp = -0.5 * z ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(logw + comp, -1)

    def direction_coefficients(self, h_f, d) -> torch.Tensor:
        """Spherical-harmonic coefficients ``[B, (lmax+1)²]`` of the direction log-density."""
        emb = gaussian_basis(d, 0.5 * self.bond_length, 2.0 * self.bond_length,
                             self.n_dist_basis)
        scalars = h_f[:, :self.n_scalars]
        return self.dir_head(h_f[:, self.n_scalars:], torch.cat([emb, scalars], -1))

    def direction_logits(self, coeffs, directions: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised log-density at ``directions`` (``[G,3]`` or ``[B,G,3]``; the grid when
        ``None``): ``Σ_lm c_lm Y_lm(x̂)``."""
        if directions is None:
            return coeffs @ self.grid_sh.T
        sh = o3.spherical_harmonics(self.irreps_sh, directions, True, normalization="component")
        if sh.dim() == 2:
            return coeffs @ sh.T
        return torch.einsum("bk,bgk->bg", coeffs, sh)

    def placement_mask(self, g: GraphBatch, focal: torch.Tensor, distance: torch.Tensor,
                       directions: torch.Tensor | None = None,
                       fallback: bool = True) -> torch.Tensor | None:
        """``[B, G]`` True where ``r_f + d·x̂`` obeys the placement windows (grid directions
        when ``directions`` is None); with ``fallback``, rows without any such direction are all
        True. ``None`` without windows."""
        if not self.windows:
            return None
        nmax = int(g.counts.max())
        local = torch.arange(len(g.batch), device=g.batch.device) - g.offsets[g.batch]
        canvas = g.pos.new_zeros((g.n_graphs, nmax, 3))
        present = torch.zeros((g.n_graphs, nmax), dtype=torch.bool, device=g.pos.device)
        canvas[g.batch, local] = g.pos
        present[g.batch, local] = True
        x = self.grid if directions is None else directions
        origin = g.pos[g.offsets + focal]
        cand = origin[:, None, :] + distance.to(g.pos.dtype)[:, None, None] * x.to(g.pos.dtype)
        d = torch.cdist(cand, canvas)                                   # [B, G, N]
        d = d.masked_fill(~present[:, None, :], torch.inf)
        k = min(len(self.windows), nmax)
        nearest = torch.topk(d, k, dim=-1, largest=False).values         # ascending
        ok = torch.ones(cand.shape[:2], dtype=torch.bool, device=cand.device)
        for j in range(k):
            lo, hi = self.windows[j]
            applies = (g.counts > j)[:, None]
            ok &= ~applies | ((nearest[..., j] >= lo) & (nearest[..., j] <= hi))
        return ok | ~ok.any(-1, keepdim=True) if fallback else ok

    def log_density_offset(self) -> float:
        """Add to a grid log-probability to obtain a density per steradian."""
        return math.log(self.grid.shape[0] / (4 * math.pi))

    # -- acting --------------------------------------------------------------------------------
    def forward(self, g: GraphBatch, focal=None, distance=None, dir_index=None,
                generator: torch.Generator | None = None, greedy: bool = False) -> dict:
        """Sample actions (when ``focal``… are ``None``) or score the given ones.

        Returns a dict with ``focal`` (index within its canvas), ``distance`` (Å), ``dir_index``
        (grid index), ``direction`` (unit vector), ``log_prob`` (sum of the three parts, also
        given separately), ``entropy`` and ``value``.
        """
        h, context = self.encode(g)
        value = self.value(context)
        flog = torch.log_softmax(self.focal_logits(g, h, context), -1)
        sample = focal is None
        if sample:
            if greedy and self.focal_mode == "learned":
                focal = flog.argmax(-1)
            else:
                focal = torch.multinomial(flog.exp(), 1, generator=generator).squeeze(-1)
        focal = torch.as_tensor(focal, device=h.device).long()
        lp_focal = flog.gather(1, focal[:, None]).squeeze(1)
        p_focal = flog.exp()
        ent_focal = -(p_focal * torch.where(p_focal > 0, flog, torch.zeros_like(flog))).sum(-1)
        h_f = h[g.offsets + focal]

        logw, means, sigma = self.distance_mixture(h_f, context)
        if sample:
            k = (torch.multinomial(logw.exp(), 1, generator=generator).squeeze(-1) if not greedy
                 else logw.argmax(-1))
            mu = means.gather(1, k[:, None]).squeeze(1)
            noise = torch.randn(mu.shape, generator=generator, device=mu.device) \
                if not greedy else torch.zeros_like(mu)
            distance = (mu + sigma[k] * noise).clamp(min=0.0).detach()
        distance = torch.as_tensor(distance, device=h.device, dtype=h.dtype)
        lp_dist = self.mixture_log_prob(distance, logw, means, sigma)
        # entropy bound of the mixture: H(weights) + Σ w_k H(N_k)
        ent_dist = (-(logw.exp() * logw).sum(-1)
                    + (logw.exp() * (0.5 * math.log(2 * math.pi * math.e) + torch.log(sigma)))
                    .sum(-1))

        coeffs = self.direction_coefficients(h_f, distance)
        logits = self.direction_logits(coeffs)
        allowed = self.placement_mask(g, focal, distance)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, -torch.inf)
        dlog = torch.log_softmax(logits, -1)
        if sample:
            dir_index = (dlog.argmax(-1) if greedy
                         else torch.multinomial(dlog.exp(), 1, generator=generator).squeeze(-1))
        dir_index = torch.as_tensor(dir_index, device=h.device).long()
        lp_dir = dlog.gather(1, dir_index[:, None]).squeeze(1)
        p_dir = dlog.exp()
        ent_dir = -(p_dir * torch.where(p_dir > 0, dlog, torch.zeros_like(dlog))).sum(-1)
        return dict(focal=focal, distance=distance, dir_index=dir_index,
                    direction=self.grid[dir_index], log_prob=lp_focal + lp_dist + lp_dir,
                    log_prob_focal=lp_focal, log_prob_distance=lp_dist,
                    log_prob_direction=lp_dir, entropy=ent_focal + ent_dist + ent_dir,
                    value=value)

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {"config": self.config, "state_dict": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict, device="cpu") -> "MeGenPolicy":
        policy = cls(**state["config"])
        policy.load_state_dict(state["state_dict"])
        return policy.to(device)
