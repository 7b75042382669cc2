"""Choosing generated molecules to relax by their bond graphs, before any relaxation.

A generator's unrelaxed molecules fall into three kinds. Some already have a bond graph that is
one valence-saturated molecule: their isomer is known before relaxing. Many more have a sound
heavy-atom skeleton with a hydrogen or two out of place; a relaxation usually puts the hydrogens
right and keeps the skeleton, so the skeleton names the isomer they will become. The rest are
fragments or tangles. :func:`molecule_representatives` spends relaxations in that order: one
structure per distinct molecule, then one per skeleton not yet covered, then PCA + k-means
representatives (the paper's filter) among the rest. It needs no list of the isomers that exist.
"""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Sequence

import networkx as nx
import numpy as np
from ase import Atoms

from ase_mlgen.select.representatives import representatives, structure_features, too_close
from ase_mlgen.structures.molecules import (VALENCE, bond_graph, is_plausible_molecule,
                                            molecule_identity, rebuild_hydrogens,
                                            skeleton_identity)

TIERS = ("molecule", "skeleton", "other")
#: bonds at this multiple of the covalent radii for the looser checks (connected, plausible)
PLAUSIBLE_SCALE = 1.3


class MoleculeLabel(NamedTuple):
    """What the unrelaxed bond graph of one structure says (see :func:`molecule_labels`)."""

    molecule: str | None    #: bond-graph hash when it is one valence-saturated molecule
    skeleton: str | None    #: heavy-atom skeleton hash when the skeleton can be a molecule's
    misfit: int             #: atoms whose number of bonds differs from their valence
    connected: bool         #: one piece at 1.3 × the covalent radii (hydrogens included)
    plausible: bool         #: :func:`~ase_mlgen.structures.molecules.is_plausible_molecule`


def molecule_label(atoms: Atoms, scale: float = 1.2,
                   valence: dict[str, int] | None = None) -> MoleculeLabel:
    """The :class:`MoleculeLabel` of one structure (bonds at ``scale`` × covalent radii)."""
    valence = VALENCE if valence is None else valence
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any())) if len(atoms) > 1 else None
    graph = bond_graph(atoms, scale, distances)
    misfit = sum(graph.degree[i] != valence.get(d["symbol"], graph.degree[i])
                 for i, d in graph.nodes(data=True))
    loose = bond_graph(atoms, PLAUSIBLE_SCALE, distances)
    connected = loose.number_of_nodes() > 0 and nx.is_connected(loose)
    return MoleculeLabel(molecule_identity(graph, valence=valence),
                         skeleton_identity(graph, valence=valence), int(misfit),
                         connected,
                         connected and is_plausible_molecule(loose, valence=valence))


def molecule_labels(images: Sequence[Atoms], scale: float = 1.2,
                    valence: dict[str, int] | None = None) -> list[MoleculeLabel]:
    """:func:`molecule_label` of every structure, to reuse across calls of
    :func:`molecule_representatives` (about a millisecond per small molecule)."""
    return [molecule_label(a, scale, valence) for a in images]


def molecule_representatives(images: Sequence[Atoms], k: int, features: np.ndarray | None = None,
                             descriptor=None, scale: float = 1.2,
                             valence: dict[str, int] | None = None,
                             plausible_only: bool = True, skeletons: bool = True,
                             labels: Sequence[MoleculeLabel] | None = None,
                             random_state: int = 0, return_info: bool = False,
                             rebuild: bool = False):
    """``k`` generated molecules worth relaxing, chosen by their unrelaxed bond graphs.

    Structures with atoms closer than half the sum of their covalent radii are dropped first
    (:func:`~ase_mlgen.select.too_close`). Then, in this order, until ``k`` are chosen:

    1. ``"molecule"``: structures whose bond graph (``scale`` × covalent radii) is one
       valence-saturated molecule, one per distinct molecule (bond-graph hash), chosen by
       :func:`~ase_mlgen.select.representatives` (PCA + k-means; every molecule represented when
       there are at most ``k``);
    2. ``"skeleton"``: one structure for each heavy-atom skeleton (see
       :func:`~ase_mlgen.structures.molecules.skeleton_identity`) that no pick of tier 1 has,
       most frequent skeleton first; of each, a structure that is one piece at 1.3 × the covalent
       radii (hydrogens included) if there is one, then the fewest atoms off their valence,
       ties broken by nearness to the skeleton's mean descriptor;
    3. ``"other"``: the paper's PCA + k-means representatives among the structures that are
       neither valid molecules nor of a skeleton already picked (with ``plausible_only``, only
       among those that pass
       :func:`~ase_mlgen.structures.molecules.is_plausible_molecule`).

    ``skeletons=False`` leaves out tier 2. ``rebuild=True`` returns each skeleton pick with its
    hydrogens put back on the skeleton (:func:`~ase_mlgen.structures.molecules.rebuild_hydrogens`,
    ``info["hydrogens_rebuilt"]``), so that a relaxation keeps the skeleton and ends as the
    isomer it names (a misplaced hydrogen can otherwise break a bond on the way); a skeleton
    whose hydrogens cannot be rebuilt (rings, multiple bonds) is returned as generated.
    ``labels``: precomputed :func:`molecule_labels` of
    ``images`` (with the same ``scale`` and ``valence``), to reuse across calls.

    ``features``: precomputed :func:`~ase_mlgen.select.structure_features` of ``images`` (one row
    per image); computed with ``descriptor`` when needed otherwise. ``valence``: usual valences
    by element (default :data:`~ase_mlgen.structures.molecules.VALENCE`). Returns copies with
    ``info["tier"]`` and ``info["source_index"]``; with ``return_info=True`` also a dict with
    the number of structures and distinct labels of each tier.
    """
    images = list(images)
    if k < 1:
        raise ValueError("k must be at least 1")
    valence = VALENCE if valence is None else valence
    if features is not None:
        features = np.asarray(features)
        if len(features) != len(images):
            raise ValueError("features must have one row per image")
    if labels is None:
        labels = molecule_labels(images, scale, valence)
    elif len(labels) != len(images):
        raise ValueError("labels must have one entry per image")
    kept = [i for i, a in enumerate(images) if not too_close(a, "covalent", 0.5)]

    def rows(indices):
        if features is not None:
            return features[indices]
        return structure_features([images[i] for i in indices], descriptor)

    picked: list[Atoms] = []
    chosen: set[int] = set()

    def take(atoms: Atoms, source: int, tier: str) -> None:
        atoms.info["source_index"] = source
        atoms.info["tier"] = tier
        picked.append(atoms)
        chosen.add(source)

    # tier 1: one per valence-saturated molecule
    valid = [i for i in kept if labels[i].molecule is not None]
    if valid:
        by_molecule = {id(images[i]): labels[i].molecule for i in valid}
        first = representatives([images[i] for i in valid], k, min_distance=None,
                                random_state=random_state, features=rows(valid),
                                group=lambda a: by_molecule[id(a)])
        for atoms in first[:k]:
            take(atoms, valid[atoms.info["source_index"]], "molecule")
    covered = {labels[a.info["source_index"]].skeleton for a in picked}

    # tier 2: one per skeleton not covered yet
    by_skeleton: dict[str, list[int]] = defaultdict(list)
    for i in kept if skeletons else ():
        if labels[i].molecule is None and labels[i].skeleton not in covered | {None}:
            by_skeleton[labels[i].skeleton].append(i)
    for skeleton in sorted(by_skeleton, key=lambda s: -len(by_skeleton[s])):
        if len(picked) >= k:
            break
        members = by_skeleton[skeleton]
        badness = [(not labels[i].connected, labels[i].misfit) for i in members]
        best = [m for m, b in zip(members, badness) if b == min(badness)]
        if len(best) > 1:
            feats = rows(best)
            centre = rows(members).mean(axis=0)
            best = [best[int(np.argmin(((feats - centre) ** 2).sum(axis=1)))]]
        pick = images[best[0]].copy()
        if rebuild:
            try:
                pick = rebuild_hydrogens(pick, scale, valence)
            except ValueError:
                pass                # unsaturated skeleton: relax it as generated
        take(pick, best[0], "skeleton")

    # tier 3: the paper's filter among the rest
    n_other_pool = 0
    if len(picked) < k:
        covered |= set(by_skeleton)
        rest = [i for i in kept if i not in chosen and labels[i].molecule is None
                and (not skeletons or labels[i].skeleton not in covered)
                and (not plausible_only or labels[i].plausible)]
        n_other_pool = len(rest)
        if rest:
            extra = representatives([images[i] for i in rest], k - len(picked),
                                    min_distance=None, random_state=random_state,
                                    features=rows(rest))
            for atoms in extra:
                take(atoms, rest[atoms.info["source_index"]], "other")
    if not return_info:
        return picked
    info = {"n_input": len(images), "n_too_close": len(images) - len(kept),
            "n_valid": len(valid), "distinct_molecules": len({labels[i].molecule for i in valid}),
            "n_skeleton_only": sum(len(v) for v in by_skeleton.values()),
            "new_skeletons": len(by_skeleton), "n_other_pool": n_other_pool,
            "picked_per_tier": {t: sum(a.info["tier"] == t for a in picked) for t in TIERS},
            "hydrogens_rebuilt": sum(bool(a.info.get("hydrogens_rebuilt")) for a in picked)}
    return picked, info


def tier_counts(labels: Sequence[MoleculeLabel]) -> dict[str, int]:
    """How many structures have a valid bond graph, only a sound skeleton, or neither."""
    counts = dict.fromkeys(TIERS, 0)
    for label in labels:
        counts["molecule" if label.molecule else "skeleton" if label.skeleton else "other"] += 1
    return counts


__all__ = ["MoleculeLabel", "TIERS", "molecule_label", "molecule_labels",
           "molecule_representatives", "tier_counts"]
