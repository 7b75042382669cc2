"""ASE calculators of ase_mlgen (DART, Lennard-Jones without cutoff, the GAP adapter) and the
string specifications (``lj``, ``emt``, ``gap:PATH``, ``gpaw``, ``xtb``) used by the CLI."""
from ase_mlgen.calculators.specs import CalculatorSpec, calculator_from_spec

__all__ = ["CalculatorSpec", "calculator_from_spec"]
