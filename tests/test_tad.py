"""TAD: counts on known structures, invariances, smooth → hard, finite-difference gradients."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.cluster import Icosahedron

from ase_mlgen.descriptors.tad import TAD, shell_masks


def brute_force(atoms, shells):
    d = atoms.get_all_distances()
    np.fill_diagonal(d, np.nan)
    out = np.zeros((len(atoms), 3))
    with np.errstate(invalid="ignore"):
        out[:, 0] = np.nansum(d < shells[0], axis=1)
        out[:, 1] = np.nansum((d >= shells[0]) & (d < shells[1]), axis=1)
        far = d >= shells[1]
        if len(shells) == 3:
            far &= d < shells[2]
        out[:, 2] = np.nansum(far, axis=1)
    return out


def test_counts_on_a_line_of_atoms():
    # atoms on a line 3 Å apart: neighbours at 3, 6, 9, 12 Å
    atoms = Atoms("Ga5", positions=[[3.0 * i, 0, 0] for i in range(5)])
    tad = TAD().compute(atoms)
    np.testing.assert_array_equal(tad[0], [1, 1, 2])   # 3 | 6 | 9, 12
    np.testing.assert_array_equal(tad[2], [2, 2, 0])   # 3, 3 | 6, 6 |
    tad3 = TAD(shells=(3.49, 6.3, 10.0)).compute(atoms)
    np.testing.assert_array_equal(tad3[0], [1, 1, 1])  # 12 Å is beyond the L shell


def test_counts_on_icosahedron_match_brute_force_and_sum_to_n_minus_1():
    atoms = Icosahedron("Cu", 3)  # 55 atoms
    atoms.positions *= 1.2
    tad = TAD().compute(atoms)
    np.testing.assert_array_equal(tad, brute_force(atoms, (3.49, 6.3)))
    np.testing.assert_array_equal(tad.sum(1), len(atoms) - 1)
    # the central atom of a Cu icosahedron scaled to ~3.0 Å bonds has 12 J neighbours
    centre = np.argmin(np.linalg.norm(atoms.positions - atoms.positions.mean(0), axis=1))
    assert tad[centre, 0] == 12


def test_invariances():
    rng = np.random.default_rng(0)
    atoms = Atoms("Ga20", positions=rng.uniform(0, 8, (20, 3)))
    for width in (0.0, 0.1):
        tad = TAD(width=width)
        ref = tad.compute(atoms)
        moved = atoms.copy()
        moved.rotate(37, (1, 2, 3), center="COM")
        moved.translate((5.0, -2.0, 1.0))
        np.testing.assert_allclose(tad.compute(moved), ref, atol=1e-9)
        perm = rng.permutation(len(atoms))
        np.testing.assert_allclose(tad.compute(atoms[perm]), ref[perm], atol=1e-12)


def test_batch_with_padding_equals_single():
    rng = np.random.default_rng(1)
    a = Atoms("Ga7", positions=rng.uniform(0, 6, (7, 3)))
    b = Atoms("Ga4", positions=rng.uniform(0, 6, (4, 3)))
    pos = torch.zeros(2, 7, 3, dtype=torch.float64)
    pos[0] = torch.as_tensor(a.positions)
    pos[1, :4] = torch.as_tensor(b.positions)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0] = True
    mask[1, :4] = True
    tad = TAD(width=0.05)
    out = tad.forward_batch(pos, mask).numpy()
    np.testing.assert_allclose(out[0], tad.compute(a), atol=1e-12)
    np.testing.assert_allclose(out[1, :4], tad.compute(b), atol=1e-12)
    assert np.all(out[1, 4:] == 0)
    j, k, l_ = shell_masks(pos, mask, width=0.05)
    np.testing.assert_allclose(j.sum(-1).numpy(), out[..., 0], atol=1e-12)
    assert torch.all(j[1, 4:] == 0) and torch.all(j[1, :, 4:] == 0)


def test_smooth_tends_to_hard():
    rng = np.random.default_rng(2)
    atoms = Atoms("Ga30", positions=rng.uniform(0, 10, (30, 3)))
    hard = TAD().compute(atoms)
    errors = [np.abs(TAD(width=w).compute(atoms) - hard).max() for w in (0.1, 0.01, 1e-4)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6


def test_finite_difference_gradient_of_smooth_tad():
    rng = np.random.default_rng(3)
    pos0 = rng.uniform(0, 7, (10, 3))
    tad = TAD(width=0.2)
    weights = torch.as_tensor(rng.normal(size=(10, 3)))

    def f(p):
        return (tad.forward(p) * weights).sum()

    pos = torch.tensor(pos0, requires_grad=True)
    grad = torch.autograd.grad(f(pos), pos)[0].numpy()
    h = 1e-5
    num = np.zeros_like(pos0)
    for i in range(10):
        for x in range(3):
            p, m = pos0.copy(), pos0.copy()
            p[i, x] += h
            m[i, x] -= h
            num[i, x] = (f(torch.tensor(p)) - f(torch.tensor(m))).item() / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)
    assert np.abs(grad).max() > 1e-3  # the gradient is not trivially zero


def test_periodic_needs_l_bound_and_matches_supercell():
    atoms = bulk("Cu", "fcc", a=3.8)
    with pytest.raises(ValueError, match="third radius"):
        TAD(shells=(3.49, 6.3)).compute(atoms)
    assert TAD().shells == (3.49, 6.3, 15.0)  # the default L shell is bounded (MeGen's code)
    tad = TAD(shells=(3.49, 6.3, 9.0))
    one = tad.compute(atoms)
    sup = tad.compute(atoms.repeat((2, 2, 2)))
    np.testing.assert_allclose(sup, np.repeat(one, 8, axis=0))
    # fcc with a = 3.8 Å: 12 nearest neighbours at 2.69 Å
    assert one[0, 0] == 12


def test_periodic_gradient_finite_difference():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.05, seed=1)
    tad = TAD(shells=(3.49, 6.3, 8.0), width=0.2)
    cell = torch.as_tensor(atoms.cell.array)
    pos0 = atoms.positions.copy()
    weights = torch.linspace(0.5, 1.5, 3, dtype=torch.float64)

    def f(p):
        return (tad.forward(p, cell=cell, pbc=True) * weights).sum()

    pos = torch.tensor(pos0, requires_grad=True)
    grad = torch.autograd.grad(f(pos), pos)[0].numpy()
    h = 1e-5
    p = pos0.copy(); p[0, 0] += h
    m = pos0.copy(); m[0, 0] -= h
    num = (f(torch.tensor(p)) - f(torch.tensor(m))).item() / (2 * h)
    assert grad[0, 0] == pytest.approx(num, rel=1e-4, abs=1e-7)


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        TAD().compute(Atoms())
    with pytest.raises(ValueError, match="NaN"):
        TAD().compute(Atoms("Ga2", positions=[[0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="increasing"):
        TAD(shells=(6.3, 3.49))
    with pytest.raises(ValueError, match="width"):
        TAD(width=-1)


@pytest.mark.parametrize("shells", [(3.49, 6.3), (3.49, 6.3, 15.0)])
def test_fast_integer_counts_equal_shell_matrix_sums(shells):
    """The Gram-matrix fast path of forward_batch gives the same counts as the shell matrices."""
    from ase_mlgen.descriptors.tad import shell_masks

    gen = torch.Generator().manual_seed(3)
    pos = torch.rand(70, 30, 3, generator=gen, dtype=torch.float64) * 14.0
    mask = torch.rand(70, 30, generator=gen) > 0.25
    tad = TAD(shells)
    for m in (None, mask):
        j, k, l_ = shell_masks(pos, m, shells, 0.0)
        expected = torch.stack([j.sum(-1), k.sum(-1), l_.sum(-1)], dim=-1)
        if m is not None:
            expected = expected * m[..., None]
        assert torch.equal(tad.forward_batch(pos, m), expected)


def test_integer_shell_distances_are_summed_in_a_fixed_order():
    """The integer TAD's squared distances are ((Δx² + Δy²) + Δz²) as separate element-wise
    operations, so CPU and CUDA count pairs near a shell radius alike (a reduction kernel may add
    in another order); the tabulated fast path uses the same order."""
    from ase_mlgen.descriptors.tad import _squared_distances

    gen = torch.Generator().manual_seed(3)
    pos = torch.rand(64, 30, 3, generator=gen) * 12.0      # float32, as DART evaluates
    d2, _ = _squared_distances(pos)
    diff = pos[:, :, None, :] - pos[:, None, :, :]
    sq = diff * diff
    assert torch.equal(d2, (sq[..., 0] + sq[..., 1]) + sq[..., 2])
