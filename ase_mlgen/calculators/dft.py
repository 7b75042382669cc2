"""GPAW calculators with sound defaults for the searches (extra ``dft``).

* :func:`gpaw_cluster_calculator`: LCAO, ``dzp`` basis, PBE, Fermi–Dirac smearing (0.1 eV),
  grid spacing 0.2 Å, for non-periodic clusters. GPAW needs a simulation box; clusters from the
  generators have none, so the calculator is wrapped in :class:`VacuumBox`, which puts a copy of
  the atoms in a box with ``vacuum`` Å on every side (kept while the cluster fits, so the grid is
  not rebuilt at every optimiser step).
* :func:`gpaw_crystal_calculator`: plane waves (``ecut`` eV), PBE, Fermi–Dirac (0.1 eV),
  Monkhorst–Pack k-points at ``kpt_density`` points per Å⁻¹ (Γ-centred).

Any GPAW keyword can be overridden: ``gpaw_cluster_calculator(h=0.25, basis="szp(dzp)")``.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

CLUSTER_DEFAULTS = {"mode": "lcao", "basis": "dzp", "xc": "PBE", "h": 0.2, "smearing": 0.1,
                    "txt": None}
CRYSTAL_DEFAULTS = {"ecut": 400.0, "xc": "PBE", "kpt_density": 3.5, "smearing": 0.1,
                    "txt": None}


def _gpaw():
    try:
        import gpaw
    except ImportError as exc:
        raise ImportError("GPAW calculators need GPAW: pip install 'ase_mlgen[dft]' (or run "
                          "setup.sh, which installs the system libraries GPAW compiles "
                          "against)") from exc
    return gpaw


class VacuumBox(Calculator):
    """Evaluate a cluster with ``calc`` inside a box of ``vacuum`` Å on every side.

    Energies and forces do not depend on where the cluster sits, so the caller's atoms keep
    their (cell-less) coordinates. The box is made on the first call, snapped to a multiple of
    ``multiple`` Å per side, and remade only when the cluster no longer keeps ``0.75 × vacuum``
    from its walls.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    nolabel = True

    def __init__(self, calc, vacuum: float = 5.0, multiple: float = 0.8):
        super().__init__()
        if vacuum <= 0:
            raise ValueError("vacuum must be positive (Å)")
        self.calc = calc
        self.vacuum = float(vacuum)
        self.multiple = float(multiple)
        self.box: np.ndarray | None = None

    def _fits(self, extent: np.ndarray) -> bool:
        return self.box is not None and np.all(self.box - extent >= 1.5 * self.vacuum)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise ValueError("VacuumBox is for non-periodic clusters; use "
                             "gpaw_crystal_calculator for periodic structures")
        boxed = self.atoms.copy()
        pos = boxed.positions
        extent = pos.max(axis=0) - pos.min(axis=0)
        if not self._fits(extent):
            side = extent + 2 * self.vacuum
            self.box = np.ceil(side / self.multiple) * self.multiple
        boxed.set_cell(np.diag(self.box))
        boxed.center()
        boxed.calc = self.calc
        energy = boxed.get_potential_energy()
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": np.array(boxed.get_forces())}


def gpaw_cluster_calculator(vacuum: float = 5.0, **overrides) -> VacuumBox:
    """GPAW LCAO/dzp/PBE with Fermi–Dirac smearing for a cluster without a cell."""
    gpaw = _gpaw()
    params = {**CLUSTER_DEFAULTS, **overrides}
    width = params.pop("smearing")
    params.setdefault("occupations", gpaw.FermiDirac(width))
    params.setdefault("convergence", {"density": 1e-5})
    return VacuumBox(gpaw.GPAW(**params), vacuum=vacuum)


def gpaw_crystal_calculator(**overrides):
    """GPAW plane waves (PBE, Fermi–Dirac, k-point density) for a periodic crystal."""
    gpaw = _gpaw()
    params = {**CRYSTAL_DEFAULTS, **overrides}
    ecut = params.pop("ecut")
    density = params.pop("kpt_density")
    width = params.pop("smearing")
    params.setdefault("mode", gpaw.PW(ecut))
    params.setdefault("kpts", {"density": density, "gamma": True})
    params.setdefault("occupations", gpaw.FermiDirac(width))
    return gpaw.GPAW(**params)
