"""The optional short-contact prior of LoGAN's generator (ase_mlgen.generators.logan.contacts)."""
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from ase_mlgen.generators.logan.contacts import (contact_penalty, floor_matrix,
                                                 shortest_pair_distances)


def test_shortest_pair_distances_of_rocksalt_and_a_molecule():
    shortest = shortest_pair_distances([bulk("NaCl", "rocksalt", a=5.64, cubic=True)])
    assert shortest[(11, 17)] == pytest.approx(2.82)               # a / 2, across the cell face
    assert shortest[(11, 11)] == pytest.approx(5.64 / np.sqrt(2))
    assert shortest[(17, 17)] == pytest.approx(5.64 / np.sqrt(2))
    water = shortest_pair_distances([molecule("H2O")])
    oh = molecule("H2O").get_distance(0, 1)
    assert water[(1, 8)] == pytest.approx(oh) and (1, 1) in water


def test_floor_matrix_is_symmetric_and_scaled():
    floors = floor_matrix([14, 8, 8], {(8, 14): 1.6, (8, 8): 2.6}, scale=0.9)
    assert torch.allclose(floors, floors.T) and torch.all(torch.diagonal(floors) == 0)
    assert floors[0, 1] == pytest.approx(1.44) and floors[1, 2] == pytest.approx(2.34)
    assert floor_matrix([14, 14], {(8, 14): 1.6}, 0.9)[0, 1] == 0   # pair never seen: no floor


def test_contact_penalty_pushes_close_pairs_apart():
    floors = floor_matrix([14, 8], {(8, 14): 1.6}, scale=1.0)
    pos = torch.tensor([[[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]],
                        [[0.0, 0.0, 0.0], [1.7, 0.0, 0.0]]], requires_grad=True)
    pen = contact_penalty(pos, floors)
    assert pen[0].item() == pytest.approx(0.4 ** 2, rel=1e-5) and pen[1].item() == 0
    pen.sum().backward()
    assert pos.grad[0, 1, 0] < 0 < pos.grad[0, 0, 0]                  # descent separates them
    assert torch.all(pos.grad[1] == 0)


def test_contact_penalty_sees_periodic_images():
    cell = torch.eye(3) * 5.0
    floors = floor_matrix([14, 8], {(8, 14): 1.6}, scale=1.0)
    pos = torch.tensor([[[0.2, 2.5, 2.5], [4.6, 2.5, 2.5]]])        # 0.6 Å apart through x = 0
    assert contact_penalty(pos, floors, cell).item() == pytest.approx(1.0 ** 2, rel=1e-5)
    assert contact_penalty(pos, floors).item() == 0                   # 4.4 Å without the cell


def test_logan_with_repulsion_trains_and_logs_the_penalty():
    from ase_mlgen.generators.logan import LoGAN

    train = [bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    params = dict(epochs=6, log_every=2, batch_size=4, n_critic=1, n_penalty=1, rattle=2,
                  generator_layers=(32,), critic_layers=(16,), r_cut=4.0, n_max=2)
    model = LoGAN(random_state=0, repulsion=10.0, **params).fit(train, composition="Na4Cl4")
    assert all(np.isfinite(r["contact_penalty"]) for r in model.history)
    plain = LoGAN(random_state=0, **params).fit(train, composition="Na4Cl4")
    assert "contact_penalty" not in plain.history[0]
    with pytest.raises(ValueError, match="repulsion"):
        LoGAN(repulsion=-1.0)
    with pytest.raises(ValueError, match="repulsion_scale"):
        LoGAN(repulsion_scale=0.0)


def test_contact_penalty_is_exact_in_a_skewed_cell():
    """Every periodic image closer than its floor counts, in a cell where rounding fractional
    coordinates finds the wrong image: the penalty equals the sum over ASE's neighbour list."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    cell = np.array([[5.0, 0.0, 0.0], [4.6, 1.2, 0.0], [0.3, 0.4, 4.0]])
    rng = np.random.default_rng(4)
    atoms = Atoms("Si2O4", cell=cell, pbc=True, scaled_positions=rng.random((6, 3)))
    floors = floor_matrix(atoms.numbers, {(8, 14): 1.6, (8, 8): 2.4, (14, 14): 2.9}, 1.0)
    i, j, d = neighbor_list("ijd", atoms, float(floors.max()))
    f = floors.numpy()[i, j]
    expected = 0.5 * np.sum(np.clip(f - d, 0, None) ** 2)
    assert expected > 0
    pos = torch.tensor(atoms.positions[None], dtype=torch.float64)
    got = contact_penalty(pos, floors.double(), torch.tensor(cell))
    assert got.item() == pytest.approx(expected, rel=1e-10)
