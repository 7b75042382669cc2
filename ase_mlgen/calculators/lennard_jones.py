"""Lennard-Jones for clusters with no cutoff and no energy shift (Cambridge Cluster Database
convention: LJ13 = -44.326801 ε, LJ38 = -173.928427 ε in reduced units)."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class FullLennardJones(Calculator):
    """Pairwise ``4ε[(σ/r)^12 − (σ/r)^6]`` over all pairs of a non-periodic cluster.

    ASE's :class:`ase.calculators.lj.LennardJones` cuts at 3σ and shifts the energy, which moves
    the known cluster minima; this one does neither. Energies in units of ``epsilon`` (eV when used
    with ASE optimisers), lengths in units of ``sigma`` (Å).
    """

    implemented_properties = ["energy", "energies", "forces", "free_energy"]
    default_parameters = {"epsilon": 1.0, "sigma": 1.0}
    nolabel = True

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise ValueError("FullLennardJones is for non-periodic clusters; use "
                             "ase.calculators.lj.LennardJones for periodic systems")
        eps, sigma = self.parameters.epsilon, self.parameters.sigma
        pos = self.atoms.positions
        diff = pos[:, None, :] - pos[None, :, :]
        r2 = np.einsum("ijk,ijk->ij", diff, diff)
        np.fill_diagonal(r2, np.inf)
        s6 = (sigma * sigma / r2) ** 3
        pair = 4.0 * eps * (s6 * s6 - s6)
        energies = 0.5 * pair.sum(axis=1)
        # dE/dr * 1/r for each pair, then F_i = sum_j (24 eps (2 s12 - s6) / r^2) (r_i - r_j)
        coef = 24.0 * eps * (2.0 * s6 * s6 - s6) / r2
        forces = np.einsum("ij,ijk->ik", coef, diff)
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = forces
