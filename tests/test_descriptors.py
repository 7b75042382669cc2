"""ACSF and SphericalBessel: DScribe parity, invariances, periodic images, gradients, bad input."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.cluster import Icosahedron

from ase_mlgen.descriptors import ACSF, TAD, SphericalBessel, pool
from ase_mlgen.descriptors.bessel import spherical_jn_torch

G2 = [[0.5, 0.0], [1.0, 1.5], [0.1, 3.0]]
G3 = [1.0, -0.5]
G4 = [[0.05, 1, -1], [0.1, 2, 1], [0.02, 4.0, 1], [0.03, 1.5, 1]]
G5 = [[0.05, 1, -1], [0.1, 2, 1], [0.02, 4, 1], [0.3, 1.5, -1], [0.01, 64, 1]]


def metal_cluster():
    atoms = Icosahedron("Pt", 2)
    atoms.rattle(0.1, seed=1)
    return atoms


def alloy_cluster():
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.1, seed=2)
    symbols = atoms.get_chemical_symbols()
    symbols[::3] = ["Au"] * len(symbols[::3])
    atoms.set_chemical_symbols(symbols)
    return atoms


def crystal():
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 2)
    atoms.rattle(0.05, seed=3)
    return atoms


def large_cluster(alloy):
    atoms = Icosahedron("Cu", 3)  # 55 atoms
    atoms.rattle(0.1, seed=5)
    if alloy:
        symbols = atoms.get_chemical_symbols()
        symbols[::4] = ["Au"] * len(symbols[::4])
        atoms.set_chemical_symbols(symbols)
    return atoms


CASES = [  # (structure, species, r_cut, periodic)
    (molecule("CH3CH2OH"), ["H", "C", "O"], 6.0, False),
    (metal_cluster(), ["Pt"], 6.0, False),
    (alloy_cluster(), ["Cu", "Au"], 5.0, False),
    (crystal(), ["Na", "Cl"], 6.5, True),  # cutoff beyond half the cell: several images
    # short cutoffs in larger clusters: the sparse three-body path (few real pairs per slot pair)
    (large_cluster(False), ["Cu"], 3.5, False),
    (large_cluster(True), ["Cu", "Au"], 4.0, False),
]


def relative_error(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("atoms, species, r_cut, periodic", CASES)
def test_acsf_matches_dscribe(atoms, species, r_cut, periodic):
    dscribe = pytest.importorskip("dscribe.descriptors")
    ref = dscribe.ACSF(r_cut=r_cut, g2_params=G2, g3_params=G3, g4_params=G4, g5_params=G5,
                       species=species, periodic=periodic).create(atoms)
    ours = ACSF(species, r_cut, g2_params=G2, g3_params=G3, g4_params=G4, g5_params=G5)
    out = ours.compute(atoms)
    assert out.shape == ref.shape == (len(atoms), ours.n_features)
    assert relative_error(out, ref) < 1e-6
    # every feature individually (not only the largest)
    big = np.abs(ref) > 1e-8
    assert np.all(np.abs(out - ref)[big] <= 1e-6 * np.abs(ref)[big])


def test_acsf_pt10_paper_settings_match_dscribe_and_keep_parameter_order():
    dscribe = pytest.importorskip("dscribe.descriptors")
    etas = [0.01, 0.06, 0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 3.5, 5.0]
    g2 = [[e, rs] for e in etas for rs in [0, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9, 10]]
    g5 = [[e, z, lam] for z in [1, 2, 4, 16, 64] for lam in [-1, 1]
          for e in [0.06, 0.1, 0.2, 0.4, 1.0]]
    rng = np.random.default_rng(0)
    images = [Atoms("Pt10", positions=rng.uniform(0, 5, (10, 3))) for _ in range(3)]
    ref = dscribe.ACSF(r_cut=20.0, g2_params=g2, g5_params=g5, species=["Pt"]).create(images)
    ours = ACSF(["Pt"], 20.0, g2_params=g2, g5_params=g5)
    out = np.stack(ours.compute_many(images))
    assert relative_error(out, ref) < 1e-6
    # g1=False gives the 190 values per atom of the Pt10 data set: [G2 (140), G5 (50)]
    no_g1 = ACSF(["Pt"], 20.0, g2_params=g2, g5_params=g5, g1=False)
    assert no_g1.n_features == 190
    np.testing.assert_allclose(no_g1.compute(images[0]), out[0][:, 1:], rtol=1e-12)
    # a permuted parameter list permutes the features the same way
    perm = rng.permutation(len(g5))
    permuted = ACSF(["Pt"], 20.0, g5_params=[g5[k] for k in perm], g1=False)
    np.testing.assert_allclose(permuted.compute(images[0]), out[0][:, 141:][:, perm], rtol=1e-12)
    pooled = no_g1.pooled(images[0])
    assert pooled.shape == (380,)
    np.testing.assert_allclose(pooled[:190], out[0][:, 1:].max(0))
    np.testing.assert_allclose(pooled[190:], out[0][:, 1:].min(0))


def descriptors():
    return [
        ACSF(["H", "C", "O"], 5.0, g2_params=G2, g3_params=G3, g4_params=G4, g5_params=G5),
        SphericalBessel(["H", "C", "O"], 4.0, n_max=4, max_neighbours=30),
        SphericalBessel(["H", "C", "O"], 4.0, n_max=3, max_neighbours=30, radial="gaussian"),
        TAD(),
    ]


def random_rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.mark.parametrize("desc", descriptors(), ids=lambda d: type(d).__name__)
def test_rotation_translation_permutation_invariance(desc):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=4)
    ref = desc.compute(atoms)
    moved = atoms.copy()
    moved.positions = atoms.positions @ random_rotation(5).T + [1.3, -2.2, 0.7]
    np.testing.assert_allclose(desc.compute(moved), ref, atol=1e-10, rtol=1e-8)
    perm = np.random.default_rng(6).permutation(len(atoms))
    np.testing.assert_allclose(desc.compute(atoms[perm]), ref[perm], atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("desc", [
    ACSF(["Na", "Cl"], 6.5, g2_params=G2, g4_params=G4, g5_params=G5),
    SphericalBessel(["Na", "Cl"], 6.0, n_max=3, max_neighbours=200),
], ids=["ACSF", "SphericalBessel"])
def test_periodic_structure_equals_its_supercell(desc):
    atoms = crystal()
    ref = desc.compute(atoms)
    sup = desc.compute(atoms * (2, 2, 2))
    np.testing.assert_allclose(sup, np.tile(ref, (8, 1)), atol=1e-9, rtol=1e-9)
    # periodic images matter: the isolated cell differs
    assert not np.allclose(desc.compute(Atoms(atoms.symbols, atoms.positions)), ref)


def check_fd(fn, x, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Autograd gradient of ``fn(x)`` (a scalar) against central finite differences."""
    x = x.detach().clone().requires_grad_(True)
    grad = torch.autograd.grad(fn(x), x)[0]
    fd = torch.zeros_like(x)
    with torch.no_grad():
        flat = x.view(-1)
        for k in range(flat.numel()):
            old = float(flat[k])
            flat[k] = old + eps
            up = float(fn(x))
            flat[k] = old - eps
            down = float(fn(x))
            flat[k] = old
            fd.view(-1)[k] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=rtol, atol=atol)


def gradcheck_positions(desc, atoms):
    """Finite-difference check of a random projection of the features (positions, cell)."""
    weights = torch.tensor(np.random.default_rng(10).normal(size=(len(atoms), desc.n_features)))
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    cell = torch.tensor(atoms.cell.array, dtype=torch.float64)
    if atoms.pbc.any():
        check_fd(lambda p: (desc.forward(p, atoms.numbers, cell, atoms.pbc) * weights).sum(), pos)
        check_fd(lambda c: (desc.forward(pos, atoms.numbers, c, atoms.pbc) * weights).sum(), cell)
    else:
        check_fd(lambda p: (desc.forward(p, atoms.numbers) * weights).sum(), pos)


@pytest.mark.parametrize("desc", descriptors()[:3] + [TAD(width=0.3)],
                         ids=["ACSF", "Bessel", "Gaussian", "TAD-smooth"])
def test_position_gradients_match_finite_differences(desc):
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=7)
    gradcheck_positions(desc, atoms)


@pytest.mark.parametrize("desc", [
    ACSF(["Na", "Cl"], 4.0, g2_params=G2[:2], g4_params=G4[:2], g5_params=G5[:2]),
    SphericalBessel(["Na", "Cl"], 4.0, n_max=2, max_neighbours=50),
], ids=["ACSF", "SphericalBessel"])
def test_position_and_cell_gradients_of_a_crystal(desc):
    atoms = bulk("NaCl", "rocksalt", a=4.2)
    atoms.rattle(0.05, seed=8)
    gradcheck_positions(desc, atoms)


def test_batched_entry_points_agree():
    desc = ACSF(["Cu", "Au"], 5.0, g2_params=G2, g5_params=G5)
    rng = np.random.default_rng(9)
    base = alloy_cluster()
    images = []
    for _ in range(5):
        a = base.copy()
        a.rattle(0.1, seed=int(rng.integers(1000)))
        images.append(a)
    images.append(molecule("H2O").copy())  # a different structure in the middle is refused
    with pytest.raises(ValueError, match="H"):
        desc.compute_many(images)
    images = images[:5] + [metal_cluster().copy()]
    images[-1].set_chemical_symbols(["Au"] * len(images[-1]))
    many = desc.compute_many(images)
    for a, f in zip(images, many):
        np.testing.assert_allclose(f, desc.compute(a), rtol=1e-12, atol=1e-14)
    pos = torch.tensor(np.stack([a.positions for a in images[:5]]))
    full = desc.forward_batch(pos, base.numbers)
    chunked = desc.forward_batch(pos, base.numbers, chunk_size=2)
    torch.testing.assert_close(full, chunked)
    torch.testing.assert_close(full, torch.tensor(np.stack(many[:5])))
    pooled = desc.pooled_batch(pos, base.numbers)
    assert pooled.shape == (5, 2 * desc.n_features)
    torch.testing.assert_close(pooled, pool(full, ("max", "min")))
    np.testing.assert_allclose(desc.pooled_many(images[:5]), pooled.numpy())


def test_spherical_bessel_radial_basis_is_orthonormal_and_smooth_at_the_cutoff():
    from scipy.special import spherical_jn

    x = torch.linspace(0.01, 25.0, 3000, dtype=torch.float64)
    for l in range(6):
        np.testing.assert_allclose(spherical_jn_torch(l, x).numpy(), spherical_jn(l, x.numpy()),
                                   atol=1e-13)
    desc = SphericalBessel(["C"], 3.0, n_max=4)
    r = torch.linspace(0.0, 3.0, 30001, dtype=torch.float64)
    g = desc.radial_functions(r).numpy()
    offset = 0
    for l in range(5):
        n_l = 5 - l
        gl = g[:, offset:offset + n_l]
        overlap = np.trapezoid(gl[:, :, None] * gl[:, None, :] * r.numpy()[:, None, None] ** 2,
                               r.numpy(), axis=0)
        np.testing.assert_allclose(overlap, np.eye(n_l), atol=1e-6)
        offset += n_l
    rr = torch.tensor([2.9999999], dtype=torch.float64, requires_grad=True)
    val = desc.radial_functions(rr)
    grad = torch.autograd.grad(val.sum(), rr)[0]
    assert np.abs(val.detach().numpy()).max() < 1e-10 and abs(float(grad)) < 1e-5


def test_spherical_bessel_table_matches_the_closed_form():
    desc = SphericalBessel(["C", "H"], 5.0, n_max=4)
    r = torch.linspace(0.0, 5.2, 20001, dtype=torch.float64, requires_grad=True)
    table, exact = desc.radial_functions(r), desc.radial_functions(r, exact=True)
    np.testing.assert_allclose(table.detach().numpy(), exact.detach().numpy(), atol=1e-11)
    g_table = torch.autograd.grad(table.sum(), r)[0]
    g_exact = torch.autograd.grad(exact.sum(), r)[0]
    np.testing.assert_allclose(g_table.numpy(), g_exact.numpy(), atol=1e-8)
    atoms = molecule("CH3CH2OH")[[0, 1, 3, 4, 5, 6, 7, 8]]   # C and H only
    direct = SphericalBessel(["C", "H"], 5.0, n_max=4, table_intervals=None)
    np.testing.assert_allclose(desc.compute(atoms), direct.compute(atoms), atol=1e-10)
    with pytest.raises(ValueError, match="table_intervals"):
        SphericalBessel(["C"], 5.0, table_intervals=3)


@pytest.mark.parametrize("descriptor", [
    ACSF(["Na", "Cl"], 7.0, g2_params=[(0.5, 2.0), (1.0, 3.5)], g4_params=[(0.005, 1, 1)]),
    SphericalBessel(["Na", "Cl"], 7.0, n_max=3, max_neighbours=400),
], ids=["ACSF", "SphericalBessel"])
def test_dense_periodic_neighbours_equal_ase_neighbour_list(descriptor, monkeypatch):
    import ase_mlgen.descriptors.neighbours as neighbours

    atoms = bulk("NaCl", "rocksalt", a=5.64)            # r_cut 7 Å > the 4 Å cell: many images
    atoms.positions += np.random.default_rng(0).normal(0.0, 3.0, atoms.positions.shape)
    atoms.cell[0] += [0.4, 0.0, 0.3]                   # skewed, positions outside the cell
    dense = descriptor.compute(atoms)
    monkeypatch.setattr(neighbours, "DENSE_PERIODIC_LIMIT", 0)
    np.testing.assert_allclose(dense, descriptor.compute(atoms), rtol=1e-9, atol=1e-9)


def test_spherical_bessel_layout_and_average():
    desc = SphericalBessel(["O", "H"], 4.0, n_max=3, max_neighbours=4)
    assert desc.species == ["H", "O"]
    assert desc.n_coefficients == 4 + 3 + 2 + 1
    assert desc.n_features == 3 * 10 + 2
    atoms = molecule("H2O")
    f = desc.compute(atoms)
    np.testing.assert_array_equal(f[:, -2:], [[0, 1], [1, 0], [1, 0]])  # O, H, H
    avg = desc.averaged(atoms)
    np.testing.assert_allclose(avg, np.concatenate([f[1:].mean(0), f[:1].mean(0)]))
    # only the max_neighbours nearest count
    water_pair = molecule("H2O") + molecule("H2O")
    water_pair.positions[3:] += [0, 0, 3.0]
    near = SphericalBessel(["H", "O"], 6.0, n_max=2, max_neighbours=2).compute(water_pair)
    alone = SphericalBessel(["H", "O"], 6.0, n_max=2, max_neighbours=2).compute(molecule("H2O"))
    np.testing.assert_allclose(near[0], alone[0])


@pytest.mark.parametrize("desc", descriptors()[:2], ids=["ACSF", "SphericalBessel"])
@pytest.mark.parametrize("atoms, message", [
    (Atoms(), "empty"),
    (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "NaN"),
    (Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]), "N"),
    (Atoms("H", cell=np.zeros((3, 3)), pbc=True), "zero volume"),
])
def test_bad_input_raises_a_clear_value_error(desc, atoms, message):
    with pytest.raises(ValueError, match=message):
        desc.compute(atoms)
    with pytest.raises(ValueError, match=message):
        desc.compute_many([molecule("H2O"), atoms])
    if len(atoms):
        with pytest.raises(ValueError, match=message):
            desc.forward(torch.tensor(atoms.positions), atoms.numbers,
                         atoms.cell.array if atoms.pbc.any() else None, atoms.pbc)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="species"):
        ACSF("Pt", 5.0)
    with pytest.raises(ValueError, match="r_cut"):
        ACSF(["Pt"], -1.0)
    with pytest.raises(ValueError, match="g2_params"):
        ACSF(["Pt"], 5.0, g2_params=[1.0, 2.0])
    with pytest.raises(ValueError, match="radial"):
        SphericalBessel(["Pt"], 4.0, radial="slater")
    with pytest.raises(ValueError, match="l_max"):
        SphericalBessel(["Pt"], 4.0, n_max=2, l_max=3)


def test_describe_cli_writes_npy(tmp_path):
    from ase.io import write

    from ase_mlgen.cli.main import main

    path = tmp_path / "eth.xyz"
    write(path, [molecule("CH3CH2OH")] * 2)
    out = tmp_path / "fp.npy"
    assert main(["describe", str(path), "--descriptor", "acsf", "--out", str(out)]) == 0
    fp = np.load(out)
    assert fp.shape[:2] == (2, 9)
    assert main(["describe", str(path), "--descriptor", "bessel", "--pooled",
                 "--out", str(out)]) == 0
    assert np.load(out).shape[0] == 2
    assert main(["describe", str(path), "--species", "C", "--out", str(out)]) == 2


def test_dense_and_sparse_three_body_paths_agree_with_gradients():
    from ase_mlgen.descriptors.neighbours import build_neighbours

    atoms = alloy_cluster()
    desc = ACSF(["Cu", "Au"], 4.0, g4_params=G4, g5_params=G5)
    pos = torch.tensor(atoms.positions, requires_grad=True)
    centre = desc.species_index(atoms.numbers)
    nb = build_neighbours(pos[None], None, [False] * 3, desc.r_cut)
    m = nb.n_slots
    jp, kp = torch.triu_indices(m, m, offset=1)
    mask = nb.mask.reshape(-1, m)
    fc = torch.where(nb.mask, 0.5 * (torch.cos(nb.distances * np.pi / desc.r_cut) + 1), 0.0)
    fc = fc.reshape(-1, m)
    spec = centre[nb.index].reshape(-1, m)
    dense = desc._three_body_dense(nb, fc, spec, jp, kp)
    sparse = desc._three_body_sparse(nb, fc, spec, mask[:, jp] & mask[:, kp], jp, kp)
    torch.testing.assert_close(dense, sparse)
    weights = torch.randn(dense.shape, dtype=torch.float64)
    g_dense = torch.autograd.grad((dense * weights).sum(), pos, retain_graph=True)[0]
    g_sparse = torch.autograd.grad((sparse * weights).sum(), pos)[0]
    torch.testing.assert_close(g_dense, g_sparse)


def test_moment_form_of_g5_equals_the_pair_sums_with_gradients():
    """G5 from the separable moments (O(M) per atom) equals the sum over neighbour pairs."""
    g5 = [[0.005, 1, -1], [0.005, 4, 1], [0.3, 2, 1], [0.1, 16, -1]]
    for atoms, species, periodic in [(alloy_cluster(), ["Cu", "Au"], False),
                                     (crystal(), ["Na", "Cl"], True)]:
        atoms = atoms.copy()
        atoms.rattle(0.05, seed=2)
        pairs = ACSF(species, 5.0, g2_params=G2, g5_params=g5, three_body="pairs")
        moments = ACSF(species, 5.0, g2_params=G2, g5_params=g5, three_body="moments")
        pos = torch.tensor(atoms.positions, requires_grad=True)
        cell = torch.tensor(np.asarray(atoms.cell)) if periodic else None
        a = pairs.forward(pos, atoms.numbers, cell, periodic)
        b = moments.forward(pos, atoms.numbers, cell, periodic)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        w = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        ga = torch.autograd.grad((a * w).sum(), pos)[0]
        gb = torch.autograd.grad((b * w).sum(), pos)[0]
        torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="moments"):
        ACSF(["Cu"], 5.0, g4_params=G4, g5_params=g5, three_body="moments")
