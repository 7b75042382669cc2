"""Book-keeping shared by every search: relaxations, calls, seconds, distinct minima, history.

:class:`SearchRecorder` is told about each finished local relaxation (``record``). It deduplicates
the minimum (:class:`~ase_mlgen.structures.similarity.KnownMinima`), keeps the running best and a
``history`` entry each time a new best appears, writes the rows of
:mod:`ase_mlgen.search.storage`, and stops a baseline at its budget by raising
:class:`BudgetExhausted`. :class:`~ase_mlgen.search.GeneratorSearch` and the baselines
(BasinHopping, MinimaHopping, the genetic algorithm) all use it, so their numbers compare.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from ase_mlgen.calculators.counting import CallCounter
from ase_mlgen.search.storage import SearchStorage
from ase_mlgen.structures.similarity import KnownMinima


class BudgetExhausted(Exception):
    """Raised by :meth:`SearchRecorder.record` when the relaxation budget is used up."""


class TargetReached(BudgetExhausted):
    """Raised when ``stop_at_target`` is set and the target energy has been reached."""


@dataclass
class Record:
    """What :meth:`SearchRecorder.record` decided about one relaxation."""

    step: int
    energy: float
    minimum: int            #: index of the distinct minimum
    new: bool               #: first time this minimum was found
    best: bool              #: new overall best
    row_id: int | None = None


class SearchRecorder:
    """Counts and stores the relaxations of one search run.

    Parameters
    ----------
    search, seed:
        Method name and seed (row keys ``search`` and ``seed``).
    counter:
        The :class:`~ase_mlgen.calculators.counting.CallCounter` of the run's calculator.
    db:
        ase.db name/URL or connection; ``None`` keeps nothing on disk. An existing run (same
        ``search`` and ``seed``) in it is restored: relaxations, minima, best and history continue.
    budget:
        Raise :class:`BudgetExhausted` after this many relaxations (``None``: never).
    target_energy, target_tol:
        ``reached`` becomes True when the best energy is ≤ ``target_energy + target_tol``;
        with ``stop_at_target`` the recorder then raises :class:`TargetReached`.
    energy_tol, fingerprint:
        Duplicate criterion (see :class:`~ase_mlgen.structures.similarity.KnownMinima`).
    """

    def __init__(self, search: str, seed: int, counter: CallCounter | None = None, db=None,
                 budget: int | None = None, target_energy: float | None = None,
                 target_tol: float = 1e-3, stop_at_target: bool = False,
                 energy_tol: float = 0.01, fingerprint="auto"):
        self.search = search
        self.seed = int(seed)
        self.counter = counter if counter is not None else CallCounter()
        self.storage = SearchStorage(db, search, seed) if db is not None else None
        self.budget = budget
        self.target_energy = target_energy
        self.target_tol = target_tol
        self.stop_at_target = stop_at_target
        self.minima = KnownMinima(energy_tol=energy_tol, fingerprint=fingerprint)
        self.relaxations = 0
        self.duplicates = 0
        self.best_energy = np.inf
        self.best_atoms: Atoms | None = None
        self.history: list[dict] = []
        self._minimum_rows: list[int] = []
        self._calls0 = 0                       # totals of earlier (restored) sessions
        self._seconds0 = 0.0
        self._calc_seconds0 = 0.0
        self._counter_calls = self.counter.calls   # counter state when this session started
        self._counter_seconds = self.counter.seconds
        self._last_calls = self.calls
        self._start = time.perf_counter()
        #: ``state`` stored with the last restored relaxation (a baseline resumes from it)
        self.resume_state: dict | None = None
        #: functions ``f(recorder, record)`` called after each relaxation is stored
        self.observers: list = []
        if self.storage is not None:
            self._restore()

    # -- totals ----------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Energy+force calls so far (all sessions)."""
        return self._calls0 + self.counter.calls - self._counter_calls

    @property
    def calc_seconds(self) -> float:
        """Seconds spent inside the calculator so far (all sessions)."""
        return self._calc_seconds0 + self.counter.seconds - self._counter_seconds

    @property
    def seconds(self) -> float:
        """Wall time of the search so far (all sessions), calculator included."""
        return self._seconds0 + time.perf_counter() - self._start

    @property
    def reached(self) -> bool:
        return (self.target_energy is not None
                and self.best_energy <= self.target_energy + self.target_tol)

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.relaxations >= self.budget

    def check_budget(self) -> None:
        """Raise if no more relaxations are allowed."""
        if self.stop_at_target and self.reached:
            raise TargetReached(f"target energy {self.target_energy} reached")
        if self.exhausted:
            raise BudgetExhausted(f"budget of {self.budget} relaxations used")

    # -- recording -------------------------------------------------------------------------
    def record(self, atoms: Atoms, energy: float, generator: str | None = None,
               candidate: Atoms | None = None, candidate_id: int | None = None,
               opt_steps: int | None = None, raise_at_budget: bool = True,
               state: dict | None = None) -> Record:
        """Register one finished relaxation ending at ``atoms`` with ``energy``.

        ``state`` (arrays and scalars) is stored in the row's ``data``: what a method needs to
        continue after this relaxation when restarted from the database
        (:attr:`resume_state`)."""
        step = self.relaxations
        energy = float(energy)
        index, new = self.minima.match_or_add(atoms, energy)
        self.duplicates += not new
        self.relaxations += 1
        best = energy < self.best_energy - 1e-12
        if best:
            self.best_energy = energy
            self.best_atoms = atoms.copy()
            self.history.append({"relaxations": self.relaxations, "calls": self.calls,
                                 "seconds": round(self.seconds, 6), "energy": energy})
        calls_here = self.calls - self._last_calls
        self._last_calls = self.calls
        row_id = None
        if self.storage is not None:
            generator = generator or str((candidate or atoms).info.get("generator", self.search))
            if candidate is not None and candidate_id is None:
                candidate_id = self.storage.write_candidate(candidate, step)
            duplicate_of = 0 if new else self._minimum_rows[index]
            costs = {"calls": calls_here, "total_calls": self.calls,
                     "total_seconds": self.seconds, "total_calc_seconds": self.calc_seconds,
                     "relaxations": self.relaxations}
            if opt_steps is not None:
                costs["opt_steps"] = int(opt_steps)
            if candidate_id is not None:
                costs["candidate_id"] = int(candidate_id)
            row_id = self.storage.write_minimum(atoms, energy, step, generator, duplicate_of,
                                                index, data=state, **costs)
            if new:
                self._minimum_rows.append(row_id)
        elif new:
            self._minimum_rows.append(-1)
        record = Record(step=step, energy=energy, minimum=index, new=new, best=best,
                        row_id=row_id)
        for observer in self.observers:
            observer(self, record)
        if raise_at_budget:
            self.check_budget()
        return record

    def _restore(self) -> None:
        rows = self.storage.minima_rows()
        for row in rows:
            atoms = row.toatoms()
            energy = float(row.energy)
            if row.get("duplicate_of", 0) == 0:
                self.minima.add(atoms, energy)
                self._minimum_rows.append(row.id)
            else:
                self.duplicates += 1
            self.relaxations = row.step + 1
            if energy < self.best_energy - 1e-12:
                self.best_energy = energy
                self.best_atoms = atoms
                self.history.append({"relaxations": row.step + 1, "calls": row.total_calls,
                                     "seconds": row.total_seconds, "energy": energy})
        if rows:
            last = rows[-1]
            self._calls0 = int(last.total_calls)
            self._seconds0 = float(last.total_seconds)
            self._calc_seconds0 = float(last.get("total_calc_seconds", 0.0))
            self._last_calls = self.calls
            self.resume_state = dict(last.data) if last.data else None

    def summary(self) -> dict:
        """Totals for the JSON report of ``ase-mlgen search``."""
        seconds = self.seconds
        return {"best_energy": None if not np.isfinite(self.best_energy) else self.best_energy,
                "n_minima": len(self.minima), "relaxations": self.relaxations,
                "duplicates": self.duplicates, "calls": self.calls,
                "seconds": seconds, "calculator_seconds": self.calc_seconds,
                "overhead_fraction": (max(seconds - self.calc_seconds, 0.0) / seconds
                                      if seconds > 0 else 0.0),
                "reached_target": bool(self.reached) if self.target_energy is not None else None,
                "history": list(self.history)}
