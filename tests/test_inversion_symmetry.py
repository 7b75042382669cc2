"""Point groups, symmetric templates and the symmetric search of the fingerprint inversion."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.cluster import Icosahedron, Octahedron

from ase_mlgen.descriptors import SphericalBessel
from ase_mlgen.inversion.compare import cluster_rmsd
from ase_mlgen.inversion.inverter import ACSFInverter
from ase_mlgen.inversion.symmetric_search import symmetric_candidates
from ase_mlgen.inversion.symmetry import (POINT_GROUPS, decompositions, equal_rows,
                                          fitting_groups, hypothesis_template, point_group,
                                          pooled_hypotheses, random_site_coordinates,
                                          random_template, site_types)
from tests.conftest import small_acsf as _small_acsf

small_acsf = partial(_small_acsf, r_cut=6.0)


def same_point_set(a, b, tol=1e-6) -> bool:
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return bool(np.all(d.min(axis=1) < tol) and np.all(d.min(axis=0) < tol))


@pytest.mark.parametrize("symbol, order", [("Ih", 120), ("I", 60), ("Oh", 48), ("Td", 24),
                                           ("Th", 24), ("D5h", 20), ("D3d", 12), ("C3v", 6),
                                           ("S4", 4), ("Cs", 2)])
def test_point_groups_are_closed_orthogonal_groups(symbol, order):
    ops = point_group(symbol)
    assert len(ops) == order
    assert np.allclose(np.einsum("gij,gkj->gik", ops, ops), np.eye(3), atol=1e-9)
    keys = {tuple(np.round(g, 5).ravel() + 0.0) for g in ops}
    for g in ops[:: max(1, order // 8)]:  # products stay in the group
        assert all(tuple(np.round(g @ h, 5).ravel() + 0.0) in keys for h in ops)
    with pytest.raises(ValueError):
        point_group("X7")


def test_site_types_give_the_orbits_of_the_icosahedral_group():
    types = site_types("Ih")
    assert sorted((t.dim, t.size) for t in types) == [(0, 1), (1, 12), (1, 20), (1, 30),
                                                       (2, 60), (3, 120)]
    ops = point_group("Ih")
    rng = np.random.default_rng(1)
    for t in types:  # the images of a point on the site are the whole orbit, once each
        x = t.basis @ rng.normal(size=t.dim) if t.dim else np.zeros(3)
        orbit = t.images @ x
        assert same_point_set(np.concatenate([g @ orbit.T for g in ops], axis=1).T, orbit)
        if t.dim:
            assert np.linalg.norm(orbit[:, None] - orbit[None], axis=-1)[
                np.triu_indices(t.size, 1)].min() > 1e-6
    assert all(site_types(s) for s in POINT_GROUPS)


def test_equal_rows_and_fitting_groups_read_the_symmetry_of_a_fingerprint():
    acsf = small_acsf(["Pt"])
    ico = Icosahedron("Pt", 3)  # Mackay icosahedron, 55 atoms
    groups = equal_rows(acsf.compute(ico), ico.numbers)
    assert sorted(len(g) for g in groups) == [1, 12, 12, 30]
    fits = fitting_groups([len(g) for g in groups])
    assert {s for s, _ in fits} == {"Ih", "I"} and fits[0][1] == 3
    ch4 = molecule("CH4")
    assert sorted(len(g) for g in equal_rows(small_acsf(["H", "C"]).compute(ch4),
                                             ch4.numbers)) == [1, 4]
    rattled = ico.copy()
    rattled.rattle(0.05, seed=0)
    groups = equal_rows(acsf.compute(rattled), rattled.numbers)
    assert len(groups) == len(rattled) and fitting_groups([1] * len(groups)) == []


def test_templates_place_symmetric_structures():
    rng = np.random.default_rng(0)
    groups = [np.array([0]), np.arange(1, 13), np.arange(13, 25), np.arange(25, 55)]
    tpl = random_template("Ih", groups, 55, rng)
    assert tpl.n_params == 3 and list(tpl.first) == [0, 1, 13, 25]
    pos = tpl.positions(random_site_coordinates(tpl, 5.0, rng))
    for g in point_group("Ih")[::17]:  # every operation maps the structure onto itself
        assert same_point_set(pos @ g.T, pos)
    assert random_template("Oh", groups, 55, rng) is None  # no 30-atom orbit in Oh
    # pooled hypotheses: all ways to fill N atoms, the fewest coordinates first
    assert (1, (4, 5)) in decompositions(13, "Ih", 12)  # 12 on the C5 axes + the centre
    symbol, sites = pooled_hypotheses(55)[0]
    assert symbol in ("Ih", "I")
    assert sorted(site_types(symbol)[k].size for k in sites) == [1, 12, 12, 30]
    hyp = hypothesis_template(symbol, sites, 55)
    assert sorted(hyp.first) == list(range(4))
    assert sorted(np.concatenate(hyp.orbits)) == list(range(55))


@pytest.mark.parametrize("make", [lambda: small_acsf(["C", "H", "O"]),
                                  lambda: SphericalBessel(["C", "H", "O"], r_cut=5.0)])
def test_descriptor_rows_of_selected_centres(make):
    desc = make()
    mol = molecule("CH3CH2OH")
    pos = torch.tensor(mol.positions)[None].repeat(2, 1, 1)
    full = desc.forward_batch(pos, mol.numbers)
    rows = desc.forward_batch(pos, mol.numbers, centres=[4, 0, 7])
    assert rows.shape == (2, 3, full.shape[-1])
    assert torch.allclose(rows, full[:, [4, 0, 7]], atol=1e-12)
    with pytest.raises(NotImplementedError):
        desc.forward_batch(pos, mol.numbers, cell=np.eye(3) * 10, pbc=True, centres=[0])


def test_symmetric_search_solves_symmetric_clusters_and_skips_the_rest():
    acsf = small_acsf(["Pt"])
    octa = Octahedron("Pt", 4, 1)  # truncated octahedron, 38 atoms: 6 + 8 + 24
    inv = ACSFInverter(acsf, n_init=4, n_hops=0, steps=100, feature_weights="auto",
                       random_state=0)
    assert inv.symmetric_starts == 32  # on by default for per-atom fingerprints
    rec = inv.reconstruct_from(octa)
    assert cluster_rmsd(octa, rec) < 0.01
    assert len(rec.info["loss_history"]) == 1  # found by the symmetric search alone
    # no repeated rows: no symmetric hypothesis
    rattled = octa.copy()
    rattled.rattle(0.05, seed=1)
    target = torch.as_tensor(acsf.compute(rattled))
    assert symmetric_candidates(lambda p, c: acsf.forward_batch(p, rattled.numbers,
                                                                centres=c),
                                target, rattled.numbers, None, 8, 10, 0.1, 5.0,
                                np.random.default_rng(0), torch.float64) is None
    assert ACSFInverter(acsf, pooling=("max", "min")).symmetric_starts == 0


def test_pooled_symmetric_search_rebuilds_an_icosahedron():
    ico = Icosahedron("Pt", 2)
    inv = ACSFInverter(small_acsf(["Pt"]), n_init=4, n_hops=0, steps=100,
                       pooling=("max", "min"), feature_weights="auto", symmetric_starts=16,
                       tol=1e-5, random_state=0)
    rec = inv.reconstruct_from(ico)
    assert cluster_rmsd(ico, rec) < 0.01
    assert len(rec.info["loss_history"]) == 1


def test_cli_invert_symmetric_starts(tmp_path):
    import json

    from ase.io import read

    from ase_mlgen.cli.main import main

    desc = small_acsf(["Pt"])
    ico = Icosahedron("Pt", 2)
    np.save(tmp_path / "fp.npy", ACSFInverter(desc, pooling=("max", "min")).fingerprint(ico))
    (tmp_path / "acsf.json").write_text(json.dumps({"kind": "ACSF", **desc.todict()}))
    out = tmp_path / "out.xyz"
    code = main(["invert", str(tmp_path / "fp.npy"), "--numbers", "Pt13", "--descriptor",
                 str(tmp_path / "acsf.json"), "--pooling", "max,min", "-o", str(out),
                 "--n-init", "4", "--n-hops", "0", "--weights", "auto", "--tol", "1e-5",
                 "--symmetric-starts", "16"])
    assert code == 0
    assert cluster_rmsd(ico, read(out)) < 0.01
