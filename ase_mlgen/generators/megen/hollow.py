"""Hollow-site relocations of a cluster minimum: remove a weakly bound atom and put one atom on a
hollow site of the rest (a point at the same distance from three neighbouring atoms).

The trained MeGen policy places new atoms at short, dimer-like distances (Ga: nearest neighbour
2.30–2.49 Å), so it rarely proposes three-fold hollow sites; for Ga20 such a site is the one move
between the −51.012 eV funnel and the ground state (``bench/megen_ga20_sites.py``). These
candidates complement the policy's when a search stalls (``SearchMeGen(hollow=…)``).
"""
from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms

from ase_mlgen.generators.base import tag
from ase_mlgen.generators.megen.env import PlacementRules


def hollow_sites(positions: np.ndarray, radius: float, edge_max: float = 3.6,
                 merge: float = 0.3) -> list[np.ndarray]:
    """Points at ``radius`` (Å) from three atoms that are pairwise closer than ``edge_max`` (Å),
    with no atom closer than ``radius − 0.05`` Å; a site within ``merge`` Å of an earlier one is
    dropped. Both sides of every such triangle are tried."""
    positions = np.asarray(positions, dtype=float)
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    sites: list[np.ndarray] = []
    for i, j, k in itertools.combinations(range(len(positions)), 3):
        if max(d[i, j], d[i, k], d[j, k]) > edge_max:
            continue
        a, ab, ac = positions[i], positions[j] - positions[i], positions[k] - positions[i]
        normal = np.cross(ab, ac)
        area2 = float(normal @ normal)
        if area2 < 1e-12:                                    # collinear atoms: no triangle
            continue
        centre = a + (np.cross(normal, ab) * (ac @ ac) + np.cross(ac, normal) * (ab @ ab)) \
            / (2.0 * area2)                                  # circumcentre of the triangle
        rc = float(np.linalg.norm(centre - a))
        if rc >= radius:
            continue
        height = np.sqrt(radius * radius - rc * rc) * normal / np.sqrt(area2)
        for site in (centre + height, centre - height):
            if np.linalg.norm(positions - site, axis=1).min() < radius - 0.05:
                continue
            if all(np.linalg.norm(site - s) > merge for s in sites):
                sites.append(site)
    return sites


def hollow_relocations(minimum: Atoms, rules: PlacementRules, radius: float,
                       n_remove: int | None = None) -> list[Atoms]:
    """Candidates of ``len(minimum)`` atoms: for each atom removed, the rest of ``minimum`` plus
    one atom on each of its hollow sites at ``radius`` (Å) that the placement ``rules`` allow.
    ``n_remove=None`` (default) removes every atom in turn; an integer removes only that many of
    the lowest-coordinated ones (bonds within the rules' first-neighbour window; ties by index).
    The new atom is last; ``info["removed"]`` names the atom taken away and
    ``info["displacement"]`` how far (Å) the new site lies from where that atom was.

    Every atom, not only the weakly bound ones: in the Ga20 funnel minimum the atom whose move
    leads to the ground state has four or five bonds, and which of the many four-fold atoms a
    "six lowest" cut keeps depends on atom order (``doc/megen.md``)."""
    if radius <= 0:
        raise ValueError("the hollow-site radius must be > 0 Å")
    n = len(minimum)
    coordination = (minimum.get_all_distances() < rules.windows[0][1]).sum(1) - 1
    out = []
    for j in np.argsort(coordination, kind="stable")[:n if n_remove is None else n_remove]:
        rest = minimum[[k for k in range(n) if k != j]]
        mask = np.ones((1, n - 1), dtype=bool)
        for site in hollow_sites(rest.positions, radius):
            if not rules.valid(site[None], rest.positions[None], mask)[0]:
                continue
            cand = rest + Atoms(minimum.get_chemical_symbols()[j], positions=[site])
            cand.info = {}
            moved = float(np.linalg.norm(site - minimum.positions[j]))
            out.append(tag(cand, "megen", move="hollow", removed=int(j), displacement=moved))
    return out
