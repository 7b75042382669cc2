"""Molecule identity by bond graph, and the 14 constitutional isomers of C5H12O.

Two atoms are bonded when their distance is below ``scale`` × the sum of their covalent radii
(``ase.data.covalent_radii``; ``scale=1.2`` by default). Two molecules are the same when their
bond graphs are isomorphic with element labels (``networkx``). This identifies *constitutional*
isomers (connectivity), not conformers or stereo-isomers.

>>> from ase.build import molecule
>>> same_molecule(molecule("CH3CH2OH"), molecule("CH3OCH3"))
False
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import networkx as nx
import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from networkx.algorithms.isomorphism import categorical_node_match

#: usual valences used to call a bond graph chemically valid (saturated, neutral, no radicals)
VALENCE = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1, "Si": 4, "S": 2, "Cl": 1}


def bond_graph(atoms: Atoms, scale: float = 1.2, distances: np.ndarray | None = None
               ) -> nx.Graph:
    """The bond graph of ``atoms``: nodes are atom indices with attribute ``symbol``.

    Atoms ``i`` and ``j`` are bonded when ``d_ij < scale * (r_i + r_j)`` with ASE covalent radii;
    periodic structures use the minimum-image distance. ``distances``: the ``(N, N)`` matrix of
    those distances in Å when already at hand (e.g. to build graphs at several scales).
    """
    n = len(atoms)
    graph = nx.Graph()
    symbols = atoms.get_chemical_symbols()
    for i, s in enumerate(symbols):
        graph.add_node(i, symbol=s)
    if n < 2:
        return graph
    d = (atoms.get_all_distances(mic=bool(np.any(atoms.pbc))) if distances is None
         else np.asarray(distances))
    if d.shape != (n, n):
        raise ValueError(f"distances must be a {n} x {n} matrix, got shape {d.shape}")
    radii = covalent_radii[atoms.numbers]
    cutoff = scale * (radii[:, None] + radii[None, :])
    i_idx, j_idx = np.nonzero(np.triu(d < cutoff, k=1))
    graph.add_edges_from(zip(i_idx.tolist(), j_idx.tolist()))
    return graph


def heavy_atom_graph(graph: nx.Graph) -> nx.Graph:
    """The subgraph of the non-hydrogen atoms."""
    return graph.subgraph([n for n, d in graph.nodes(data=True) if d["symbol"] != "H"]).copy()


def is_valid_molecule(atoms_or_graph: Atoms | nx.Graph, valence: dict[str, int] | None = None,
                      scale: float = 1.2) -> bool:
    """True when the bond graph is one connected piece and every atom has its usual valence."""
    graph = (atoms_or_graph if isinstance(atoms_or_graph, nx.Graph)
             else bond_graph(atoms_or_graph, scale))
    valence = VALENCE if valence is None else valence
    if graph.number_of_nodes() == 0 or not nx.is_connected(graph):
        return False
    for node, data in graph.nodes(data=True):
        expected = valence.get(data["symbol"])
        if expected is not None and graph.degree[node] != expected:
            return False
    return True


def _match(g1: nx.Graph, g2: nx.Graph) -> bool:
    return nx.is_isomorphic(g1, g2, node_match=categorical_node_match("symbol", None))


def same_molecule(a: Atoms, b: Atoms, scale: float = 1.2) -> bool:
    """True when ``a`` and ``b`` have isomorphic bond graphs (same elements, same connectivity)."""
    if sorted(a.get_chemical_symbols()) != sorted(b.get_chemical_symbols()):
        return False
    return _match(bond_graph(a, scale), bond_graph(b, scale))


def graph_hash(graph: nx.Graph) -> str:
    """Weisfeiler-Lehman hash with element labels: equal for isomorphic graphs (a fast pre-check)."""
    return nx.weisfeiler_lehman_graph_hash(graph, node_attr="symbol")


def molecule_identity(atoms_or_graph: Atoms | nx.Graph, scale: float = 1.2,
                      valence: dict[str, int] | None = None) -> str | None:
    """A label of the constitutional isomer of ``atoms``: the element-labelled Weisfeiler–Lehman
    hash of its bond graph when that graph is one valence-saturated molecule, else ``None``.
    A bond graph given instead of ``atoms`` is used as it is.

    Needs no list of expected isomers, so it serves as ``group=`` of
    :func:`ase_mlgen.select.representatives` for any composition (one pick per isomer)."""
    graph = (atoms_or_graph if isinstance(atoms_or_graph, nx.Graph)
             else bond_graph(atoms_or_graph, scale))
    if not is_valid_molecule(graph, valence):
        return None
    return graph_hash(graph)


def heavy_atom_skeleton(graph: nx.Graph, valence: dict[str, int] | None = None
                        ) -> nx.Graph | None:
    """The heavy-atom (non-hydrogen) subgraph of a bond graph when it can be the skeleton of one
    molecule with these hydrogens, else ``None``.

    It can when the heavy atoms form one connected piece, no heavy atom has more heavy
    neighbours than its valence, and the hydrogens fit the free valences: their number is at
    most the sum of ``valence − heavy degree`` and differs from it by an even number (the
    difference closes rings or makes double bonds). Where the hydrogens sit does not matter:
    a generated structure with a sound skeleton and one misplaced hydrogen passes. Elements
    without a valence in ``valence`` (default :data:`VALENCE`) are never over-bonded. The
    skeleton is a read-only view of ``graph`` (``.copy()`` it to change it).
    """
    valence = VALENCE if valence is None else valence
    heavy = graph.subgraph([n for n, d in graph.nodes(data=True) if d["symbol"] != "H"])
    if heavy.number_of_nodes() == 0 or not nx.is_connected(heavy):
        return None
    n_h = graph.number_of_nodes() - heavy.number_of_nodes()
    free = 0
    for node, data in heavy.nodes(data=True):
        v = valence.get(data["symbol"])
        if v is None:
            return heavy if n_h == 0 else None
        if heavy.degree[node] > v:
            return None
        free += v - heavy.degree[node]
    if n_h > free or (free - n_h) % 2:
        return None
    return heavy


def skeleton_identity(atoms_or_graph: Atoms | nx.Graph, scale: float = 1.2,
                      valence: dict[str, int] | None = None) -> str | None:
    """A label of the heavy-atom skeleton of ``atoms`` (element-labelled Weisfeiler–Lehman hash),
    or ``None`` when the heavy atoms cannot be one molecule's skeleton (see
    :func:`heavy_atom_skeleton`). A bond graph given instead of ``atoms`` is used as it is.

    Coarser than :func:`molecule_identity`, which needs every hydrogen in place: for saturated
    molecules (C5H12O, alkanes, ...) the skeleton fixes the constitutional isomer, and a
    relaxation usually moves a misplaced hydrogen without breaking the skeleton. Hashes of
    skeletons and of whole bond graphs are different labels even for the same molecule."""
    graph = (atoms_or_graph if isinstance(atoms_or_graph, nx.Graph)
             else bond_graph(atoms_or_graph, scale))
    skeleton = heavy_atom_skeleton(graph, valence)
    return None if skeleton is None else "skeleton:" + graph_hash(skeleton)


def _perpendicular(u: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to ``u`` (crossed with the axis ``u`` is least along)."""
    p = np.cross(u, np.eye(3)[int(np.argmin(np.abs(u)))])
    return p / np.linalg.norm(p)


def _hydrogen_directions(bonds: np.ndarray, n_new: int, away_from: np.ndarray,
                         centre: np.ndarray, length: float) -> np.ndarray:
    """``n_new`` unit vectors completing a tetrahedral (sp3) set around an atom whose existing
    bonds point along the rows of ``bonds``; of the free corners, those whose hydrogen at
    ``length`` Å from ``centre`` stays farthest from the points ``away_from``."""
    cos_t, sin_t = -1.0 / 3.0, np.sqrt(8.0) / 3.0           # the tetrahedral angle, 109.47°
    candidates = []
    if len(bonds) == 0:
        candidates = [np.array(v) / np.sqrt(3.0)
                      for v in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))]
    elif len(bonds) == 1:
        u = bonds[0]
        p = _perpendicular(u)
        q = np.cross(u, p)
        for offset in np.linspace(0.0, 2 * np.pi / 3, 8, endpoint=False):  # rotations of the set
            candidates.append([cos_t * u + sin_t * (np.cos(offset + k * 2 * np.pi / 3) * p
                                                    + np.sin(offset + k * 2 * np.pi / 3) * q)
                               for k in range(3)])
    elif len(bonds) == 2:
        b = -(bonds[0] + bonds[1])
        n = np.cross(bonds[0], bonds[1])
        if np.linalg.norm(b) < 1e-6 or np.linalg.norm(n) < 1e-6:   # linear: any perpendicular
            n = _perpendicular(bonds[0])
            b = np.cross(bonds[0], n)
        b, n = b / np.linalg.norm(b), n / np.linalg.norm(n)
        half = np.arccos(cos_t) / 2.0
        candidates = [np.cos(half) * b + np.sin(half) * n, np.cos(half) * b - np.sin(half) * n]
    else:
        d = -bonds.sum(axis=0)
        norm = np.linalg.norm(d)
        candidates = [d / norm if norm > 1e-6 else np.cross(bonds[0], bonds[1])
                      / max(np.linalg.norm(np.cross(bonds[0], bonds[1])), 1e-12)]
    sets = candidates if len(bonds) == 1 else [candidates]
    best, best_score = None, -np.inf
    for corners in sets:
        corners = np.asarray(corners, dtype=float)
        if len(away_from):
            sites = centre + length * corners
            clearance = np.linalg.norm(sites[:, None, :] - away_from[None, :, :], axis=2).min(1)
        else:
            clearance = np.zeros(len(corners))
        order = np.argsort(-clearance)[:n_new]
        score = clearance[order].min() if len(order) else 0.0
        if score > best_score:
            best, best_score = corners[order], score
    return np.asarray(best)


def rebuild_hydrogens(atoms: Atoms, scale: float = 1.2,
                      valence: dict[str, int] | None = None) -> Atoms:
    """``atoms`` with every hydrogen removed and put back on the heavy-atom skeleton: each heavy
    atom gets ``valence − heavy neighbours`` hydrogens at the sum of covalent radii (C–H 1.07 Å,
    O–H 0.97 Å), in tetrahedral directions away from its bonds and from the other atoms.

    For a generated molecule with a sound skeleton and misplaced hydrogens (see
    :func:`skeleton_identity`): a relaxation from the rebuilt structure keeps the skeleton, so
    it ends as the isomer the skeleton names, where one from the generated hydrogens can break
    a bond instead. The skeleton must be saturated (the hydrogens fill every free valence; no
    rings or multiple bonds), otherwise ``ValueError``. Heavy atoms keep their order and
    positions; the hydrogens follow them. Non-periodic structures only.
    """
    if atoms.pbc.any():
        raise ValueError("rebuild_hydrogens works on molecules (no periodic boundaries)")
    valence = VALENCE if valence is None else valence
    graph = bond_graph(atoms, scale)
    skeleton = heavy_atom_skeleton(graph, valence)
    if skeleton is None:
        raise ValueError("the heavy atoms are not the skeleton of one molecule with these "
                         "hydrogens")
    heavy = sorted(skeleton.nodes)
    missing = {skeleton.nodes[i]["symbol"] for i in heavy} - set(valence)
    if missing:
        raise ValueError(f"no valence for {sorted(missing)}: pass valence={{...}}")
    free = {i: valence[skeleton.nodes[i]["symbol"]] - skeleton.degree[i] for i in heavy}
    n_h = len(atoms) - len(heavy)
    if sum(free.values()) != n_h:
        raise ValueError(f"{n_h} hydrogens do not fill the skeleton's {sum(free.values())} free "
                         "valences (rings or multiple bonds): nothing to rebuild")
    positions = atoms.positions
    h_length = covalent_radii[1]                               # hydrogen
    placed: list[np.ndarray] = []
    for i in heavy:
        if free[i] == 0:
            continue
        bonds = np.array([positions[j] - positions[i] for j in skeleton.neighbors(i)]
                         ).reshape(-1, 3)
        bonds /= np.linalg.norm(bonds, axis=1, keepdims=True)
        others = np.array([positions[j] for j in heavy if j != i] + placed).reshape(-1, 3)
        length = h_length + covalent_radii[atoms.numbers[i]]
        for d in _hydrogen_directions(bonds, free[i], others, positions[i], length):
            placed.append(positions[i] + length * d)
    rebuilt = Atoms(numbers=[atoms.numbers[i] for i in heavy] + [1] * len(placed),
                    positions=np.vstack([positions[heavy], np.array(placed).reshape(-1, 3)]),
                    cell=atoms.cell, pbc=atoms.pbc)
    rebuilt.info.update(atoms.info)
    rebuilt.info["hydrogens_rebuilt"] = True
    return rebuilt


def is_plausible_molecule(atoms_or_graph: Atoms | nx.Graph, scale: float = 1.3,
                          valence: dict[str, int] | None = None) -> bool:
    """A cheap sanity check of an unrelaxed structure: one connected piece at ``scale`` × the
    covalent radii (more generous than the 1.2 of :func:`bond_graph`) with no atom over its
    valence (elements without one in ``valence`` are never over-bonded). A bond graph given
    instead of ``atoms`` is used as it is (``scale`` is then ignored)."""
    valence = VALENCE if valence is None else valence
    graph = (atoms_or_graph if isinstance(atoms_or_graph, nx.Graph)
             else bond_graph(atoms_or_graph, scale))
    if graph.number_of_nodes() == 0 or not nx.is_connected(graph):
        return False
    return all(graph.degree[i] <= valence.get(d["symbol"], graph.degree[i])
               for i, d in graph.nodes(data=True))


def unique_molecules(images: Iterable[Atoms], scale: float = 1.2,
                     valid_only: bool = False) -> list[list[int]]:
    """Group ``images`` by molecule identity; returns lists of indices, one list per molecule.

    ``valid_only=True`` leaves out structures that are not one valence-saturated molecule.
    """
    groups: list[tuple[str, nx.Graph, list[int]]] = []
    for index, atoms in enumerate(images):
        graph = bond_graph(atoms, scale)
        if valid_only and not is_valid_molecule(graph):
            continue
        key = graph_hash(graph)
        for gkey, gref, members in groups:
            if gkey == key and _match(graph, gref):
                members.append(index)
                break
        else:
            groups.append((key, graph, [index]))
    return [members for _, _, members in groups]


# --------------------------------------------------------------------------------------------
# C5H12O: 8 alcohols and 6 ethers, as heavy-atom skeletons (carbons 0..4 and one oxygen "O")
# --------------------------------------------------------------------------------------------
C5H12O_ISOMERS: dict[str, dict] = {
    # alcohols
    "pentan-1-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (3, 4), (0, "O")]},
    "pentan-2-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (3, 4), (1, "O")]},
    "pentan-3-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (3, 4), (2, "O")]},
    "2-methylbutan-1-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (1, 4), (0, "O")]},
    "3-methylbutan-1-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (2, 4), (0, "O")]},
    "2-methylbutan-2-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (1, 4), (1, "O")]},
    "3-methylbutan-2-ol": {"kind": "alcohol", "bonds": [(0, 1), (1, 2), (2, 3), (2, 4), (1, "O")]},
    "2,2-dimethylpropan-1-ol": {"kind": "alcohol",
                                "bonds": [(0, 1), (1, 2), (1, 3), (1, 4), (0, "O")]},
    # ethers
    "1-methoxybutane": {"kind": "ether", "bonds": [(0, "O"), ("O", 1), (1, 2), (2, 3), (3, 4)]},
    "2-methoxybutane": {"kind": "ether", "bonds": [(0, "O"), ("O", 1), (1, 2), (2, 3), (1, 4)]},
    "1-methoxy-2-methylpropane": {"kind": "ether",
                                  "bonds": [(0, "O"), ("O", 1), (1, 2), (2, 3), (2, 4)]},
    "2-methoxy-2-methylpropane": {"kind": "ether",
                                  "bonds": [(0, "O"), ("O", 1), (1, 2), (1, 3), (1, 4)]},
    "1-ethoxypropane": {"kind": "ether", "bonds": [(0, 1), (1, "O"), ("O", 2), (2, 3), (3, 4)]},
    "2-ethoxypropane": {"kind": "ether", "bonds": [(0, 1), (1, "O"), ("O", 2), (2, 3), (2, 4)]},
}


def _skeleton(bonds: Sequence[tuple]) -> nx.Graph:
    graph = nx.Graph()
    for a, b in bonds:
        for node in (a, b):
            graph.add_node(node, symbol="O" if node == "O" else "C")
        graph.add_edge(a, b)
    return graph


_C5H12O_SKELETONS = {name: _skeleton(spec["bonds"]) for name, spec in C5H12O_ISOMERS.items()}


def classify_c5h12o(atoms: Atoms, scale: float = 1.2) -> str | None:
    """Name of the C5H12O constitutional isomer of ``atoms``, or None.

    None when the formula is not C5H12O, or the bond graph is not one molecule with every C
    four-bonded, O two-bonded and H one-bonded (a fragment, a radical pair, a ring with a
    dangling H, ...). With valid valences the heavy-atom skeleton fixes the isomer.
    """
    if Counter(atoms.get_chemical_symbols()) != Counter({"C": 5, "H": 12, "O": 1}):
        return None
    graph = bond_graph(atoms, scale)
    if not is_valid_molecule(graph):
        return None
    skeleton = heavy_atom_graph(graph)
    for name, ref in _C5H12O_SKELETONS.items():
        if _match(skeleton, ref):
            return name
    return None  # unreachable for a valid saturated acyclic C5H12O, kept for safety


def count_c5h12o_isomers(images: Iterable[Atoms], scale: float = 1.2) -> dict[str, int]:
    """How many of ``images`` are each C5H12O isomer (only the isomers found appear)."""
    counts: Counter = Counter()
    for atoms in images:
        name = classify_c5h12o(atoms, scale)
        if name is not None:
            counts[name] += 1
    return dict(counts)
