"""A thin ASE adapter around quippy's GAP ``Potential``.

quippy's ``Potential`` is itself an ASE calculator, but it breaks ASE trajectory writing (an
``AttributeError`` on ``name_``, e.g. inside ``BasinHopping``) and keeps state that does not
pickle. :class:`GAPCalculator` is a plain ASE ``Calculator`` that owns a quippy potential and copies
its results, so it can be used anywhere ASE expects a calculator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class GAPCalculator(Calculator):
    """Gaussian Approximation Potential from an XML file (energies in eV, forces in eV/Å).

    Parameters
    ----------
    param_filename:
        Path to the GAP XML file, e.g. ``../shared/data/ga/Ga_gap.xml``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies"]
    nolabel = True

    def __init__(self, param_filename: str | Path, **kwargs):
        path = Path(param_filename)
        if not path.is_file():
            raise FileNotFoundError(f"GAP potential file {path} not found")
        try:
            from quippy.potential import Potential
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the GAP calculator needs quippy: pip install 'ase_mlgen[gap]' "
                              "(package quippy-ase)") from exc
        super().__init__(**kwargs)
        self.param_filename = str(path)
        self._potential = Potential(param_filename=str(path))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self._potential
        energy = float(work.get_potential_energy())
        self.results["energy"] = self.results["free_energy"] = energy
        self.results["forces"] = np.array(work.get_forces(), dtype=float)
        if "energies" in properties:
            self.results["energies"] = np.array(work.get_potential_energies(), dtype=float)

    def __getstate__(self):
        # a quippy Potential does not pickle: rebuild it from the file in the receiving process
        return {"param_filename": self.param_filename}

    def __setstate__(self, state):
        self.__init__(state["param_filename"])
