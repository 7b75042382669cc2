"""Choosing generated molecules by bond graph: heavy-atom skeletons and the three-tier filter."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from ase_mlgen.select import molecule_representatives, structure_features
from ase_mlgen.select.molecules import molecule_label, molecule_labels, tier_counts
from ase_mlgen.structures.molecules import (bond_graph, heavy_atom_skeleton,
                                            is_plausible_molecule, is_valid_molecule,
                                            molecule_identity, rebuild_hydrogens,
                                            same_molecule, skeleton_identity)


def _hydrogens_on(atoms, element):
    """Indices of the hydrogens bonded to an atom of ``element``."""
    graph = bond_graph(atoms)
    symbols = atoms.get_chemical_symbols()
    return [h for h, s in enumerate(symbols) if s == "H"
            and any(symbols[j] == element for j in graph.neighbors(h))]


def misplaced_hydrogen(atoms, pairs=((0, 1),), shift=0.6):
    """A copy with hydrogens moved onto others: for each pair ``(a, b)`` of positions in the
    list of carbon-bound hydrogens, hydrogen ``a`` goes ``shift`` Å from hydrogen ``b`` (an H–H
    bond). The bond graph is no longer valid; the heavy-atom skeleton is unchanged."""
    out = atoms.copy()
    on_carbon = _hydrogens_on(atoms, "C")
    for a, b in pairs:
        h1, h2 = on_carbon[a], on_carbon[b]
        direction = out.positions[h1] - out.positions[h2]
        out.positions[h1] = out.positions[h2] + shift * direction / np.linalg.norm(direction)
    return out


def _heavy_atom_moved(atoms, element="O", by=(6.0, 0.0, 0.0)):
    out = atoms.copy()
    out.positions[out.get_chemical_symbols().index(element)] += by
    return out


def test_skeleton_survives_a_misplaced_hydrogen():
    ethanol, ether = molecule("CH3CH2OH"), molecule("CH3OCH3")
    broken = misplaced_hydrogen(ethanol)
    assert molecule_identity(ethanol) is not None
    assert molecule_identity(broken) is None          # H–H bond: not a valid molecule
    assert skeleton_identity(broken) == skeleton_identity(ethanol)
    assert skeleton_identity(ether) != skeleton_identity(ethanol)   # C–O–C against C–C–O
    # the skeleton and the whole-graph labels never coincide
    assert skeleton_identity(ethanol) != molecule_identity(ethanol)


def test_skeleton_rejects_impossible_heavy_atom_graphs():
    ethanol = molecule("CH3CH2OH")
    assert skeleton_identity(_heavy_atom_moved(ethanol)) is None   # two heavy fragments
    # too many hydrogens for the skeleton's free valences (C2O holds six)
    extra = ethanol + molecule("H2")
    extra.positions[-2:] += [0.0, 0.0, 8.0]
    assert heavy_atom_skeleton(bond_graph(ethanol)) is not None
    assert heavy_atom_skeleton(bond_graph(extra)) is None
    # an odd number of free valences left over cannot close rings or make double bonds
    minus_one = ethanol.copy()
    del minus_one[_hydrogens_on(minus_one, "C")[0]]
    assert skeleton_identity(minus_one) is None
    minus_two = minus_one.copy()
    del minus_two[_hydrogens_on(minus_two, "C")[0]]
    assert skeleton_identity(minus_two) is not None   # as in ethenol / a C=C double bond


def test_plausible_molecule():
    ethanol = molecule("CH3CH2OH")
    assert is_plausible_molecule(ethanol)
    apart = ethanol.copy()
    apart.positions[0] += [6.0, 0.0, 0.0]
    assert not is_plausible_molecule(apart)
    crowded = ethanol.copy()
    h = _hydrogens_on(crowded, "C")[0]
    c = [j for j in bond_graph(crowded).neighbors(h)][0]
    o = crowded.get_chemical_symbols().index("O")
    # the hydrogen halfway between its carbon and the oxygen: bonded to both (over-bonded H)
    crowded.positions[h] = 0.5 * (crowded.positions[c] + crowded.positions[o])
    assert not is_plausible_molecule(crowded)


def _pool():
    rng = np.random.default_rng(0)
    ethanol, ether = molecule("CH3CH2OH"), molecule("CH3OCH3")
    valid = [ethanol.copy() for _ in range(3)]
    for a in valid:
        a.positions += rng.normal(scale=0.02, size=a.positions.shape)
    skeleton = [misplaced_hydrogen(ether), misplaced_hydrogen(ether, shift=0.65),
                misplaced_hydrogen(ether, pairs=((0, 1), (3, 4)))]     # two H-H bonds: worse
    fragments = [_heavy_atom_moved(ethanol), _heavy_atom_moved(ether)]  # heavy atoms apart
    return valid + skeleton + fragments


def test_molecule_representatives_tiers():
    pool = _pool()
    labels = molecule_labels(pool)
    assert tier_counts(labels) == {"molecule": 3, "skeleton": 3, "other": 2}
    assert labels[3].misfit < labels[5].misfit
    features = structure_features(pool)
    picked, info = molecule_representatives(pool, 4, features=features, labels=labels,
                                            return_info=True)
    tiers = [a.info["tier"] for a in picked]
    assert tiers == ["molecule", "skeleton"]          # fragments are not plausible: 2 < k
    assert picked[0].info["source_index"] in (0, 1, 2)
    # of the ether skeleton's structures, one with the fewest atoms off their valence
    assert labels[picked[1].info["source_index"]].misfit == labels[3].misfit
    assert info["distinct_molecules"] == 1 and info["new_skeletons"] == 1
    assert info["picked_per_tier"] == {"molecule": 1, "skeleton": 1, "other": 0}
    # without the plausibility check the fragments fill the remaining picks
    loose = molecule_representatives(pool, 4, features=features, plausible_only=False)
    assert [a.info["tier"] for a in loose][:2] == ["molecule", "skeleton"]
    assert len(loose) == 4 and {a.info["tier"] for a in loose[2:]} == {"other"}
    # the skeleton tier can be switched off: the ether structures then compete as "other"
    plain = molecule_representatives(pool, 3, features=features, skeletons=False)
    assert [a.info["tier"] for a in plain][0] == "molecule"
    assert "skeleton" not in {a.info["tier"] for a in plain}
    # a skeleton already covered by a valid molecule is not picked again
    same = [pool[0], misplaced_hydrogen(pool[0])]
    assert [a.info["tier"] for a in molecule_representatives(same, 2)] == ["molecule"]


@pytest.mark.parametrize("name", ["CH3CH2OH", "CH3OCH3", "isobutane", "CH4", "H2O",
                                  "trans-butane"])
def test_rebuild_hydrogens_keeps_a_valid_molecule(name):
    atoms = molecule(name)
    rebuilt = rebuild_hydrogens(atoms)
    assert rebuilt.info["hydrogens_rebuilt"]
    assert rebuilt.get_chemical_formula() == atoms.get_chemical_formula()
    assert same_molecule(rebuilt, atoms)
    heavy = [i for i, z in enumerate(atoms.numbers) if z != 1]
    np.testing.assert_allclose(rebuilt.positions[:len(heavy)], atoms.positions[heavy])
    graph = bond_graph(rebuilt)
    for h in (i for i, z in enumerate(rebuilt.numbers) if z == 1):
        (j,) = graph.neighbors(h)            # one bond, at the sum of covalent radii
        expected = 0.97 if rebuilt[j].symbol == "O" else 1.07
        assert abs(rebuilt.get_distance(h, j) - expected) < 0.02
    d = rebuilt.get_all_distances()[np.triu_indices(len(rebuilt), 1)]
    assert d.min() > 0.95


def test_rebuild_hydrogens_repairs_a_misplaced_hydrogen():
    ether = molecule("CH3OCH3")
    broken = misplaced_hydrogen(ether, pairs=((0, 1), (3, 4)))
    assert not is_valid_molecule(broken) and skeleton_identity(broken) is not None
    rebuilt = rebuild_hydrogens(broken)
    assert is_valid_molecule(rebuilt) and same_molecule(rebuilt, ether)
    # a skeleton pick comes back rebuilt with rebuild=True, as generated without
    pool = _pool()
    picked = molecule_representatives(pool, 2, rebuild=True)
    skeleton = [a for a in picked if a.info["tier"] == "skeleton"]
    assert len(skeleton) == 1 and skeleton[0].info["hydrogens_rebuilt"]
    assert same_molecule(skeleton[0], ether)
    plain = molecule_representatives(pool, 2)
    assert not any(a.info.get("hydrogens_rebuilt") for a in plain)


def test_rebuild_hydrogens_refuses_what_it_cannot_rebuild():
    with pytest.raises(ValueError, match="free valences"):
        rebuild_hydrogens(molecule("C6H6"))                   # a ring with double bonds
    with pytest.raises(ValueError, match="skeleton"):
        rebuild_hydrogens(_heavy_atom_moved(molecule("CH3CH2OH")))   # heavy atoms apart
    with pytest.raises(ValueError, match="no valence"):
        rebuild_hydrogens(molecule("CO2"), valence={"C": 4, "H": 1})   # O unknown, no H
    periodic = molecule("CH4")
    periodic.cell, periodic.pbc = [6, 6, 6], True
    with pytest.raises(ValueError, match="periodic"):
        rebuild_hydrogens(periodic)


def test_molecule_representatives_bad_input():
    pool = _pool()
    with pytest.raises(ValueError, match="k must be"):
        molecule_representatives(pool, 0)
    with pytest.raises(ValueError, match="one entry per image"):
        molecule_representatives(pool, 2, labels=molecule_labels(pool[:2]))
    with pytest.raises(ValueError, match="one row per image"):
        molecule_representatives(pool, 2, features=np.zeros((2, 3)))
    assert molecule_label(pool[-1]).plausible is False


def test_bond_graph_from_given_distances():
    ethanol = molecule("CH3CH2OH")
    d = ethanol.get_all_distances()
    assert sorted(bond_graph(ethanol, 1.2, d).edges) == sorted(bond_graph(ethanol).edges)
    with pytest.raises(ValueError, match="distances must be"):
        bond_graph(ethanol, 1.2, d[:3, :3])
