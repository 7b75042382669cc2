"""Calculators named by short strings, as used on the command line.

=============  ===========================================================================
spec           calculator
=============  ===========================================================================
``lj``         :class:`FullLennardJones` (ε = σ = 1, no cutoff, no shift; reduced units)
``emt``        :class:`ase.calculators.emt.EMT`
``gap:PATH``   :class:`GAPCalculator` on the GAP XML file ``PATH`` (extra ``gap``)
``gpaw``       GPAW LCAO/dzp/PBE for clusters in a vacuum box (extra ``dft``)
``gpaw-pw``    GPAW plane waves for periodic crystals (extra ``dft``)
``xtb``        GFN2-xTB through tblite (extra ``xtb``)
``dart:PATH``  a trained DART model file
=============  ===========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ase.calculators.calculator import Calculator

KNOWN = ("lj", "emt", "gap:PATH", "gpaw", "gpaw-pw", "xtb", "dart:PATH")


@dataclass(frozen=True)
class CalculatorSpec:
    """A picklable factory: ``CalculatorSpec("gap:Ga_gap.xml")()`` returns a new calculator.

    Process pools need a factory rather than a calculator instance, because most calculators do
    not pickle; this one does.
    """

    spec: str

    def __post_init__(self):
        name, _, arg = self.spec.partition(":")
        if name not in {k.split(":")[0] for k in KNOWN}:
            raise ValueError(f"unknown calculator {self.spec!r}; known: {', '.join(KNOWN)}")
        if name in ("gap", "dart"):
            if not arg:
                raise ValueError(f"calculator {name!r} needs a file: {name}:PATH")
            if not Path(arg).is_file():
                raise FileNotFoundError(f"{name} file {arg!r} not found")

    @property
    def name(self) -> str:
        return self.spec.partition(":")[0]

    @property
    def argument(self) -> str:
        return self.spec.partition(":")[2]

    def __call__(self) -> Calculator:
        name, arg = self.name, self.argument
        if name == "lj":
            from ase_mlgen.calculators.lennard_jones import FullLennardJones

            return FullLennardJones()
        if name == "emt":
            from ase.calculators.emt import EMT

            return EMT()
        if name == "gap":
            from ase_mlgen.calculators.gap import GAPCalculator

            return GAPCalculator(arg)
        if name == "gpaw":
            from ase_mlgen.calculators.dft import gpaw_cluster_calculator

            return gpaw_cluster_calculator()
        if name == "gpaw-pw":
            from ase_mlgen.calculators.dft import gpaw_crystal_calculator

            return gpaw_crystal_calculator()
        if name == "xtb":
            try:
                from tblite.ase import TBLite
            except ImportError as exc:
                raise ImportError("the xtb calculator needs tblite: pip install "
                                  "'ase_mlgen[xtb]'") from exc
            return TBLite(method="GFN2-xTB", verbosity=0)
        if name == "dart":
            from ase_mlgen.calculators.dart import DART

            return DART.load(arg)
        raise AssertionError(name)  # unreachable: checked in __post_init__


def calculator_from_spec(spec: str | Calculator | Callable[[], Calculator]) -> Calculator:
    """Return a calculator for a spec string, a calculator instance, or a zero-argument factory."""
    if isinstance(spec, Calculator):
        return spec
    if isinstance(spec, str):
        return CalculatorSpec(spec)()
    if callable(spec):
        return spec()
    raise TypeError(f"cannot make a calculator from {spec!r}")
