"""Symmetric starts for fingerprint inversion (``ACSFInverter(symmetric_starts=k)``).

The structure is first searched among symmetric ones, where a few site coordinates ``t`` (Å)
fix all positions (:mod:`.symmetry`): 3 for a Pt55 icosahedron, 12 for a Pt55 decahedron,
instead of 3N − 6 = 159.

* **Per-atom fingerprints**: rows of symmetry-equivalent atoms are equal, so the groups of
  equal rows give the orbit sizes; the ``k`` starts spread over the (at most
  :data:`MAX_GROUPS`) point groups that fit them with the fewest coordinates, each group of rows
  on a random site of its size. Orbits of the same size and element may trade target rows
  (optimal assignment), as atoms do in the full search.
* **Pooled fingerprints** (one element): the orbit sizes are unknown, so the starts take the
  hypotheses of :func:`.symmetry.pooled_hypotheses` in order — the fewest free coordinates and
  the largest groups first: half of the starts go to the first ``k / 8`` hypotheses (four
  random starts each), the other half to the next ``k / 2`` (one each).

Adam optimises ``t``; every orbit member has the fingerprint row of the orbit's first atom, so
only those K rows are computed (``forward_batch(..., centres=...)``), at K/N of the cost of a
full step. Atoms closer than 0.7 × their covalent bond are pushed apart, so that an orbit cannot
fold onto a smaller site, where coinciding atoms leave the fingerprint without a gradient. Adam
stops once a loss is below ``stop_below``; the best few are then refined by L-BFGS on the
squared difference, still in ``t``.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import covalent_radii

from ase_mlgen.inversion.symmetry import (equal_rows, fitting_groups, hypothesis_template,
                                          pooled_hypotheses, random_site_coordinates,
                                          random_template)
from ase_mlgen.select.representatives import too_close

#: per-atom fingerprints: at most this many point groups (those allowing the fewest free
#: coordinates) share the starts
MAX_GROUPS = 4
#: pooled fingerprints: random starts for each of the first hypotheses
POOLED_REPEATS = 4


def _templates(target: np.ndarray, numbers: np.ndarray, n_starts: int, pooling, rng):
    """Templates, centre atoms, orbit sizes ``(B, K)`` and the orbit classes that may trade
    target rows; ``None`` when there is no symmetric hypothesis."""
    n_atoms = len(numbers)
    if pooling is None:
        groups = equal_rows(target, numbers)
        fits = fitting_groups([len(g) for g in groups])[:MAX_GROUPS]
        if not fits:
            return None
        templates = [random_template(fits[b % len(fits)][0], groups, n_atoms, rng)
                     for b in range(n_starts)]
        templates = [t for t in templates if t is not None]  # (every fitting group has sites)
        if not templates:
            return None
        sizes = np.tile([len(g) for g in groups], (len(templates), 1)).astype(float)
        classes = {}
        for k, g in enumerate(groups):
            classes.setdefault((len(g), int(numbers[g[0]])), []).append(k)
        classes = [np.array(c) for c in classes.values() if len(c) > 1]
        return templates, templates[0].first, sizes, classes
    if len(set(numbers.tolist())) > 1:
        return None  # pooled: one-element clusters only (no per-element orbit sizes)
    hyps = pooled_hypotheses(n_atoms)
    if not hyps:
        return None
    # half of the starts: the first hypotheses, POOLED_REPEATS random starts each; the other
    # half: one start each for the hypotheses that follow
    n_deep = max(n_starts // (2 * POOLED_REPEATS), 1)
    chosen = [h for h in hyps[:n_deep] for _ in range(POOLED_REPEATS)]
    chosen += hyps[n_deep:n_deep + max(n_starts - len(chosen), 0)]
    chosen = [chosen[b % len(chosen)] for b in range(n_starts)]
    templates = [hypothesis_template(*h, n_atoms) for h in chosen]
    k_max = max(len(t.orbits) for t in templates)
    sizes = np.zeros((n_starts, k_max))  # centres past a template's orbits repeat a member
    for b, tpl in enumerate(templates):
        sizes[b, :len(tpl.orbits)] = [len(o) for o in tpl.orbits]
    return templates, np.arange(k_max), sizes, []


def _pool(feats: torch.Tensor, sizes: torch.Tensor, pooling: Sequence[str], n_atoms: int):
    """Pool orbit rows ``(B, K, F)`` as the whole structure would be pooled (``sizes`` members
    each)."""
    out = []
    for op in pooling:
        if op == "max":
            out.append(feats.amax(dim=1))
        elif op == "min":
            out.append(feats.amin(dim=1))
        else:
            total = (feats * sizes[..., None]).sum(dim=1)
            out.append(total / n_atoms if op == "mean" else total)
    return torch.cat(out, dim=-1)


def symmetric_candidates(describe: Callable, target: torch.Tensor, numbers, weights,
                         n_starts: int, steps: int, lr: float, radius: float,
                         rng: np.random.Generator, search_dtype: torch.dtype,
                         pooling: Sequence[str] | None = None, polish: int = 200,
                         polish_top: int = 3, patience: int = 40, assign_every: int = 20,
                         deadline: float | None = None, min_distance: float = 0.5,
                         stop_below: float | None = None):
    """Symmetric structures that match ``target`` as well as they can.

    ``target`` is ``(N, F)`` per atom (``pooling=None``) or the pooled vector.
    ``describe(positions (B, N, 3), centres)`` returns the fingerprint rows ``(B, K, F)`` of the
    atoms ``centres``. ``radius`` (Å) bounds the random orbit distances from the centre. Returns
    ``(positions (S, N, 3), point-group symbols)`` sorted from the lowest loss, or ``None`` when
    there is no symmetric hypothesis (no repeated rows; a pooled target of several elements).
    ``deadline`` (``time.perf_counter()`` seconds) stops early. Structures with two atoms closer
    than ``min_distance`` (Å) are left out. The Adam steps end once a structure's loss is below
    ``stop_below`` (the L-BFGS polish then lands on the minimum).
    """
    numbers = np.asarray(numbers)
    n_atoms = len(numbers)
    if n_starts < 1 or n_atoms < 2:
        return None
    found = _templates(target.detach().cpu().numpy(), numbers, n_starts, pooling, rng)
    if found is None:
        return None
    templates, centres, sizes, classes = found
    n_b, n_p = len(templates), max(max(t.n_params for t in templates), 1)
    a = np.zeros((n_b, 3 * n_atoms, n_p))
    t0 = np.zeros((n_b, n_p))
    for b, tpl in enumerate(templates):
        a[b, :, :tpl.n_params] = tpl.matrix
        t0[b, :tpl.n_params] = random_site_coordinates(tpl, radius, rng)
    radii = covalent_radii[numbers]
    contact = 0.7 * (radii[centres][:, None] + radii[None, :])  # (K, N) Å
    contact[np.arange(len(centres)), centres] = 0.0  # an atom and itself
    dev = target.device
    identity = np.tile(np.arange(len(centres)), (n_b, 1))

    def evaluate(t, a_t, assign, dtype, sel):
        """L1 and squared losses of the structures ``sel`` (each plus the overlap penalty), and
        their rows."""
        w = None if weights is None else weights.to(dtype)
        tgt = target.to(dtype)
        m = torch.as_tensor(sizes[sel], dtype=dtype, device=dev)
        pos = (a_t @ t[..., None]).reshape(len(t), n_atoms, 3)
        feats = describe(pos, centres)  # (B, K, F)
        gap = ((pos[:, centres, None, :] - pos[:, None, :, :]) ** 2).sum(-1).add(1e-12).sqrt()
        limit = torch.as_tensor(contact, dtype=dtype, device=dev)
        overlap = (torch.relu(limit - gap).pow(2).sum(-1) * m).sum(-1) / n_atoms  # (B,)
        if pooling is None:
            diff = feats - tgt[torch.as_tensor(centres, device=dev)][assign]
            diff = diff if w is None else diff * w
            l1 = (diff.abs().mean(-1) * m).sum(-1) / n_atoms
            sq = ((diff * diff).sum(-1) * m).sum(-1)
        else:
            diff = _pool(feats, m, pooling, n_atoms) - tgt
            diff = diff if w is None else diff * w
            l1, sq = diff.abs().mean(-1), (diff * diff).sum(-1)
        return l1 + overlap, sq + overlap, feats

    def reassign(feats, sel):
        from scipy.optimize import linear_sum_assignment

        assign = identity[sel].copy()
        rows = target.to(feats.dtype)[torch.as_tensor(centres, device=dev)]
        w = 1.0 if weights is None else weights.to(feats.dtype)
        for cls in classes:
            c = ((feats[:, cls, None, :] - rows[cls][None, None]).abs() * w).sum(-1)
            c = c.detach().cpu().numpy()
            for b in range(len(feats)):
                r, col = linear_sum_assignment(c[b])
                assign[b, cls[r]] = cls[col]
        return torch.as_tensor(assign, device=dev)

    # Adam on the site coordinates (search dtype)
    sdt = search_dtype
    a_s = torch.as_tensor(a, dtype=sdt, device=dev)
    t = torch.tensor(t0, dtype=sdt, device=dev, requires_grad=True)
    mom, var = torch.zeros_like(t), torch.zeros_like(t)
    best = np.full(n_b, np.inf)
    best_t = t0.copy()
    assign = torch.as_tensor(identity, device=dev)
    last = best.copy()
    every = np.arange(n_b)
    for step in range(steps):
        lr_now = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        loss, _, feats = evaluate(t, a_s, assign, sdt, every)
        if classes and step % max(assign_every, 1) == 0:
            assign = reassign(feats.detach(), every)
            loss, _, feats = evaluate(t, a_s, assign, sdt, every)
        lv = loss.detach().cpu().numpy()
        better = lv < best
        best[better] = lv[better]
        best_t[better] = t.detach().cpu().numpy()[better]
        if step % patience == 0:
            if step > 0 and np.all(best > 0.99 * last):
                break
            last = best.copy()
        if deadline is not None and time.perf_counter() > deadline:
            break
        if stop_below is not None and best.min() < stop_below:
            break
        t.grad = None
        loss.sum().backward()
        with torch.no_grad():  # Adam
            g = torch.nan_to_num(t.grad)
            mom.mul_(0.9).add_(g, alpha=0.1)
            var.mul_(0.999).addcmul_(g, g, value=0.001)
            t -= lr_now * (mom / (1 - 0.9 ** (step + 1))) / (
                (var / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8)

    order = np.argsort(best)
    if polish:  # L-BFGS on the squared differences of the best few, in the full dtype
        top = order[:polish_top]
        dt = target.dtype
        a_top = torch.as_tensor(a[top], dtype=dt, device=dev)
        with torch.no_grad():
            _, _, feats = evaluate(torch.as_tensor(best_t[top], dtype=dt, device=dev), a_top,
                                   torch.as_tensor(identity[top], device=dev), dt, top)
        assign_top = (reassign(feats, top) if classes
                      else torch.as_tensor(identity[top], device=dev))

        def fun(flat):
            tt = torch.tensor(flat.reshape(len(top), n_p), dtype=dt, device=dev,
                              requires_grad=True)
            _, sq, _ = evaluate(tt, a_top, assign_top, dt, top)
            f = sq.sum()
            f.backward()
            return float(f.detach()), torch.nan_to_num(tt.grad).cpu().numpy().ravel()

        best_t[top] = _lbfgs(fun, best_t[top], polish, deadline)

    pos = np.einsum("bij,bj->bi", a, best_t).reshape(n_b, n_atoms, 3)
    keep = [b for b in order if np.isfinite(best[b])
            and not too_close(Atoms(numbers=numbers, positions=pos[b]), min_distance)]
    if not keep:
        return None
    return pos[keep], [templates[b].symbol for b in keep]


def _lbfgs(fun, x0: np.ndarray, iterations: int, deadline: float | None) -> np.ndarray:
    """scipy L-BFGS from ``x0`` for at most ``iterations`` (fewer when the deadline is near)."""
    from scipy.optimize import minimize

    if deadline is not None:
        t1 = time.perf_counter()
        fun(x0.ravel())
        per_eval = time.perf_counter() - t1
        iterations = int(min(iterations, max((deadline - time.perf_counter())
                                             / (1.3 * per_eval), 5)))
    res = minimize(fun, x0.ravel(), jac=True, method="L-BFGS-B",
                   options={"maxiter": iterations, "maxfun": int(1.3 * iterations) + 5,
                            "gtol": 1e-14, "ftol": 1e-18})
    out = res.x.reshape(x0.shape)
    return out if np.all(np.isfinite(out)) else x0
