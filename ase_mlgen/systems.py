"""``--system`` of ``ase-mlgen search``: Lennard-Jones clusters, element+size clusters, or a file.

* ``LJ13``, ``LJ38``: Lennard-Jones clusters in reduced units (ε = σ = 1; use with ``--calc lj``);
  the known global minima of the Cambridge Cluster Database are attached (:data:`LJ_MINIMA`).
* ``Ga13``, ``Pt13``, ``Au20``, ``Cu6Au7``: clusters of that composition (energies in eV).
* a file readable by :func:`ase.io.read` (its last image): the composition, and the cell for
  periodic structures.

A system is a template :class:`~ase.Atoms` whose ``info`` carries hints for the searches:
``bond_length`` (Å, or σ), ``system``, and baseline settings (``bh_temperature``, ``bh_dr``,
``mh_T0``, ``mh_timestep``, ``mh_Ediff0``) in the system's energy unit.

Baseline defaults and why (tuning runs: ``bench/search_tune.py``, seeds 100+, results in
``bench/results/search_tuning.jsonl``; the benchmark uses seeds 0-4):

* BasinHopping step ``bh_dr`` = :data:`BH_DR_PER_BOND` × nearest-neighbour distance (0.4 σ for
  LJ, about Wales & Doye's step), moves starting from the last accepted minimum
  (:class:`~ase_mlgen.search.baselines.RecordedBasinHopping` ``from_minimum``). LJ19, seeds
  102-105, budget 200: 14, 14, 2, 51 relaxations to the global minimum; with 0.25 σ none of the
  four in 200 (too small a step to leave the basin). ASE's own step origin (the last accepted
  *unrelaxed* positions) drifts apart instead: with 0.4 σ 188, 2, 131 relaxations (seeds
  103-105) and once not in 300 (seed 102), FIRE calls per relaxation growing from 200 to 600.
* BasinHopping temperature: kT = 0.8 ε for LJ (Wales & Doye, J. Phys. Chem. A 101, 5111, 1997);
  0.1 eV for element clusters (untuned: a few GAP relaxations cost minutes here).
* MinimaHopping: ``T0`` is a temperature in K for ASE (kT = 8.6e-5 eV/K × T0, in ε for LJ);
  ``Ediff0`` the initial acceptance window; ``timestep`` in ASE fs (for LJ argon in reduced
  units, 1 fs ≈ 0.016 τ).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.data import covalent_radii

#: Global minima of LJ clusters, ε (Wales & Doye, J. Phys. Chem. A 101, 5111, 1997;
#: Cambridge Cluster Database)
LJ_MINIMA = {3: -3.0, 4: -6.0, 5: -9.103852, 6: -12.712062, 7: -16.505384, 8: -19.821489,
             9: -24.113360, 10: -28.422532, 11: -32.765970, 12: -37.967600, 13: -44.326801,
             14: -47.845157, 15: -52.322627, 16: -56.815742, 17: -61.317995, 18: -66.530949,
             19: -72.659782, 20: -77.177043, 26: -108.315616, 38: -173.928427,
             55: -279.248470}

LJ_BOND = 2 ** (1 / 6)

#: BasinHopping step per coordinate as a fraction of the nearest-neighbour distance (see above)
BH_DR_PER_BOND = 0.4 / LJ_BOND           # 0.356: 0.4 σ for LJ


@dataclass
class System:
    """A search problem's atoms and what is known about it."""

    name: str
    template: Atoms
    default_calculator: str | None = None
    known_minimum: float | None = None
    energy_unit: str = "eV"
    extra: dict = field(default_factory=dict)

    @property
    def periodic(self) -> bool:
        return bool(self.template.pbc.any())


def lennard_jones_cluster(n: int) -> System:
    """LJ\\ *n* in reduced units (atoms labelled Ar; ε = σ = 1)."""
    if n < 2:
        raise ValueError("a Lennard-Jones cluster needs at least 2 atoms")
    atoms = Atoms(f"Ar{n}")
    atoms.info.update(system=f"LJ{n}", bond_length=LJ_BOND, bh_temperature=0.8,
                      bh_dr=BH_DR_PER_BOND * LJ_BOND,
                      mh_T0=2000.0, mh_timestep=1.0, mh_Ediff0=2.0)
    return System(f"LJ{n}", atoms, "lj", LJ_MINIMA.get(n), "ε")


def cluster(formula: str) -> System:
    """A cluster of composition ``formula`` (e.g. ``Ga13``), energies in eV."""
    atoms = Atoms(formula)
    bond = float(np.mean(2 * covalent_radii[atoms.numbers]))
    atoms.info.update(system=formula, bond_length=bond, bh_temperature=0.1,
                      bh_dr=BH_DR_PER_BOND * bond,
                      mh_T0=1000.0, mh_timestep=2.0, mh_Ediff0=0.5)
    return System(formula, atoms, None, None, "eV")


def parse_system(spec: str | Atoms) -> System:
    """``LJ13`` | ``Ga13`` (any formula) | path of a structure file."""
    if isinstance(spec, Atoms):
        atoms = spec.copy()
        atoms.calc = None
        name = atoms.get_chemical_formula()
        atoms.info.setdefault("system", name)
        atoms.info.setdefault("bond_length", float(np.mean(2 * covalent_radii[atoms.numbers])))
        return System(name, atoms)
    text = str(spec).strip()
    match = re.fullmatch(r"LJ(\d+)", text, flags=re.IGNORECASE)
    if match:
        return lennard_jones_cluster(int(match.group(1)))
    path = Path(text)
    if path.is_file():
        from ase.io import read

        atoms = read(path, index=-1)
        atoms.calc = None
        system = cluster(atoms.get_chemical_formula()) if not atoms.pbc.any() else \
            System(atoms.get_chemical_formula(), atoms.copy())
        template = atoms.copy()
        template.info.update(system.template.info)
        template.info["system"] = path.name
        template.info.setdefault("bond_length",
                                 float(np.mean(2 * covalent_radii[atoms.numbers])))
        return System(path.name, template, None, None, "eV")
    if re.fullmatch(r"([A-Z][a-z]?\d*)+", text):
        try:
            return cluster(text)
        except (KeyError, ValueError):
            pass
    raise ValueError(f"cannot understand system {spec!r}: use LJ<n> (e.g. LJ13), a formula "
                     "such as Ga13 or Cu6Au7, or the path of a structure file")


__all__ = ["LJ_MINIMA", "System", "cluster", "lennard_jones_cluster", "parse_system", "units"]
