"""Pick a few representative structures from many generated ones (any generator).

Each structure becomes one vector: its per-atom descriptors averaged over the atoms of each
species, the species blocks concatenated. The vectors are reduced by PCA and clustered by k-means
(scikit-learn); the structure nearest to each cluster centre is returned. Structures with two
atoms closer than a physical minimum distance are dropped first. This is the filter of the LoGAN
paper (Kovács et al. 2024), which relaxes only these representatives.
"""
from __future__ import annotations

from collections import Counter

from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols, covalent_radii


def too_close(atoms: Atoms, min_distance: float | str | None = "covalent",
              covalent_fraction: float = 0.5) -> bool:
    """True when two atoms of ``atoms`` are closer than the minimum distance.

    ``min_distance``: a length in Å, ``"covalent"`` (``covalent_fraction`` × the sum of the two
    atoms' ASE covalent radii, per pair; 0.5 × gives 0.31 Å for H–H, 0.54 Å for C–H, 1.1 Å for
    Si–O), or None (never too close). Periodic structures use minimum-image distances.
    """
    if min_distance is None or len(atoms) < 2:
        return False
    d = atoms.get_all_distances(mic=bool(np.any(atoms.pbc)))
    np.fill_diagonal(d, np.inf)
    if min_distance == "covalent":
        r = covalent_radii[atoms.numbers]
        limit = covalent_fraction * (r[:, None] + r[None, :])
    else:
        limit = float(min_distance)
    return bool(np.any(d < limit))


def _default_descriptor(images: Sequence[Atoms]):
    from ase_mlgen.descriptors import SphericalBessel

    species = sorted({int(z) for a in images for z in a.numbers})
    return SphericalBessel(species=[chemical_symbols[z] for z in species], r_cut=5.0, n_max=4,
                           max_neighbours=20, radial="bessel")


def structure_features(images: Sequence[Atoms], descriptor=None,
                       batch: int = 512) -> np.ndarray:
    """``(len(images), n_species × F)``: per-species averages of the per-atom descriptors.

    Species absent from a structure give a block of zeros. Structures with the same atom order
    (and periodicity) are evaluated together in batches.
    """
    import torch

    images = list(images)
    if not images:
        return np.zeros((0, 0))
    if descriptor is None:
        descriptor = _default_descriptor(images)
    species = sorted({int(z) for a in images for z in a.numbers})
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(images):
        groups.setdefault((tuple(int(z) for z in a.numbers), bool(np.any(a.pbc))), []).append(i)
    out: np.ndarray | None = None
    dtype = torch.float32
    with torch.no_grad():
        for (numbers, periodic), idx in groups.items():
            num = torch.as_tensor(numbers, dtype=torch.long)
            num_np = np.array(numbers)
            for start in range(0, len(idx), batch):
                chunk = idx[start:start + batch]
                pos = torch.as_tensor(np.array([images[i].positions for i in chunk]), dtype=dtype)
                cell = (torch.as_tensor(np.array([images[i].cell.array for i in chunk]),
                                        dtype=dtype) if periodic else None)
                d = descriptor.forward_batch(pos, num, cell, periodic).cpu().numpy()
                n_feat = d.shape[-1]
                if out is None:
                    out = np.zeros((len(images), len(species) * n_feat))
                for s, z in enumerate(species):
                    mask = num_np == z
                    if mask.any():
                        out[chunk, s * n_feat:(s + 1) * n_feat] = d[:, mask].mean(axis=1)
    return out


def representatives(images: Sequence[Atoms], k: int, descriptor=None,
                    min_distance: float | str | None = "covalent",
                    covalent_fraction: float = 0.5, n_components: int | float = 2,
                    random_state: int = 0, return_info: bool = False,
                    features: np.ndarray | None = None, accept=None, group=None,
                    prefer=None):
    """``k`` structures of ``images`` that represent its variety (fewer if fewer remain).

    Drops structures with atoms too close (see :func:`too_close`), computes per-species averaged
    descriptors (``descriptor``: any object with ``forward_batch(positions, numbers, cell, pbc)``;
    default ``SphericalBessel(r_cut=5, n_max=4, max_neighbours=20)`` as in the paper), projects
    them onto ``n_components`` principal components, runs k-means with ``k`` clusters and returns
    the structure nearest each centre, as copies with ``info["cluster"]`` and
    ``info["source_index"]`` (index in ``images``). Exact duplicates are counted once, so the
    returned structures are distinct. ``features``: precomputed :func:`structure_features` of
    ``images`` (one row per image), to reuse across calls.

    ``accept``: an optional cheap test ``accept(atoms) -> bool`` applied after the distance
    check (e.g. "the unrelaxed bond graph is one valence-saturated molecule"); rejected
    structures are dropped. ``group``: an optional identity ``group(atoms) -> hashable or None``
    (e.g. a bond-graph hash): then no two picked structures share a group; structures are
    k-means clustered as before, each cluster offers its members nearest the centre first, and a
    cluster whose members all belong to groups already taken gives nothing; groups that no
    cluster offered then fill the remaining slots (most populated first, each by its member
    nearest a centre), so every group is represented when there are at most ``k``; when fewer
    than ``k`` groups exist, fewer than ``k`` structures come back. ``None`` groups never clash.

    ``prefer``: an optional badness ``prefer(atoms) -> number`` (lower is better, e.g. the
    number of atoms without their ideal coordination, see
    :func:`ase_mlgen.structures.coordination.coordination_defects`): only the structures whose
    badness is at most the smallest level that still leaves ``k`` of them are clustered, so
    ideal ones are picked when there are ``k``, and the least bad otherwise.

    ``return_info=True`` returns ``(picked, info)`` with ``info`` holding the PCA coordinates of
    all kept structures (``"pca"``), their indices (``"kept"``), the k-means labels, the centres
    and the explained variance ratio, for plots.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    images = list(images)
    if k < 1:
        raise ValueError("k must be at least 1")
    kept = [i for i, a in enumerate(images)
            if not too_close(a, min_distance, covalent_fraction)]
    n_close = len(images) - len(kept)
    if accept is not None:
        kept = [i for i in kept if accept(images[i])]
    prefer_limit = None
    if prefer is not None and kept:
        badness = np.array([float(prefer(images[i])) for i in kept])
        levels = np.unique(badness)
        counts = np.searchsorted(np.sort(badness), levels, side="right")
        prefer_limit = float(levels[np.argmax(counts >= k)] if counts[-1] >= k else levels[-1])
        kept = [i for i, b in zip(kept, badness) if b <= prefer_limit]
    info: dict = {"n_input": len(images), "kept": kept, "n_dropped": len(images) - len(kept),
                  "n_too_close": n_close, "prefer_limit": prefer_limit}
    if not kept:
        return ([], info) if return_info else []
    # exact duplicates (same elements, positions within 1e-5 Å) are clustered once
    seen: dict[bytes, int] = {}
    unique_rows = []
    for row, i in enumerate(kept):
        a = images[i]
        key = (a.numbers.tobytes() + np.round(a.positions, 5).tobytes()
               + np.round(a.cell.array, 5).tobytes())
        if key not in seen:
            seen[key] = row
            unique_rows.append(row)
    unique_rows = np.array(unique_rows, dtype=int)
    if features is not None:
        features = np.asarray(features)
        if len(features) != len(images):
            raise ValueError("features must have one row per image")
        feats_u = features[[kept[r] for r in unique_rows]]
    else:
        feats_u = structure_features([images[kept[r]] for r in unique_rows], descriptor)
    n_comp = n_components
    if isinstance(n_comp, int):
        n_comp = max(1, min(n_comp, feats_u.shape[0], feats_u.shape[1]))
    if feats_u.shape[0] > 1:
        pca = PCA(n_components=n_comp, random_state=random_state)
        coords = pca.fit_transform(feats_u)
        info["explained_variance_ratio"] = pca.explained_variance_ratio_.tolist()
    else:
        coords = np.zeros((1, 1))
    k_eff = min(k, len(unique_rows))
    km = KMeans(n_clusters=k_eff, random_state=random_state, n_init=10).fit(coords)
    picked, chosen = [], []
    taken: set = set()
    for c, centre in enumerate(km.cluster_centers_):
        members = np.nonzero(km.labels_ == c)[0]
        if len(members) == 0:
            continue
        order = members[np.argsort(((coords[members] - centre) ** 2).sum(axis=1))]
        best = None
        for m in (order if group is not None else order[:1]):
            if group is None:
                best = m
                break
            g = group(images[kept[unique_rows[m]]])
            if g is None or g not in taken:
                best = m
                if g is not None:
                    taken.add(g)
                break
        if best is None:
            continue
        source = kept[unique_rows[best]]
        if source in chosen:
            continue
        chosen.append(source)
        atoms = images[source].copy()
        atoms.info.update(images[source].info)
        atoms.info["cluster"] = int(c)
        atoms.info["source_index"] = int(source)
        picked.append(atoms)
    if group is not None and len(picked) < k:
        # groups that no cluster offered (all their members sat in clusters that gave another
        # group first): their member nearest any centre fills the remaining slots, the most
        # populated groups first
        dist = ((coords[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1).min(axis=1)
        best_of: dict = {}
        size: Counter = Counter()
        for m in range(len(unique_rows)):
            g = group(images[kept[unique_rows[m]]])
            if g is None or g in taken:
                continue
            size[g] += 1
            if g not in best_of or dist[m] < dist[best_of[g]]:
                best_of[g] = m
        for g, _ in size.most_common(k - len(picked)):
            m = best_of[g]
            source = kept[unique_rows[m]]
            taken.add(g)
            chosen.append(source)
            atoms = images[source].copy()
            atoms.info.update(images[source].info)
            atoms.info["cluster"] = int(km.labels_[m])
            atoms.info["source_index"] = int(source)
            picked.append(atoms)
    info.update({"pca": coords, "unique_kept": [kept[i] for i in unique_rows],
                 "labels": km.labels_, "centres": km.cluster_centers_, "picked": chosen})
    return (picked, info) if return_info else picked
