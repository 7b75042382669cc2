"""Point-group symmetry for symmetric starting structures of a per-atom fingerprint inversion.

Atoms related by a symmetry operation have identical per-atom fingerprints, so the rows of a
target fingerprint fall into groups of equal rows whose sizes are orbit sizes of the
structure's point group: 1, 12, 12 and 30 for a 55-atom Mackay icosahedron, which only the
icosahedral groups allow. A structure with that symmetry is fixed by one representative point
per orbit, each on a *site* of the group (the origin, a rotation axis, a mirror plane or a
general position) — three free coordinates for the icosahedron instead of 3N − 6 = 159.
Random searches restricted to such symmetric structures are the usual trick of random
structure searching (AIRSS, PyXtal); here the orbit sizes are read from the fingerprint itself.

* :func:`point_group` — the 3 × 3 matrices of a point group by Schoenflies symbol (``"Ih"``,
  ``"Oh"``, ``"D5h"``, …), closed from generators;
* :func:`site_types` — its sites up to symmetry: a basis of the fixed subspace, the orbit size
  of a generic point on it and one operation per orbit member;
* :func:`equal_rows` — groups of (numerically) identical rows of a per-atom fingerprint;
* :class:`SymmetricTemplate` — a linear map from site coordinates ``t`` (Å) to the positions of
  all atoms, ``positions = (A @ t).reshape(N, 3)``, for one choice of group and sites.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_TOL = 1e-6


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _axis_rotation(axis, angle: float) -> np.ndarray:
    u = np.asarray(axis, dtype=float)
    u /= np.linalg.norm(u)
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


_C2X = np.diag([1.0, -1.0, -1.0])
_SIGMA_H = np.diag([1.0, 1.0, -1.0])
_SIGMA_V = np.diag([1.0, -1.0, 1.0])
_INVERSION = -np.eye(3)
_C3_111 = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
_C2Z = np.diag([-1.0, -1.0, 1.0])
_SIGMA_D_XY = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
_GOLDEN = (1 + math.sqrt(5)) / 2


def _generators(symbol: str) -> list[np.ndarray]:
    cubic = {"T": [_C2Z, _C3_111], "O": [_rz(math.pi / 2), _C3_111],
             "I": [_C2Z, _C3_111, _axis_rotation([0.0, 1.0, _GOLDEN], 2 * math.pi / 5)]}
    if symbol in ("C1",):
        return []
    if symbol == "Cs":
        return [_SIGMA_H]
    if symbol == "Ci":
        return [_INVERSION]
    if symbol in cubic:
        return cubic[symbol]
    if symbol in ("Td",):
        return cubic["T"] + [_SIGMA_D_XY]
    if symbol in ("Th", "Oh", "Ih"):
        return cubic[symbol[0]] + [_INVERSION]
    kind, rest = symbol[0], symbol[1:]
    digits = "".join(ch for ch in rest if ch.isdigit())
    suffix = rest[len(digits):]
    if not digits or kind not in "CDS":
        raise ValueError(f"unknown point group {symbol!r}")
    n = int(digits)
    cn = _rz(2 * math.pi / n)
    if kind == "S":
        if n % 2:
            raise ValueError(f"S{n}: only even n are point groups of their own")
        return [_rz(2 * math.pi / n) @ _SIGMA_H]
    if kind == "C":
        extra = {"": [], "v": [_SIGMA_V], "h": [_SIGMA_H]}
    else:
        extra = {"": [_C2X], "h": [_C2X, _SIGMA_H], "d": [_C2X, _rz(math.pi / n) @ _SIGMA_H]}
    if suffix not in extra:
        raise ValueError(f"unknown point group {symbol!r}")
    return [cn] + extra[suffix]


def _key(m: np.ndarray) -> tuple:
    return tuple(np.round(m, 5).ravel() + 0.0)


@lru_cache(maxsize=None)
def _point_group_cached(symbol: str) -> tuple:
    ops = {_key(np.eye(3)): np.eye(3)}
    frontier = list(ops.values())
    gens = _generators(symbol)
    while frontier:
        new = []
        for a in frontier:
            for g in gens:
                m = g @ a
                k = _key(m)
                if k not in ops:
                    ops[k] = m
                    new.append(m)
        frontier = new
        if len(ops) > 240:
            raise RuntimeError(f"point group {symbol} did not close")
    return tuple(ops.values())


def point_group(symbol: str) -> np.ndarray:
    """The operations ``(|G|, 3, 3)`` of the point group ``symbol`` (Schoenflies: ``"Ih"``,
    ``"Oh"``, ``"Td"``, ``"D5h"``, ``"C3v"``, ``"S4"``, ``"Cs"``, …) with the principal axis
    along z."""
    return np.array(_point_group_cached(symbol))


#: point groups tried for symmetric starts: cubic and icosahedral, then the axial ones up to
#: six-fold axes
POINT_GROUPS: tuple[str, ...] = (
    ("Ih", "I", "Oh", "O", "Td", "Th", "T")
    + tuple(f"D{n}{s}" for n in range(2, 7) for s in ("h", "d", ""))
    + tuple(f"C{n}{s}" for n in range(2, 7) for s in ("v", "h", ""))
    + ("S4", "S6", "Cs", "Ci"))


@dataclass(frozen=True)
class SiteType:
    """A kind of site of a point group: generic points of the subspace spanned by ``basis``
    ``(3, d)`` have ``len(images)`` distinct images ``images[j] @ x`` (the orbit)."""

    basis: np.ndarray
    images: np.ndarray

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @property
    def size(self) -> int:
        return len(self.images)


def _fixed_basis(g: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``(3, d)`` of the points fixed by ``g``."""
    _, s, vt = np.linalg.svd(g - np.eye(3))
    return vt[s < _TOL].T


@lru_cache(maxsize=None)
def _site_types_cached(symbol: str) -> tuple:
    ops = point_group(symbol)
    subspaces = {}
    for g in ops:
        basis = _fixed_basis(g)
        proj = basis @ basis.T
        subspaces.setdefault(_key(proj), (basis, proj))
    subspaces.setdefault(_key(np.zeros((3, 3))), (np.zeros((3, 0)), np.zeros((3, 3))))
    rng = np.random.default_rng(0)
    types, seen = [], set()
    for key, (basis, proj) in sorted(subspaces.items(), key=lambda kv: -kv[1][0].shape[1]):
        if key in seen:  # conjugate to a subspace already listed (e.g. another C5 axis)
            continue
        seen.update(_key(p) for p in np.einsum("gij,jk,glk->gil", ops, proj, ops))
        x = basis @ rng.normal(size=basis.shape[1]) if basis.shape[1] else np.zeros(3)
        _, first = np.unique(np.round(ops @ x, 5) + 0.0, axis=0, return_index=True)
        types.append(SiteType(basis=basis, images=ops[np.sort(first)]))
    return tuple(types)


def site_types(symbol: str) -> list[SiteType]:
    """The sites of point group ``symbol`` up to symmetry, most free coordinates first."""
    return list(_site_types_cached(symbol))


def equal_rows(fingerprint: np.ndarray, numbers, rtol: float = 1e-5) -> list[np.ndarray]:
    """Groups of atoms (index arrays) of one element whose fingerprint rows agree to ``rtol``
    (relative to each feature's mean magnitude): candidates for symmetry-equivalent atoms."""
    fp = np.asarray(fingerprint, dtype=float)
    numbers = np.asarray(numbers)
    x = fp / (np.abs(fp).mean(axis=0) + 1e-12)
    label = np.full(len(fp), -1)
    groups = []
    for i in range(len(fp)):
        if label[i] >= 0:
            continue
        same = ((np.abs(x - x[i]).max(axis=1) < rtol) & (numbers == numbers[i])
                & (label < 0))
        label[same] = len(groups)
        groups.append(np.flatnonzero(same))
    return groups


def fitting_groups(sizes, symbols=POINT_GROUPS) -> list[tuple[str, int]]:
    """Point groups in which every orbit size in ``sizes`` is the orbit of some site (at most one
    orbit at the origin), with the fewest free coordinates such a structure can have; sorted by
    that number. Groups with only one-atom orbits (no symmetry seen) give an empty list."""
    sizes = list(sizes)
    if max(sizes, default=1) < 2:
        return []
    out = []
    for symbol in symbols:
        types = site_types(symbol)
        dims = []
        for m in sizes:
            d = [t.dim for t in types if t.size == m]
            if not d:
                break
            dims.append(min(d))
        else:
            on_origin = sum(1 for m, d in zip(sizes, dims) if d == 0)
            if on_origin > 1 and not any(t.dim > 0 and t.size == 1 for t in types):
                continue
            out.append((symbol, sum(dims)))
    return sorted(out, key=lambda sd: sd[1])


@dataclass
class SymmetricTemplate:
    """Symmetric structures of one point group: orbit ``k`` puts the atoms ``orbits[k]`` (in that
    order) at the images of the site point ``basis_k @ t_k``.

    ``matrix`` ``(3N, P)`` maps the site coordinates ``t`` (Å, length ``P``) to the flattened
    positions. Every orbit member has the fingerprint row of the orbit's first atom
    (``orbits[k][0]``)."""

    symbol: str
    matrix: np.ndarray
    orbits: list
    dims: np.ndarray

    @property
    def n_params(self) -> int:
        return self.matrix.shape[1]

    @property
    def first(self) -> np.ndarray:
        return np.array([idx[0] for idx in self.orbits])

    def positions(self, t: np.ndarray) -> np.ndarray:
        return (self.matrix @ t).reshape(-1, 3)


def build_template(symbol: str, sites, orbits, n_atoms: int) -> SymmetricTemplate:
    """The template putting the atoms ``orbits[k]`` on the site type ``sites[k]``."""
    cols = [np.zeros((3 * n_atoms, 0))]
    for site, idx in zip(sites, orbits):
        if site.size != len(idx):
            raise ValueError(f"a site of {site.size} images cannot hold {len(idx)} atoms")
        block = np.zeros((3 * n_atoms, site.dim))
        for atom, g in zip(idx, site.images):
            block[3 * atom:3 * atom + 3] = g @ site.basis
        cols.append(block)
    return SymmetricTemplate(symbol=symbol, matrix=np.concatenate(cols, axis=1),
                             orbits=[np.asarray(i) for i in orbits],
                             dims=np.array([site.dim for site in sites], dtype=int))


def random_template(symbol: str, groups, n_atoms: int, rng) -> SymmetricTemplate | None:
    """A template for point group ``symbol`` with one orbit per group of equal rows, each on a
    random site of its size (the origin at most once); ``None`` when the sizes do not fit."""
    types = site_types(symbol)
    sites = []
    for idx in groups:
        origin_used = any(t.dim == 0 for t in sites)
        options = [t for t in types if t.size == len(idx) and not (t.dim == 0 and origin_used)]
        if not options:
            return None
        sites.append(options[int(rng.integers(len(options)))])
    return build_template(symbol, sites, groups, n_atoms)


def decompositions(n_atoms: int, symbol: str, max_params: int) -> list[tuple[int, tuple]]:
    """All ways to fill ``n_atoms`` atoms (one element) with orbits of point group ``symbol``:
    ``(free coordinates, site-type indices)`` with at most ``max_params`` coordinates and at
    most one atom at the origin, as multisets of :func:`site_types` indices."""
    types = site_types(symbol)
    out = []

    def extend(start, left, params, chosen):
        if left == 0:
            out.append((params, tuple(chosen)))
            return
        for k in range(start, len(types)):
            t = types[k]
            if t.size <= left and params + t.dim <= max_params:
                # the origin holds one atom: it is used once, other sites may repeat
                extend(k if t.dim else k + 1, left - t.size, params + t.dim, chosen + [k])

    extend(0, n_atoms, 0, [])
    return out


def pooled_hypotheses(n_atoms: int, max_params: int = 12, symbols=POINT_GROUPS
                      ) -> list[tuple[str, tuple]]:
    """Symmetric hypotheses for a one-element cluster whose orbit sizes are unknown (a pooled
    fingerprint): every point group's decompositions of ``n_atoms``, fewest free coordinates
    first and, among equals, the larger group first."""
    hyps = []
    for symbol in symbols:
        order = len(point_group(symbol))
        hyps += [(params, -order, symbol, sites)
                 for params, sites in decompositions(n_atoms, symbol, max_params)
                 if any(site_types(symbol)[k].size > 1 for k in sites)]
    hyps.sort(key=lambda h: h[:2])
    return [(symbol, sites) for _, _, symbol, sites in hyps]


def hypothesis_template(symbol: str, sites, n_atoms: int) -> SymmetricTemplate:
    """The template of a pooled hypothesis: orbit ``k``'s first atom is atom ``k`` (so that the
    first ``len(sites)`` atoms represent all), the other members follow."""
    types = site_types(symbol)
    chosen = [types[k] for k in sites]
    nxt = len(chosen)
    orbits = []
    for k, site in enumerate(chosen):
        orbits.append([k] + list(range(nxt, nxt + site.size - 1)))
        nxt += site.size - 1
    return build_template(symbol, chosen, orbits, n_atoms)


def random_site_coordinates(template: SymmetricTemplate, radius: float, rng) -> np.ndarray:
    """Random ``t`` (Å): each orbit's point in a random direction of its site at a distance
    uniform in [0.15, 1] × ``radius`` from the centre."""
    t = []
    for d in template.dims:
        if d == 0:
            continue
        v = rng.normal(size=d)
        v *= rng.uniform(0.15, 1.0) * radius / np.linalg.norm(v)
        t.append(v)
    return np.concatenate(t) if t else np.zeros(0)
