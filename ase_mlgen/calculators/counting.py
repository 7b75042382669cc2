"""A wrapper calculator that counts energy+force evaluations and the time spent in them.

Every search method of ``ase-mlgen search`` runs on one :class:`CountingCalculator`, so
``calls`` and ``seconds`` mean the same thing for BasinHopping, MinimaHopping, the genetic
algorithm and every generator: one *call* is one evaluation of a new geometry by the wrapped
calculator (energy and forces together, as every ASE optimiser and MD needs them), and *seconds*
is the wall time spent inside the wrapped calculator.

>>> from ase.cluster import Icosahedron
>>> from ase.optimize import BFGS
>>> from ase_mlgen.calculators.lennard_jones import FullLennardJones
>>> atoms = Icosahedron("Ar", 2); atoms.positions *= 0.3; atoms.rattle(0.01, seed=1)
>>> atoms.calc = CountingCalculator(FullLennardJones())
>>> opt = BFGS(atoms, logfile=None); _ = opt.run(fmax=0.05, steps=50)
>>> atoms.calc.counter.calls == opt.nsteps + 1
True
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


def _same(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    if a.shape != b.shape:
        return False
    if np.array_equal(a, b):
        return True
    return bool(np.abs(np.asarray(a, float) - np.asarray(b, float)).max() <= tol)


@dataclass
class CallCounter:
    """Totals of a :class:`CountingCalculator`; several wrappers may share one counter."""

    calls: int = 0            #: evaluations of a new geometry (energy + forces)
    energy_calls: int = 0     #: evaluations in which the energy was asked for
    force_calls: int = 0      #: evaluations in which forces were asked for
    seconds: float = 0.0      #: wall time inside the wrapped calculator (s)

    def snapshot(self) -> dict:
        return asdict(self)

    def reset(self) -> None:
        self.calls = self.energy_calls = self.force_calls = 0
        self.seconds = 0.0


class CountingCalculator(Calculator):
    """Wrap ``calc`` and count its evaluations in ``self.counter``.

    Parameters
    ----------
    calc:
        Any ASE calculator.
    counter:
        A :class:`CallCounter` to add to (shared between wrappers, e.g. for copies of the atoms
        made by a genetic algorithm); a new one by default.
    """

    nolabel = True

    def __init__(self, calc: Calculator, counter: CallCounter | None = None):
        if isinstance(calc, CountingCalculator):
            counter = counter or calc.counter
            calc = calc.calc
        super().__init__()
        self.calc = calc
        self.counter = counter if counter is not None else CallCounter()
        self.implemented_properties = list(getattr(calc, "implemented_properties",
                                                   ["energy", "forces"]))

    @property
    def name(self) -> str:  # shown by ase.db and trajectories
        return f"counting({getattr(self.calc, 'name', type(self.calc).__name__)})"

    def todict(self) -> dict:
        inner = self.calc.todict() if hasattr(self.calc, "todict") else {}
        return {"wrapped": getattr(self.calc, "name", type(self.calc).__name__), **inner}

    def check_state(self, atoms, tol=1e-15):
        """Same answer as :func:`ase.calculators.calculator.compare_atoms` (absolute tolerance
        ``tol``), without its per-array ``allclose`` calls: optimisers ask several times per step,
        and on a cheap potential that comparison cost more than the potential itself."""
        old = self.atoms
        if old is None:
            return all_changes[:]
        excluded = set(self.ignored_changes)
        changes = []
        if "cell" not in excluded and not _same(old.cell.array, atoms.cell.array, tol):
            changes.append("cell")
        if "pbc" not in excluded and not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        checked = set(all_changes) - excluded - {"cell", "pbc"}
        arrays1, arrays2 = old.arrays, atoms.arrays
        changes += sorted(checked & (set(arrays1) ^ set(arrays2)))
        for name in checked & set(arrays1) & set(arrays2):
            if not _same(arrays1[name], arrays2[name], tol):
                changes.append(name)
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        wanted = set(properties)
        # energy and forces together: one call per geometry, whatever is asked first
        wanted |= {p for p in ("energy", "forces") if p in self.implemented_properties}
        if "free_energy" in self.implemented_properties:
            wanted.add("free_energy")
        start = time.perf_counter()
        try:
            if isinstance(self.calc, Calculator):
                # the wrapper already decided that this geometry is new: skip the inner
                # calculator's own state comparison (as Calculator.get_property would call it)
                # (self.atoms is already the wrapper's private copy, never modified in place)
                self.calc.calculate(self.atoms, sorted(wanted), system_changes)
            else:
                for prop in sorted(wanted, key=lambda p: (p != "forces", p)):
                    self.calc.get_property(prop, self.atoms)
        finally:
            self.counter.seconds += time.perf_counter() - start
        self.counter.calls += 1
        self.counter.energy_calls += "energy" in wanted
        self.counter.force_calls += "forces" in wanted
        self.results = {k: v for k, v in self.calc.results.items()}
