"""Calculator specs, Lennard-Jones without cutoff, and the GAP adapter."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.optimize import BFGS

from ase_mlgen.calculators.lennard_jones import FullLennardJones
from ase_mlgen.calculators.specs import CalculatorSpec, calculator_from_spec


def numeric_forces(atoms, delta=1e-5):
    forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            pos = atoms.positions.copy()
            pos[i, k] += delta
            atoms.positions = pos
            e_plus = atoms.get_potential_energy()
            pos[i, k] -= 2 * delta
            atoms.positions = pos
            e_minus = atoms.get_potential_energy()
            pos[i, k] += delta
            atoms.positions = pos
            forces[i, k] = -(e_plus - e_minus) / (2 * delta)
    return forces


def lj13():
    atoms = Icosahedron("Ar", 2, latticeconstant=2 ** 0.5 * 2 ** (1 / 6))
    atoms.positions -= atoms.positions.mean(axis=0)
    return atoms


def test_lj13_reaches_the_cambridge_minimum():
    atoms = lj13()
    atoms.calc = FullLennardJones()
    BFGS(atoms, logfile=None).run(fmax=1e-5)
    assert atoms.get_potential_energy() == pytest.approx(-44.326801, abs=1e-6)


def test_lj_forces_match_finite_differences_and_energies_sum():
    atoms = lj13()
    atoms.rattle(0.05, seed=1)
    atoms.calc = FullLennardJones()
    analytic = atoms.get_forces()
    assert np.allclose(analytic, numeric_forces(atoms), atol=1e-6)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy())


def test_lj_refuses_periodic_systems():
    atoms = Atoms("Ar2", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[5, 5, 5], pbc=True)
    atoms.calc = FullLennardJones()
    with pytest.raises(ValueError, match="non-periodic"):
        atoms.get_potential_energy()


def test_specs_make_calculators_and_pickle():
    assert isinstance(calculator_from_spec("emt"), EMT)
    spec = pickle.loads(pickle.dumps(CalculatorSpec("lj")))
    assert isinstance(spec(), FullLennardJones)
    emt = EMT()
    assert calculator_from_spec(emt) is emt
    assert isinstance(calculator_from_spec(lambda: EMT()), EMT)


@pytest.mark.parametrize("spec, error", [("nonsense", ValueError), ("gap", ValueError),
                                         ("gap:/no/such/file.xml", FileNotFoundError)])
def test_bad_specs_are_clear_errors(spec, error):
    with pytest.raises(error):
        CalculatorSpec(spec)


def test_gap_adapter_energy_forces_and_pickle(ga_gap_path):
    calc = calculator_from_spec(f"gap:{ga_gap_path}")
    atoms = Atoms("Ga4", positions=[[0, 0, 0], [2.6, 0, 0], [1.3, 2.2, 0], [1.3, 0.8, 2.1]])
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert np.isfinite(energy) and energy < 0
    assert np.allclose(atoms.get_forces(), numeric_forces(atoms, 1e-4), atol=2e-3)
    assert atoms.get_forces().sum(axis=0) == pytest.approx(np.zeros(3), abs=1e-6)
    clone = pickle.loads(pickle.dumps(calc))
    other = atoms.copy()
    other.calc = clone
    assert other.get_potential_energy() == pytest.approx(energy, abs=1e-8)


def test_gap_adapter_works_inside_basin_hopping(ga_gap_path, tmp_path):
    """quippy's own Potential breaks ASE trajectory writing; the adapter must not."""
    from ase.optimize.basin import BasinHopping

    atoms = Atoms("Ga4", positions=[[0, 0, 0], [2.6, 0, 0], [1.3, 2.2, 0], [1.3, 0.8, 2.1]])
    atoms.calc = calculator_from_spec(f"gap:{ga_gap_path}")
    bh = BasinHopping(atoms, temperature=0.1, dr=0.3, logfile=None,
                      trajectory=str(tmp_path / "lowest.traj"), fmax=0.1)
    bh.run(2)
    energy, minimum = bh.get_minimum()
    assert np.isfinite(energy) and len(minimum) == 4
