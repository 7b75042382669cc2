"""ASE's own global optimisers as ``ase-mlgen search`` baselines: ``bh`` (BasinHopping) and
``mh`` (MinimaHopping).

Both run unchanged ASE code on the counted calculator; a thin subclass reports every finished
local relaxation to the run's :class:`~ase_mlgen.search.recorder.SearchRecorder`, which stops the
run at its budget. Settings come from ``--option`` (``temperature``/``dr`` for ``bh``;
``T0``/``timestep``/``Ediff0``/``mdmin`` for ``mh``) or from the system's defaults
(:mod:`ase_mlgen.systems`). Both use FIRE to the common ``fmax``, like every other method.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
from ase.optimize.basin import BasinHopping
from ase.optimize.minimahopping import MinimaHopping

from ase_mlgen.generators.base import option
from ase_mlgen.systems import BH_DR_PER_BOND


def _rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"rng_keys": keys.copy(), "rng_pos": int(pos), "rng_has_gauss": int(has_gauss),
            "rng_gauss": float(gauss)}


def _set_rng_state(state: dict) -> None:
    np.random.set_state(("MT19937", np.asarray(state["rng_keys"], dtype=np.uint32),
                         int(state["rng_pos"]), int(state["rng_has_gauss"]),
                         float(state["rng_gauss"])))


class RecordedBasinHopping(BasinHopping):
    """``BasinHopping`` that reports each local relaxation to a recorder and can resume.

    The algorithm is ASE's (moves of every coordinate uniform in ``[-dr, dr]``; centre of mass
    kept; Metropolis test at ``temperature``) with three additions:

    * ``from_minimum`` (default True): a move starts from the *relaxed* positions of the last
      accepted minimum, as in Wales & Doye's basin hopping (and GMIN, scipy's ``basinhopping``).
      ASE's own class (``from_minimum=False``) starts from the last accepted *unrelaxed*
      positions, so moves add up as a random walk that never returns, even while the walk stays
      in one basin (a move back to the same minimum is always accepted). On LJ19 (kT 0.8 ε,
      dr 0.25 σ) that walk drifted apart: FIRE calls per relaxation grew from ~200 to ~600 and
      benchmark seed 0 had not reached the global minimum after more than 300 relaxations.
    * each relaxation is capped at ``steps_per_relaxation`` optimiser steps like every method;
    * each stored row carries the walk's state (last accepted positions and energy, this step's
      positions, best so far, the numpy random state after the move); ``resume=`` that state
      continues the walk exactly where it stopped: the Metropolis test of the stored step is made
      with the stored random state, so an interrupted and resumed run relaxes the same
      structures as an uninterrupted one.
    """

    def __init__(self, atoms, recorder, steps_per_relaxation: int = 2000,
                 resume: dict | None = None, from_minimum: bool = True, **kwargs):
        self.recorder = recorder
        self.steps_per_relaxation = steps_per_relaxation
        self.from_minimum = from_minimum
        self._resume = resume
        self._ro = None          # last accepted (unrelaxed) positions and energy, during run
        self._Eo = None
        super().__init__(atoms, **kwargs)

    def initialize(self):
        state = self._resume
        if state is None:
            super().initialize()
            return
        _set_rng_state(state)
        self.optimizable.set_x(np.asarray(state["bh_relaxed"]).ravel())
        self.energy = float(state["bh_En"])
        self.positions = np.array(state["bh_rn"])
        self._relaxed = np.array(state["bh_relaxed"])
        self.Emin = float(state["bh_Emin"])
        self.rmin = np.array(state["bh_rmin"])
        if state["bh_start"]:
            self.Emin = self.energy
            self.rmin = self.positions.copy()
            self._resume = None

    def _state(self) -> dict:
        relaxed = self.optimizable.get_x().reshape(-1, 3).copy()
        start = self._ro is None
        state = {"bh_start": start, "bh_En": float(self.energy), "bh_relaxed": relaxed,
                 "bh_rn": relaxed if start else self.positions.copy(),
                 "bh_Emin": float(self.energy if start else self.Emin),
                 "bh_rmin": relaxed if start else np.asarray(self.rmin).copy()}
        if not start:
            state.update(bh_ro=np.asarray(self._ro).copy(), bh_Eo=float(self._Eo))
        state.update(_rng_state())
        return state

    def get_energy(self, positions):
        if np.any(self.positions != positions):
            self.positions = positions
            self.optimizable.set_x(positions.ravel())
            with self.optimizer(self.optimizable, logfile=self.optimizer_logfile) as opt:
                opt.run(fmax=self.fmax, steps=self.steps_per_relaxation)
            self.energy = self.optimizable.get_value()
            self._relaxed = self.optimizable.get_x().reshape(-1, 3).copy()
            self.recorder.record(self._atoms(), self.energy, generator="bh",
                                 opt_steps=opt.nsteps, state=self._state())
        return self.energy

    def run(self, steps):
        """ASE's ``BasinHopping.run`` loop, entered at the stored step when resuming."""
        state, self._resume = self._resume, None
        pending = None
        if state is None:
            ro = self.positions
            Eo = self.get_energy(ro)
        else:
            ro, Eo = np.array(state["bh_ro"]), float(state["bh_Eo"])
            pending = (self.positions.copy(), self.energy)
        for step in range(steps):
            self._ro, self._Eo = ro, Eo
            if pending is not None:
                (rn, En), pending = pending, None
            else:
                En = None
                while En is None:
                    rn = self.move(ro)
                    En = self.get_energy(rn)
            if En < self.Emin:
                self.Emin = En
                self.rmin = self.optimizable.get_x().reshape(-1, 3)
                self.call_observers()
            self.log(step, En, self.Emin)
            accept = np.exp((Eo - En) / self.kT) > np.random.uniform()
            if accept:
                ro = self._relaxed.copy() if self.from_minimum else rn.copy()
                Eo = En


def run_basin_hopping(problem) -> None:
    """The ``bh`` method: ASE BasinHopping from a compact random start; with a database it
    resumes the stored walk."""
    info = problem.template.info
    temperature = option(problem.options, "temperature", info.get("bh_temperature", 0.1), float)
    dr = option(problem.options, "dr",
                info.get("bh_dr", BH_DR_PER_BOND * info.get("bond_length", 2.5)), float)
    from_minimum = option(problem.options, "from_minimum", True, bool)
    atoms = problem.start_structure()
    state = problem.recorder.resume_state
    if state is not None and "bh_rn" not in state:
        state = None             # rows of another version: continue the count with a new walk
    np.random.seed(problem.seed)   # ASE BasinHopping draws moves from the global numpy state
    bh = RecordedBasinHopping(atoms, problem.recorder, temperature=temperature, dr=dr,
                              optimizer=problem.optimizer, fmax=problem.fmax, logfile=None,
                              trajectory=None, optimizer_logfile=None,
                              local_minima_trajectory=None,
                              steps_per_relaxation=problem.steps_per_relaxation, resume=state,
                              from_minimum=from_minimum)
    with bh:
        bh.run(problem.budget)     # the recorder raises BudgetExhausted at the budget


class _SameMinimum:
    """Stand-in for ASE's ``ComparePositions`` in MinimaHopping's two checks ("back at the last
    minimum?", "a minimum seen before?"): 0 when the structures are the same minimum by the
    search's own criterion (sorted-distance fingerprint, invariant to rotation, translation and
    permutation; energies within ``energy_tol`` when both are known), infinity otherwise."""

    def __init__(self, energy_tol: float):
        from ase_mlgen.structures.similarity import make_fingerprint

        self.energy_tol = energy_tol
        self.fingerprint = make_fingerprint("distances")

    def __call__(self, translate: bool = True):       # called like ComparePositions(...)
        return self._compare

    def _compare(self, a, b) -> float:
        ea, eb = _known_energy(a), _known_energy(b)
        if ea is not None and eb is not None and abs(ea - eb) > self.energy_tol:
            return np.inf
        fp = self.fingerprint
        return 0.0 if fp.distance(fp.compute(a), fp.compute(b)) <= fp.tol else np.inf


def _known_energy(atoms):
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    return float(results["energy"]) if "energy" in results else None


class RecordedMinimaHopping(MinimaHopping):
    """``MinimaHopping`` that reports each local relaxation to a recorder.

    One change to ASE's algorithm: whether a relaxed structure is the last minimum or one seen
    before is decided by the search's duplicate criterion, not by ASE's ``ComparePositions``
    (largest atomic displacement after translation only). The MD escapes rotate the cluster, so
    with ``ComparePositions`` every return to a known LJ19 minimum looked new (log: same energy
    to 1e-4 ε, "max distance" 0.3 σ) and the temperature/``Ediff`` feedback, the heart of minima
    hopping, never worked (the tuning run was stopped after 100+ relaxations without the global
    minimum).
    """

    def __init__(self, atoms, recorder, steps_per_relaxation: int = 2000, **kwargs):
        self.recorder = recorder
        self.steps_per_relaxation = steps_per_relaxation
        self._same_minimum = _SameMinimum(recorder.minima.energy_tol)
        super().__init__(atoms, **kwargs)

    def _check_results(self):
        import ase.optimize.minimahopping as ase_mh

        original = ase_mh.ComparePositions
        ase_mh.ComparePositions = self._same_minimum
        try:
            super()._check_results()
        finally:
            ase_mh.ComparePositions = original

    def _optimize(self):
        """MinimaHopping's relaxation without its per-step ``qn*.traj``/``qn*.log`` files (read
        only by its own file-based resume, which is not used here; writing them cost more than a
        cheap potential), capped at ``steps_per_relaxation`` like every method."""
        self._atoms.set_momenta(np.zeros(self._atoms.get_momenta().shape))
        with self._optimizer(self._atoms, logfile=None) as opt:
            self._log("msg", "Optimization: qn%05i" % self._counter)
            opt.run(fmax=self._fmax, steps=self.steps_per_relaxation)
            self._log("ene")
        self.recorder.record(self._atoms, self._atoms.get_potential_energy(), generator="mh",
                             opt_steps=opt.nsteps)


def run_minima_hopping(problem) -> None:
    """The ``mh`` method: ASE MinimaHopping (MD escapes + local relaxations), in a scratch
    directory because it writes its own md/qn trajectories and log."""
    info = problem.template.info
    atoms = problem.start_structure()
    kwargs = dict(T0=option(problem.options, "T0", info.get("mh_T0", 1000.0), float),
                  timestep=option(problem.options, "timestep", info.get("mh_timestep", 1.0),
                                  float),
                  Ediff0=option(problem.options, "Ediff0", info.get("mh_Ediff0", 0.5), float),
                  mdmin=option(problem.options, "mdmin", 2, int),
                  fmax=problem.fmax, optimizer=problem.optimizer,
                  rng=np.random.RandomState(problem.seed))
    minima_threshold = option(problem.options, "minima_threshold", None, float)
    if minima_threshold is None:
        minima_threshold = 0.2 * info.get("bond_length", 2.5)
    kwargs["minima_threshold"] = minima_threshold
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ase_mlgen_mh_") as scratch:
        os.chdir(scratch)
        try:
            hop = RecordedMinimaHopping(atoms, problem.recorder,
                                        steps_per_relaxation=problem.steps_per_relaxation,
                                        **kwargs)
            hop(totalsteps=problem.budget + 1)
        finally:
            os.chdir(cwd)
