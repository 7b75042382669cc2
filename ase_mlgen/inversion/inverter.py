"""Positions from fingerprints by gradient descent (Fung et al., Mach. Learn.: Sci. Technol. 3,
045018, 2022, Algorithm 1).

:class:`ACSFInverter` takes any differentiable descriptor of :mod:`ase_mlgen.descriptors` (ACSF,
SphericalBessel, smooth TAD …) and a target fingerprint, and searches Cartesian positions whose
fingerprint matches it:

1. ``n_init`` random initial structures (uniform inside the cell for periodic systems, inside a
   compact box whose volume follows the covalent radii for clusters and molecules);
2. Adam on the positions, minimising the L1 distance between the current and the target
   fingerprint (learning rate decays with a cosine schedule inside each stage);
3. ``n_hops`` random hops: every initialisation jumps from its best structure so far by a random
   displacement and is optimised again; a hop is kept when it lowers the loss;
4. the best structure over all initialisations and hops is returned with its loss in
   ``atoms.info["reconstruction_loss"]``.

All initialisations form one batch ``(n_init, N, 3)`` that goes through the descriptor's
``forward_batch`` at once (on CUDA when present).

**Per-atom fingerprints and permutations.** A per-atom fingerprint ``(N, F)`` is invariant to
permutations of atoms of the same element only as a set: row ``i`` of the target does not have to
belong to atom ``i``. The inverter therefore re-assigns the rows of the target to the atoms, within
each element separately, by optimal assignment (Hungarian algorithm on the L1 distances between
current and target rows) at the start of every stage and every ``assign_every`` steps. The loss is
then the L1 distance under that assignment; the returned structure is in the order of
``numbers`` (atom ``i`` has element ``numbers[i]``), not necessarily in the row order of the target.

**Pooled fingerprints.** With ``pooling=("max", "min")`` (any of ``max``, ``min``, ``mean``,
``sum``) the target is the concatenation of the pooled per-atom fingerprints over all atoms — the
global fingerprint of the paper; the per-atom descriptor of the current structure is pooled the
same way before the loss. Pooling loses information, so large structures cannot always be
recovered uniquely from a pooled vector.

**Invalid fingerprints** (e.g. generated ones that no structure has) end with a high loss; callers
filter on ``atoms.info["reconstruction_loss"]`` (see :attr:`ACSFInverter.loss_threshold`).
"""
from __future__ import annotations

import inspect
import math
import time
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers as _atomic_numbers
from ase.data import covalent_radii

from ase_mlgen.inversion.symmetric_search import symmetric_candidates
from ase_mlgen.utils.device import resolve_device

_POOLS = ("max", "min", "mean", "sum")
#: the symmetric search's Adam steps end once a loss is below this many times the tolerance
SYMMETRIC_STOP = 10.0
#: learning rate of the refined starts, as a fraction of ``lr``
REFINE_LR = 0.2


def parse_numbers(numbers) -> np.ndarray:
    """Atomic numbers from a list of numbers/symbols or a compact string ``"78x10"``,
    ``"Pt10"``-style formulas (``"Na4Cl4"``) or ``"8,1,1"``."""
    if isinstance(numbers, str):
        text = numbers.strip()
        if "x" in text and text.replace("x", "").replace(",", "").isdigit():
            out = []
            for part in text.split(","):
                z, _, n = part.partition("x")
                out += [int(z)] * int(n or 1)
            return np.array(out, dtype=int)
        if text.replace(",", "").replace(" ", "").isdigit():
            return np.array([int(t) for t in text.replace(",", " ").split()], dtype=int)
        return Atoms(text).numbers.copy()
    out = []
    for z in numbers:
        out.append(_atomic_numbers[z] if isinstance(z, str) else int(z))
    return np.asarray(out, dtype=int)


def pool_fingerprint(per_atom: torch.Tensor, pooling: Sequence[str]) -> torch.Tensor:
    """Pool ``(..., N, F)`` over atoms into ``(..., len(pooling) * F)`` (ops concatenated)."""
    parts = []
    for op in pooling:
        if op == "max":
            parts.append(per_atom.amax(dim=-2))
        elif op == "min":
            parts.append(per_atom.amin(dim=-2))
        elif op == "mean":
            parts.append(per_atom.mean(dim=-2))
        elif op == "sum":
            parts.append(per_atom.sum(dim=-2))
        else:
            raise ValueError(f"unknown pooling {op!r}; use any of {_POOLS}")
    return torch.cat(parts, dim=-1)


def compact_box_length(numbers: Sequence[int], packing: float = 1.45) -> float:
    """Edge (Å) of a cube holding the atoms at about their condensed-phase density.

    Each atom takes ``packing`` × the volume of its covalent sphere (1.45 gives the fcc-Pt volume).
    """
    r = covalent_radii[np.asarray(numbers, dtype=int)]
    volume = packing * np.sum(4.0 / 3.0 * np.pi * r ** 3)
    return float(max(volume ** (1.0 / 3.0), 1.0))


class _Adam:
    """Adam on one tensor (Kingma & Ba), in place; non-finite gradients count as zero.

    Written out (a few lines) instead of ``torch.optim.Adam``, whose first use imports
    ``torch._dynamo`` (seconds of start-up on a busy machine).
    """

    def __init__(self, param: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param = param
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        g = torch.nan_to_num(self.param.grad, nan=0.0, posinf=0.0, neginf=0.0)
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        self.param.sub_(lr * mhat / (vhat.sqrt() + self.eps))


class ACSFInverter:
    """Reconstruct structures from (per-atom or pooled) fingerprints — the paper's Algorithm 1.

    Parameters
    ----------
    descriptor:
        a differentiable descriptor with ``forward_batch(positions (B,N,3), numbers (N,),
        cell (B,3,3) | None, pbc) -> (B,N,F)`` (or at least ``forward(positions, numbers, cell,
        pbc) -> (N,F)``, then looped over the batch).
    n_init:
        number of random initialisations, optimised together as one batch.
    n_hops:
        random hops after the first optimisation of each initialisation.
    steps:
        Adam steps per stage (the first optimisation and each hop).
    lr:
        Adam learning rate (Å per step, roughly); cosine-decayed to ``lr * 0.01`` within a stage.
    pooling:
        ``None`` for per-atom fingerprints, or a tuple of ``"max"``, ``"min"``, ``"mean"``,
        ``"sum"`` for pooled global fingerprints (``("max", "min")`` in the paper).
    hop_size:
        standard deviation (Å) of the random displacement of a hop.
    tol:
        relative tolerance: the search stops once the best loss is below ``tol`` times the mean
        magnitude of the target fingerprint (the loss relative to that magnitude is reported as
        ``info["relative_loss"]``).
    loss_threshold:
        a reconstruction whose loss exceeds it is flagged ``info["valid"] = False``.
    feature_weights:
        ``None`` (plain L1 as in the paper), ``"auto"`` (each feature scaled by the inverse of its
        mean magnitude in the target, so small angular terms count as much as large radial ones)
        or an array of per-feature weights (length F, or the pooled length).
    assign_every:
        per-atom fingerprints: re-assign target rows to atoms every so many steps (0: never).
    patience:
        a stage ends early when no initialisation improved its loss by 1 % in this many steps.
    polish:
        L-BFGS iterations of a final smooth stage (0: none): the ``polish_top`` best structures
        minimise the *squared* fingerprint difference (same weights and assignment), which, unlike
        Adam on the L1 loss, converges to the exact minimum of the basin the search ended in; the
        result replaces a structure when its L1 loss is lower.
    init:
        initial structures of clusters and molecules: ``"grow"`` (random connected clusters at
        bonding distances, atom by atom), ``"compact"`` (grown onto the free hollow site with
        the most contacts: compact, close-packed-like) or ``"box"`` (uniform in the compact box,
        the paper's);
        ``"auto"``: grown for per-atom fingerprints, box for pooled ones (measured better for
        each). Periodic structures always start uniform in the cell.
    time_limit:
        seconds: no new step or hop starts after it (the polish gets a share of the remaining
        time, at least a few iterations); ``None``: no limit.
    relocate:
        per-atom fingerprints: atoms moved to random places by every other hop, chosen with
        probability proportional to the error of their fingerprint row.
    polish_top:
        how many of the best initialisations are polished (together, as one batch).
    stage_polish:
        L-BFGS iterations for the ``polish_top`` best structures of every stage but the last,
        before the next hop (0: only the final polish). Adam on the L1 loss often stops near a
        correct structure without reaching it; polishing each stage finds it hops earlier.
    compact_candidates:
        ``init="compact"``: free sites scored per added atom (more: more compact).
    relocate_to:
        where targeted hops move atoms of clusters: ``"box"`` (uniform in the compact box) or
        ``"site"`` (the free surface site with the most contacts, see :meth:`_site`).
    packing:
        volume per atom of the initial compact box, in units of the covalent-sphere volume.
    device, dtype:
        ``"auto"`` uses CUDA when present; float64 by default for sub-0.01 Å accuracy.
    search_dtype:
        dtype of the Adam stages (``None``: ``dtype``). ``torch.float32`` makes a batched
        descriptor step about 1.7× faster on CPU (16 × Pt55); the polishes and the returned
        losses stay in ``dtype``, which is where the sub-0.01 Å accuracy comes from.
    crossover:
        clusters and molecules: the share of initialisations that every hop replaces by
        cut-and-splice children (Deaven–Ho) of two of the better half, instead of hopping them
        (0: none). A child takes, per element, the atoms of one parent on one side of a random
        plane through its centre and the rest from the other, randomly rotated, parent, so that
        correct parts found by different initialisations can meet.
    symmetric_starts:
        clusters and molecules: random *symmetric* structures searched first (see
        :mod:`ase_mlgen.inversion.symmetric_search`); the best replace the first random starts,
        and the search ends there when one already matches to ``tol``. Per-atom fingerprints:
        only when rows repeat (symmetry-equivalent atoms), in the point groups that fit the
        numbers of equal rows. Pooled fingerprints (one element): symmetric hypotheses of
        every point group, those with the fewest free coordinates first. It may use half of
        ``time_limit``. ``None`` (default): 32 for per-atom fingerprints, 0 (off) for pooled
        ones; 0: never.
    symmetric_steps:
        Adam steps of the symmetric search (its patience and learning rate are the search's).
    refine:
        the share of initialisations that every hop restarts near the best structure so far
        instead of hopping them (the worst ones): displaced by ``refine_size`` (Å, standard
        deviation; one copy not at all), with Adam at ``0.2 * lr``. Near misses of a pooled
        search sit 0.1–0.3 Å from the target, in one of the shallow minima that max/min
        pooling leaves there (kinks wherever two atoms trade the max of a feature), and the
        hops jump far past the target. ``None`` (default): 0.25 for pooled fingerprints, 0
        (off) for per-atom ones.
    refine_size:
        displacement (Å) of the refinement starts.
    random_state:
        seed (int) or ``numpy.random.Generator``.
    """

    def __init__(self, descriptor, n_init: int = 10, n_hops: int = 5, steps: int = 150,
                 lr: float = 0.1, pooling: Sequence[str] | None = None, hop_size: float = 0.5,
                 tol: float = 3e-4, loss_threshold: float | None = None,
                 feature_weights=None, assign_every: int = 20, packing: float = 1.45,
                 patience: int = 40, polish: int = 300, polish_top: int = 3, relocate: int = 2,
                 stage_polish: int = 0,
                 init: str = "auto", compact_candidates: int = 32, relocate_to: str = "box",
                 time_limit: float | None = None,
                 device: str | torch.device = "auto",
                 dtype: torch.dtype = torch.float64,
                 search_dtype: torch.dtype | None = None, crossover: float = 0.0,
                 symmetric_starts: int | None = None, symmetric_steps: int = 300,
                 refine: float | None = None, refine_size: float = 0.1,
                 random_state=None, verbose: bool = False):
        if n_init < 1 or n_hops < 0 or steps < 1:
            raise ValueError("n_init >= 1, n_hops >= 0 and steps >= 1 are required")
        if pooling is not None:
            pooling = tuple(pooling)
            for op in pooling:
                if op not in _POOLS:
                    raise ValueError(f"unknown pooling {op!r}; use any of {_POOLS}")
        self.descriptor = descriptor
        self.n_init = int(n_init)
        self.n_hops = int(n_hops)
        self.steps = int(steps)
        self.lr = float(lr)
        self.pooling = pooling
        self.hop_size = float(hop_size)
        self.tol = float(tol)
        self.loss_threshold = loss_threshold
        self.feature_weights = feature_weights
        self.assign_every = int(assign_every)
        self.packing = float(packing)
        self.patience = max(int(patience), 1)
        self.polish = max(int(polish), 0)
        self.polish_top = max(int(polish_top), 1)
        self.stage_polish = max(int(stage_polish), 0)
        self.relocate = max(int(relocate), 1)
        if init not in ("auto", "grow", "compact", "box"):
            raise ValueError("init must be 'auto', 'grow', 'compact' or 'box'")
        if init == "auto":
            init = "grow" if pooling is None else "box"
        self.init = init
        self.compact_candidates = max(int(compact_candidates), 1)
        if relocate_to not in ("box", "site"):
            raise ValueError("relocate_to must be 'box' or 'site'")
        self.relocate_to = relocate_to
        if not 0.0 <= crossover < 1.0:
            raise ValueError(f"crossover must be in [0, 1); got {crossover}")
        self.crossover = float(crossover)
        if symmetric_starts is None:
            symmetric_starts = 32 if pooling is None else 0
        self.symmetric_starts = max(int(symmetric_starts), 0)
        self.symmetric_steps = max(int(symmetric_steps), 1)
        if refine is None:
            refine = 0.0 if pooling is None else 0.25
        if not 0.0 <= refine < 1.0:
            raise ValueError(f"refine must be in [0, 1); got {refine}")
        self.refine = float(refine)
        if refine_size <= 0:
            raise ValueError(f"refine_size must be > 0 (Å); got {refine_size}")
        self.refine_size = float(refine_size)
        self.time_limit = None if time_limit is None else float(time_limit)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.search_dtype = dtype if search_dtype is None else search_dtype
        self.rng = (random_state if isinstance(random_state, np.random.Generator)
                    else np.random.default_rng(random_state))
        self.verbose = verbose
        if hasattr(descriptor, "to"):
            try:
                descriptor.to(self.device)
            except Exception:  # a descriptor that is not an nn.Module
                pass

    # -- descriptor --------------------------------------------------------------------------
    def fingerprint(self, atoms: Atoms) -> np.ndarray:
        """The fingerprint of ``atoms`` as this inverter sees it (per-atom or pooled)."""
        pos = torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device)[None]
        cell = (torch.as_tensor(np.asarray(atoms.cell), dtype=self.dtype, device=self.device)[None]
                if atoms.pbc.any() else None)
        with torch.no_grad():
            fp = self._describe(pos, atoms.numbers, cell, atoms.pbc.any())[0]
            if self.pooling is not None:
                fp = pool_fingerprint(fp, self.pooling)
        return fp.cpu().numpy()

    def _describe(self, pos: torch.Tensor, numbers, cell, pbc) -> torch.Tensor:
        desc = self.descriptor
        pbc_arg = bool(pbc) if np.ndim(pbc) == 0 else tuple(bool(p) for p in pbc)
        if hasattr(desc, "forward_batch"):
            return desc.forward_batch(pos, numbers, cell, pbc_arg)
        return torch.stack([desc.forward(p, numbers, None if cell is None else cell[b], pbc_arg)
                            for b, p in enumerate(pos)])

    # -- public API ---------------------------------------------------------------------------
    def reconstruct_from(self, atoms: Atoms, **kwargs) -> Atoms:
        """Fingerprint ``atoms`` and reconstruct it (the convenience used in tests)."""
        fp = self.fingerprint(atoms)
        pbc = atoms.pbc.copy() if atoms.pbc.any() else False
        cell = np.asarray(atoms.cell) if atoms.pbc.any() else None
        return self.reconstruct(fp, atoms.numbers, cell=cell, pbc=pbc, **kwargs)

    def reconstruct(self, fingerprint, numbers, cell=None, pbc=False,
                    return_all: bool = False) -> Atoms | tuple[Atoms, list[Atoms]]:
        """Search positions whose fingerprint matches ``fingerprint``.

        ``fingerprint`` is ``(N, F)`` per atom (``pooling=None``) or the 1-D pooled vector.
        ``numbers`` are the atomic numbers (or symbols, or ``"78x10"``). ``cell``/``pbc`` make it
        periodic (minimum image through the descriptor). Returns the best :class:`ase.Atoms`
        with ``info["reconstruction_loss"]``, ``info["valid"]`` and ``info["seconds"]``;
        ``return_all=True`` also returns the best structure of every initialisation.
        """
        t0 = time.perf_counter()
        numbers = parse_numbers(numbers)
        n_atoms = len(numbers)
        dev, dt = self.device, self.dtype
        target = torch.as_tensor(np.asarray(fingerprint, dtype=float), dtype=dt, device=dev)
        if self.pooling is None:
            if target.ndim != 2 or target.shape[0] != n_atoms:
                raise ValueError(f"a per-atom fingerprint must have shape ({n_atoms}, F); got "
                                 f"{tuple(target.shape)} (pass pooling=... for pooled vectors)")
        elif target.ndim != 1:
            raise ValueError(f"a pooled fingerprint must be 1-D; got shape {tuple(target.shape)}")
        periodic = bool(np.any(pbc)) and cell is not None
        if bool(np.any(pbc)) and cell is None:
            raise ValueError("a periodic reconstruction needs a cell")
        cell_np = np.asarray(cell, dtype=float).reshape(3, 3) if cell is not None else None
        B = self.n_init
        cell_b = (torch.as_tensor(cell_np, dtype=dt, device=dev).expand(B, 3, 3).contiguous()
                  if periodic else None)
        pbc_arg = (np.asarray(pbc, dtype=bool) if np.ndim(pbc) else bool(pbc)) if periodic else False

        weights = self._weights(target)
        scale = float(target.abs().mean()) or 1.0
        tol_abs = self.tol * scale
        species_groups = [np.nonzero(numbers == z)[0] for z in np.unique(numbers)]

        # initial positions
        pos0 = self._initial_positions(numbers, cell_np if periodic else None, B)
        best_pos = pos0.copy()
        best_loss = np.full(B, np.inf)
        if self.symmetric_starts and not periodic:
            sym = self._symmetric(target, numbers, weights, t0, tol_abs)
            if sym is not None:  # symmetric candidates replace the first random starts
                k = min(len(sym), B)
                pos0[:k] = sym[:k]
                best_pos[:k] = sym[:k]
                best_loss[:k] = self._exact_losses(sym[:k], target, numbers, None, False,
                                                   weights, species_groups)
                if self.verbose:
                    print(f"symmetric starts: best {best_loss.min():.3e} "
                          f"({time.perf_counter() - t0:.1f} s)")
        solved = bool(best_loss.min() < tol_abs)
        # row assignment (per-atom): perm[b, i] = target row of atom i
        perm = np.tile(np.arange(n_atoms), (B, 1))
        # the Adam stages may run in a cheaper dtype (search_dtype); polish and losses in dt
        sdt = self.search_dtype
        target_s = target.to(sdt)
        weights_s = None if weights is None else weights.to(sdt)
        cell_s = None if cell_b is None else cell_b.to(sdt)

        def loss_of(pos_t, perm_t, tgt_all=target_s, w=weights_s, cell_t=cell_s):
            per_atom = self._describe(pos_t, numbers, cell_t, pbc_arg)
            if self.pooling is None:
                tgt = tgt_all[perm_t]  # (B, N, F)
                diff = (per_atom - tgt).abs()
                if w is not None:
                    diff = diff * w
                return diff.mean(dim=(1, 2)), per_atom
            pooled = pool_fingerprint(per_atom, self.pooling)
            diff = (pooled - tgt_all).abs()
            if w is not None:
                diff = diff * w
            return diff.mean(dim=1), per_atom

        def descend(start, lr0):
            """Adam from ``start`` (cosine-decayed from the learning rates ``lr0``, one per
            structure) for at most ``self.steps``: the best loss and positions of each."""
            nonlocal perm
            pos = torch.tensor(start, dtype=sdt, device=dev, requires_grad=True)
            lr_b = torch.as_tensor(lr0, dtype=sdt, device=dev)[:, None, None]
            opt = _Adam(pos)
            stage_best = np.full(B, np.inf)
            stage_pos = start.copy()
            last_check = stage_best.copy()
            for step in range(self.steps):
                lr = lr_b * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / self.steps)))
                if self.pooling is None and self.assign_every and step % self.assign_every == 0:
                    with torch.no_grad():
                        per_atom = self._describe(pos.detach(), numbers, cell_s, pbc_arg)
                    perm = self._assign(per_atom, target_s, species_groups, weights_s)
                perm_t = torch.as_tensor(perm, device=dev)
                loss, _ = loss_of(pos, perm_t)
                lv = loss.detach().cpu().numpy()
                improved = lv < stage_best
                if improved.any():
                    stage_best[improved] = lv[improved]
                    stage_pos[improved] = pos.detach().cpu().numpy()[improved]
                if np.all(stage_best < tol_abs) or (stage_best.min() < tol_abs
                                                    and step >= self.steps // 4):
                    break
                # stalled stage: no initialisation improved by 1 % over the last `patience` steps
                if step % self.patience == 0:
                    if step > 0 and np.all(stage_best > 0.99 * last_check):
                        break
                    last_check = stage_best.copy()
                if self._out_of_time(t0, 0.8):
                    break
                pos.grad = None
                loss.sum().backward()
                opt.step(lr)
            return stage_best, stage_pos

        n_stages = 0 if solved else self.n_hops + 1
        history = [] if not solved else [float(best_loss.min())]
        start = pos0
        lr0 = np.full(B, self.lr)
        for stage in range(n_stages):
            if stage > 0:
                start = self._hop(best_pos, stage, target, numbers, cell_b, pbc_arg, weights,
                                  species_groups, cell_np if periodic else None)
                if self.crossover and not periodic:
                    start = self._crossover(best_pos, best_loss, start, numbers)
                if self.refine:
                    start, lr0 = self._refine_starts(best_pos, best_loss, start)
            stage_best, stage_pos = descend(start, lr0)
            if self.stage_polish and stage < n_stages - 1 and not self._out_of_time(t0, 0.8):
                # L-BFGS on the best of this stage before the next hop: lands on the minimum of
                # the basin (the search's tolerance then stops the search once it is found)
                top = np.argsort(stage_best)[:min(self.polish_top, B)]
                new_pos, new_loss = self._polish(stage_pos[top], target, numbers, cell_np,
                                                 periodic, pbc_arg, weights, species_groups,
                                                 t0, iterations=self.stage_polish)
                better = new_loss < stage_best[top]
                stage_pos[top[better]] = new_pos[better]
                stage_best[top[better]] = new_loss[better]
            keep = stage_best < best_loss
            best_loss[keep] = stage_best[keep]
            best_pos[keep] = stage_pos[keep]
            history.append(float(best_loss.min()))
            if self.verbose:
                print(f"stage {stage}: best {best_loss.min():.3e} "
                      f"({time.perf_counter() - t0:.1f} s)")
            if best_loss.min() < tol_abs or self._out_of_time(t0, 0.8):
                break

        if self.polish and not solved:
            top = np.argsort(best_loss)[:min(self.polish_top, B)]
            new_pos, new_loss = self._polish(best_pos[top], target, numbers, cell_np, periodic,
                                             pbc_arg, weights, species_groups, t0)
            better = new_loss < best_loss[top]
            best_pos[top[better]] = new_pos[better]
            best_loss[top[better]] = new_loss[better]
            history.append(float(best_loss.min()))
            if self.verbose:
                print(f"polish: best {best_loss.min():.3e} "
                      f"({time.perf_counter() - t0:.1f} s)")

        if sdt != dt and not solved:  # losses of the search dtype -> exact losses in dt
            best_loss = self._exact_losses(best_pos, target, numbers, cell_b, pbc_arg, weights,
                                           species_groups)

        order = np.argsort(best_loss)
        structures = [self._to_atoms(best_pos[b], numbers, cell_np, pbc if periodic else False,
                                     best_loss[b], scale) for b in order]
        best = structures[0]
        best.info["seconds"] = time.perf_counter() - t0
        best.info["loss_history"] = history
        if return_all:
            return best, structures
        return best

    # -- helpers ------------------------------------------------------------------------------
    def _exact_losses(self, pos, target, numbers, cell_b, pbc_arg, weights, groups
                      ) -> np.ndarray:
        """Mean (weighted) L1 differences of the structures ``pos`` (B, N, 3) in the full dtype,
        per-atom rows under the optimal assignment."""
        with torch.no_grad():
            pos_t = torch.as_tensor(pos, dtype=self.dtype, device=self.device)
            cur = self._describe(pos_t, numbers, cell_b, pbc_arg)
            if self.pooling is None:
                perm = torch.as_tensor(self._assign(cur, target, groups, weights),
                                       device=self.device)
                diff = (cur - target[perm]).abs()
            else:
                diff = (pool_fingerprint(cur, self.pooling) - target).abs()
            if weights is not None:
                diff = diff * weights
        return diff.flatten(1).mean(1).cpu().numpy().astype(float)

    def _symmetric(self, target, numbers, weights, t0, tol_abs: float) -> np.ndarray | None:
        """Candidates from the symmetric search (:mod:`.symmetric_search`): a per-atom target
        whose rows repeat is first matched by structures of a point group that fits the groups
        of equal rows; ``None`` when no row repeats."""
        desc = self.descriptor
        subset = "centres" in inspect.signature(getattr(desc, "forward_batch",
                                                        lambda *a: None)).parameters

        def describe(pos, centres):
            if subset:
                return desc.forward_batch(pos, numbers, None, False, centres=centres)
            return self._describe(pos, numbers, None, False)[:, centres]

        deadline = None if self.time_limit is None else t0 + 0.5 * self.time_limit
        radius = 0.62 * compact_box_length(numbers, self.packing)  # sphere of the box volume
        found = symmetric_candidates(describe, target, numbers, weights, self.symmetric_starts,
                                     self.symmetric_steps, self.lr, radius, self.rng,
                                     self.search_dtype, pooling=self.pooling,
                                     polish=max(self.stage_polish, 200),
                                     polish_top=self.polish_top, patience=self.patience,
                                     assign_every=self.assign_every, deadline=deadline,
                                     stop_below=SYMMETRIC_STOP * tol_abs)
        return None if found is None else found[0]

    def _hop(self, best_pos, stage, target, numbers, cell_b, pbc_arg, weights, groups, cell):
        """Random hop from the best structures. Per-atom fingerprints tell which atoms sit in a
        wrong environment: on odd stages the ``relocate`` atoms with the largest row error
        (under the optimal row assignment) jump to random places (inside the compact box, or the
        cell), the others move by ``0.2 * hop_size``; even stages displace every atom by
        ``hop_size`` (the paper's hop). Pooled fingerprints always use the paper's hop."""
        B, n, _ = best_pos.shape
        targeted = self.pooling is None and n > 2 and stage % 2 == 1
        if not targeted:
            return best_pos + self.rng.normal(0.0, self.hop_size, size=best_pos.shape)
        with torch.no_grad():
            cur = self._describe(torch.as_tensor(best_pos, dtype=self.dtype, device=self.device),
                                 numbers, cell_b, pbc_arg)
            perm = torch.as_tensor(self._assign(cur, target, groups, weights), device=cur.device)
            err = (cur - target[perm]).abs()
            if weights is not None:
                err = err * weights
            err = err.sum(-1).cpu().numpy()  # (B, N)
        start = best_pos + self.rng.normal(0.0, 0.2 * self.hop_size, size=best_pos.shape)
        k = max(1, min(self.relocate, n // 3))
        length = compact_box_length(numbers, self.packing)
        for b in range(B):
            # sample the atoms to move with probability ~ error (the worst most likely)
            p = err[b] + 1e-12
            idx = self.rng.choice(n, size=k, replace=False, p=p / p.sum())
            if cell is not None:
                start[b, idx] = self.rng.random((k, 3)) @ cell
            elif self.relocate_to == "site":
                for i in idx:  # one after the other, each onto the best free surface site
                    others = np.setdiff1d(np.arange(n), [i])
                    start[b, i] = self._site(start[b], others, numbers, i)
            else:
                centre = best_pos[b].mean(axis=0)
                start[b, idx] = centre + (self.rng.random((k, 3)) - 0.5) * length
        return start

    def _crossover(self, best_pos, best_loss, start, numbers) -> np.ndarray:
        """Replace the worst ``crossover`` share of the starts by cut-and-splice children of two
        parents drawn from the better half (positions in Å, numbers fixed per element)."""
        B, n, _ = best_pos.shape
        n_child = int(round(self.crossover * B))
        if B < 4 or n < 4 or n_child < 1:
            return start
        order = np.argsort(best_loss)
        parents, worst = order[:max(B // 2, 2)], order[::-1][:n_child]
        numbers = np.asarray(numbers)
        start = start.copy()
        for slot in worst:
            a, b = self.rng.choice(parents, size=2, replace=False)
            pa = best_pos[a] - best_pos[a].mean(axis=0)
            pb = best_pos[b] - best_pos[b].mean(axis=0)
            q, r = np.linalg.qr(self.rng.normal(size=(3, 3)))  # random rotation of parent b
            pb = pb @ (q * np.sign(np.diag(r))).T
            u = self.rng.normal(size=3)
            u /= np.linalg.norm(u)
            child = np.empty_like(pa)
            from_b = np.zeros(n, dtype=bool)
            for z in np.unique(numbers):
                idx = np.flatnonzero(numbers == z)
                k = int(self.rng.integers(1, len(idx))) if len(idx) > 1 else int(
                    self.rng.integers(0, 2))
                top_a = idx[np.argsort(-(pa[idx] @ u))[:k]]          # a's atoms above the plane
                low_b = idx[np.argsort(pb[idx] @ u)[:len(idx) - k]]  # b's atoms below it
                child[idx] = np.concatenate([pa[top_a], pb[low_b]])
                from_b[idx[k:]] = True
            if from_b.any() and not from_b.all():  # move b's part off a's: no atoms on top of
                # each other (the descriptor's gradient is undefined there)
                d_nn = np.sort(np.linalg.norm(pa[:, None] - pa[None], axis=-1), axis=1)[:, 1]
                gap = 0.8 * float(np.median(d_nn))
                for _ in range(50):
                    d = np.linalg.norm(child[from_b][:, None] - child[~from_b][None], axis=-1)
                    if d.min() >= gap:
                        break
                    child[from_b] -= 0.1 * u
            start[slot] = child + best_pos[slot].mean(axis=0)
        return start

    def _site(self, pos, others, numbers, i, n_cand: int = 64) -> np.ndarray:
        """A free site (Å) for atom ``i`` on the surface of the atoms ``others``.

        ``n_cand`` random points at bonding distance from random atoms of ``others`` are pulled
        towards hollow sites (three fixed-point steps putting them at bonding distance from every
        atom within 1.4 × the bond); the one with the most contacts (atoms within 1.25 × the
        bond) that is not closer than 0.85 × the bond to any atom is returned (ties broken at
        random)."""
        r = covalent_radii[np.asarray(numbers)]
        p = pos[others]
        bond = r[others] + r[i]  # (K,)
        j = self.rng.integers(len(others), size=n_cand)
        v = self.rng.normal(size=(n_cand, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        cand = p[j] + v * bond[j, None] * self.rng.uniform(0.95, 1.05, size=(n_cand, 1))
        for _ in range(3):
            d = cand[:, None, :] - p[None, :, :]  # (C, K, 3)
            dist = np.linalg.norm(d, axis=-1) + 1e-9
            near = dist < 1.4 * bond
            push = ((bond - dist) / dist)[..., None] * d * near[..., None]
            cand = cand + push.sum(1) / np.maximum(near.sum(1), 1)[:, None]
        dist = np.linalg.norm(cand[:, None, :] - p[None, :, :], axis=-1)
        ok = np.all(dist >= 0.85 * bond, axis=1)
        score = np.sum(dist <= 1.25 * bond, axis=1) + 0.5 * self.rng.random(n_cand)
        score[~ok] = -1.0
        k = int(np.argmax(score))
        return cand[k] if score[k] >= 0 else cand[0]

    def _refine_starts(self, best_pos: np.ndarray, best_loss: np.ndarray, start: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Hop starts in which the worst ``refine`` share of the initialisations restart from
        the best structure so far, displaced by ``refine_size`` (Å; the first copy not at all),
        with ``REFINE_LR * lr``; returns the starts and each one's learning rate."""
        B = len(start)
        n_refine = int(round(self.refine * B))
        lr0 = np.full(B, self.lr)
        if n_refine < 1 or B < 2:
            return start, lr0
        worst = np.argsort(best_loss)[::-1][:min(n_refine, B - 1)]
        centre = best_pos[int(np.argmin(best_loss))]
        start = start.copy()
        start[worst] = centre + self.rng.normal(0.0, self.refine_size,
                                                size=(len(worst),) + centre.shape)
        start[worst[0]] = centre
        lr0[worst] = REFINE_LR * self.lr
        return start, lr0

    def _out_of_time(self, t0: float, share: float = 1.0) -> bool:
        return (self.time_limit is not None
                and time.perf_counter() - t0 > share * self.time_limit)

    def _polish(self, pos0, target, numbers, cell_np, periodic, pbc_arg, weights, groups,
                t0=None, iterations: int | None = None):
        """L-BFGS (scipy) on the summed squared fingerprint differences of a small batch;
        returns the positions and their L1 losses (the search's measure)."""
        from scipy.optimize import minimize

        dev, dt = self.device, self.dtype
        k = len(pos0)
        cell_k = (torch.as_tensor(cell_np, dtype=dt, device=dev).expand(k, 3, 3).contiguous()
                  if periodic else None)
        w = weights if weights is not None else None

        def describe(pos_t):
            per_atom = self._describe(pos_t, numbers, cell_k, pbc_arg)
            return per_atom if self.pooling is None else pool_fingerprint(per_atom, self.pooling)

        def perm_for(pos_np):
            if self.pooling is not None:
                return None
            with torch.no_grad():
                cur = self._describe(torch.as_tensor(pos_np, dtype=dt, device=dev), numbers,
                                     cell_k, pbc_arg)
            return torch.as_tensor(self._assign(cur, target, groups, weights), device=dev)

        def diff_of(pos_t, perm_t):
            fp = describe(pos_t)
            d = fp - (target if perm_t is None else target[perm_t])
            return d if w is None else d * w

        x = np.array(pos0, dtype=float)
        for rnd in range(2):  # re-assign rows once in between (per-atom fingerprints)
            perm_t = perm_for(x)

            def fun(flat):
                pos_t = torch.tensor(flat.reshape(x.shape), dtype=dt, device=dev,
                                     requires_grad=True)
                d = diff_of(pos_t, perm_t)
                f = (d * d).sum()
                f.backward()
                g = torch.nan_to_num(pos_t.grad).cpu().numpy().ravel()
                return float(f.detach()), g

            maxiter = (self.polish if iterations is None else iterations) // 2 or 1
            if self.time_limit is not None and t0 is not None:
                t1 = time.perf_counter()
                fun(x.ravel())
                per_eval = time.perf_counter() - t1
                left = self.time_limit - (time.perf_counter() - t0)
                maxiter = int(min(maxiter, max(left / 2 / (1.3 * per_eval), 5)))
            res = minimize(fun, x.ravel(), jac=True, method="L-BFGS-B",
                           options={"maxiter": maxiter, "maxfun": int(1.3 * maxiter) + 5,
                                    "gtol": 1e-12, "ftol": 1e-16, "maxcor": 30})
            x_new = res.x.reshape(x.shape)
            if not np.all(np.isfinite(x_new)):
                break
            x = x_new
            if self.pooling is not None:
                break
        return x, self._exact_losses(x, target, numbers, cell_k, pbc_arg, weights, groups)

    def _weights(self, target: torch.Tensor) -> torch.Tensor | None:
        w = self.feature_weights
        if w is None:
            return None
        if isinstance(w, str):
            if w != "auto":
                raise ValueError("feature_weights must be None, 'auto' or an array")
            scale = target.abs().mean(dim=0) if target.ndim == 2 else target.abs()
            floor = max(float(scale.mean()) * 1e-2, 1e-6)
            return 1.0 / (scale + floor)
        return torch.as_tensor(np.asarray(w, dtype=float), dtype=target.dtype,
                               device=target.device)

    def _initial_positions(self, numbers, cell, B: int) -> np.ndarray:
        n = len(numbers)
        if cell is not None:
            frac = self.rng.random((B, n, 3))
            return frac @ cell
        if self.init in ("grow", "compact"):
            return np.stack([self._grown_cluster(numbers) for _ in range(B)])
        length = compact_box_length(numbers, self.packing)
        return (self.rng.random((B, n, 3)) - 0.5) * length

    def _grown_cluster(self, numbers, tries: int = 200) -> np.ndarray:
        """A random connected cluster at condensed-phase density: atoms are added one by one next
        to a random placed atom, at 0.9–1.1 × the sum of covalent radii from it and no closer than
        0.85 × that sum to any other (a random placement keeps the last try if none fits).
        ``init="compact"``: every atom goes to the free hollow site with the most contacts among
        ``compact_candidates`` (see :meth:`_site`), which grows compact, close-packed-like
        clusters instead of open random aggregates."""
        numbers = np.asarray(numbers)
        order = self.rng.permutation(len(numbers))
        r = covalent_radii[numbers]
        pos = np.zeros((len(numbers), 3))
        placed = [order[0]]
        compact = self.init == "compact"
        for i in order[1:]:
            p_ = np.asarray(placed)
            if compact:
                pos[i] = self._site(pos, p_, numbers, i, self.compact_candidates)
                placed.append(i)
                continue
            for _ in range(tries):
                j = p_[self.rng.integers(len(p_))]
                v = self.rng.normal(size=3)
                v /= np.linalg.norm(v)
                cand = pos[j] + v * (r[i] + r[j]) * self.rng.uniform(0.9, 1.1)
                d = np.linalg.norm(pos[p_] - cand, axis=1)
                if np.all(d >= 0.85 * (r[p_] + r[i])):
                    break
            pos[i] = cand
            placed.append(i)
        return pos - pos.mean(axis=0)

    def _assign(self, per_atom: torch.Tensor, target: torch.Tensor, groups, weights) -> np.ndarray:
        from scipy.optimize import linear_sum_assignment

        cur = per_atom.detach()
        B, N, _ = cur.shape
        perm = np.empty((B, N), dtype=int)
        w = weights if weights is not None else 1.0
        for idx in groups:
            idx_t = torch.as_tensor(idx, device=cur.device)
            if len(idx) == 1:
                perm[:, idx] = idx
                continue
            c = ((cur[:, idx_t, None, :] - target[idx_t][None, None, :, :]).abs() * w).sum(-1)
            c = c.cpu().numpy()
            for b in range(B):
                rows, cols = linear_sum_assignment(c[b])
                perm[b, idx[rows]] = idx[cols]
        return perm

    def _to_atoms(self, pos, numbers, cell, pbc, loss, scale) -> Atoms:
        if cell is not None and np.any(pbc):
            atoms = Atoms(numbers=numbers, positions=pos, cell=cell, pbc=pbc)
            atoms.wrap()
        else:
            atoms = Atoms(numbers=numbers, positions=pos - pos.mean(axis=0))
        atoms.info["reconstruction_loss"] = float(loss)
        atoms.info["relative_loss"] = float(loss / scale)
        if self.loss_threshold is not None:
            atoms.info["valid"] = bool(loss <= self.loss_threshold)
        return atoms
