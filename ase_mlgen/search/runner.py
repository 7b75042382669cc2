"""Run one search method on one system at a fixed relaxation budget: the engine of
``ase-mlgen search`` and of ``bench/search.py``.

Every method gets the same things: a template from :mod:`ase_mlgen.systems`, one calculator
wrapped in :class:`~ase_mlgen.calculators.counting.CountingCalculator`, the same local optimiser
(FIRE, ``fmax``) and one :class:`~ase_mlgen.search.recorder.SearchRecorder` that counts
relaxations, calls and seconds, deduplicates minima and writes the database rows.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.optimize import FIRE

from ase_mlgen.calculators.counting import CountingCalculator
from ase_mlgen.search.methods import load_method
from ase_mlgen.search.recorder import BudgetExhausted, SearchRecorder
from ase_mlgen.systems import System, parse_system

OPTIMIZERS = {"FIRE": FIRE}


@dataclass
class SearchProblem:
    """What a baseline runner receives (see :mod:`ase_mlgen.search.baselines`)."""

    system: System
    calc: CountingCalculator
    recorder: SearchRecorder
    seed: int
    budget: int
    options: dict = field(default_factory=dict)
    fmax: float = 0.05
    optimizer: type = FIRE
    steps_per_relaxation: int = 2000

    @property
    def template(self) -> Atoms:
        return self.system.template

    def start_structure(self, k: int = 0) -> Atoms:
        """A compact random start (same generator as the ``random`` method), seeded by
        ``(seed, k)``, with the counted calculator attached."""
        from ase_mlgen.generators.random import make_search_generator

        gen = make_search_generator(self.template, self.seed, self.options)
        atoms = gen.generate(1, rng=np.random.default_rng([self.seed, 1_000_003, k]))[0]
        atoms.calc = self.calc
        return atoms

    def relax(self, atoms: Atoms) -> int:
        """Relax ``atoms`` in place with the common optimiser; return the optimiser steps."""
        with self.optimizer(atoms, logfile=None) as opt:
            opt.run(fmax=self.fmax, steps=self.steps_per_relaxation)
            return opt.nsteps


def machine_info() -> dict:
    return {"hostname": platform.node(), "platform": platform.platform(),
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def run_search(method: str, system: str | System, calc, budget: int = 200, seed: int = 0,
               db=None, options: dict | None = None, fmax: float = 0.05,
               steps_per_relaxation: int = 2000, target_energy: float | None = None,
               stop_at_target: bool = False, energy_tol: float = 0.01,
               logfile=None, observers=()) -> dict:
    """Run ``method`` on ``system`` for ``budget`` relaxations; return the JSON-ready report.

    ``calc`` is a spec (``"lj"``, ``"gap:PATH"``, …), a calculator or a factory. The report has
    ``best_energy``, ``n_minima``, ``relaxations``, ``calls``, ``seconds``,
    ``calculator_seconds``, ``overhead_fraction``, ``history`` and the settings.
    ``observers``: functions ``f(recorder, record)`` called after each relaxation is stored.

    With ``db``, a run with the same method and seed already in the database is continued to
    ``budget`` relaxations in total: ``random`` and every generator method, ``bh`` and ``ga``
    continue their walk/population; ``mh`` continues the count from a fresh MinimaHopping walk.
    """
    from ase_mlgen.calculators.specs import calculator_from_spec

    if budget < 1:
        raise ValueError("budget must be at least one relaxation")
    system = system if isinstance(system, System) else parse_system(system)
    options = dict(options or {})
    if calc is None:
        calc = system.default_calculator
        if calc is None:
            raise ValueError(f"system {system.name} needs a calculator (--calc)")
    spec = calc if isinstance(calc, str) else type(calc).__name__
    resolved = load_method(method)             # fails early with an install hint
    if target_energy is None:
        target_energy = system.known_minimum
    counting = CountingCalculator(calculator_from_spec(calc))
    start = time.perf_counter()
    if resolved.kind == "generator":
        from ase_mlgen.search.generator_search import GeneratorSearch

        generator = resolved.function(system.template.copy(), int(seed), options)
        atoms = system.template.copy()
        atoms.calc = counting
        search = GeneratorSearch(atoms, generator, fmax=fmax,
                                 steps_per_relaxation=steps_per_relaxation, logfile=logfile,
                                 trajectory=None, db=db, name=method, seed=seed,
                                 batch_size=int(options.get("batch_size", 1)),
                                 energy_tol=energy_tol, target_energy=target_energy)
        recorder = search.recorder
        recorder.observers.extend(observers)
        while recorder.relaxations < budget and not (stop_at_target and recorder.reached):
            search.step()
            search.nsteps += 1
            search.call_observers()
    else:
        recorder = SearchRecorder(method, seed, counting.counter, db=db, budget=budget,
                                  target_energy=target_energy, stop_at_target=stop_at_target,
                                  energy_tol=energy_tol)
        recorder.observers.extend(observers)
        problem = SearchProblem(system, counting, recorder, int(seed), int(budget), options,
                                fmax=fmax, steps_per_relaxation=steps_per_relaxation)
        if not recorder.exhausted:
            try:
                resolved.function(problem)
            except BudgetExhausted:
                pass
    report = recorder.summary()
    report.update(method=method, system=system.name, seed=int(seed), budget=int(budget),
                  known_minimum=system.known_minimum, energy_unit=system.energy_unit,
                  settings={"calc": spec, "fmax": fmax, "optimizer": "FIRE",
                            "steps_per_relaxation": steps_per_relaxation,
                            "energy_tol": energy_tol, "options": options,
                            "stop_at_target": stop_at_target, "target_energy": target_energy,
                            "db": str(db) if db is not None else None},
                  machine=machine_info(), session_wall_seconds=time.perf_counter() - start)
    if report["best_energy"] is not None and recorder.best_atoms is not None:
        best = recorder.best_atoms
        report["best_structure"] = {"numbers": best.numbers.tolist(),
                                    "positions": best.positions.round(6).tolist()}
    return report
