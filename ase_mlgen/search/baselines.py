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


class RecordedBasinHopping(BasinHopping):
    """``BasinHopping`` that reports each local relaxation to a recorder."""

    def __init__(self, atoms, recorder, steps_per_relaxation: int = 2000, **kwargs):
        self.recorder = recorder
        self.steps_per_relaxation = steps_per_relaxation
        super().__init__(atoms, **kwargs)

    def get_energy(self, positions):
        if np.any(self.positions != positions):
            self.positions = positions
            self.optimizable.set_x(positions.ravel())
            with self.optimizer(self.optimizable, logfile=self.optimizer_logfile) as opt:
                opt.run(fmax=self.fmax, steps=self.steps_per_relaxation)
            self.energy = self.optimizable.get_value()
            atoms = self._atoms()
            self.recorder.record(atoms, self.energy, generator="bh", opt_steps=opt.nsteps)
        return self.energy


def run_basin_hopping(problem) -> None:
    """The ``bh`` method: ASE BasinHopping from a compact random start."""
    info = problem.template.info
    temperature = option(problem.options, "temperature", info.get("bh_temperature", 0.1), float)
    dr = option(problem.options, "dr", info.get("bh_dr", 0.4), float)
    atoms = problem.start_structure()
    np.random.seed(problem.seed)   # ASE BasinHopping draws moves from the global numpy state
    bh = RecordedBasinHopping(atoms, problem.recorder, temperature=temperature, dr=dr,
                              optimizer=problem.optimizer, fmax=problem.fmax, logfile=None,
                              trajectory=None, optimizer_logfile=None,
                              local_minima_trajectory=None,
                              steps_per_relaxation=problem.steps_per_relaxation)
    with bh:
        bh.run(problem.budget)     # the recorder raises BudgetExhausted at the budget


class RecordedMinimaHopping(MinimaHopping):
    """``MinimaHopping`` that reports each local relaxation to a recorder."""

    def __init__(self, atoms, recorder, **kwargs):
        self.recorder = recorder
        super().__init__(atoms, **kwargs)

    def _optimize(self):
        super()._optimize()
        self.recorder.record(self._atoms, self._atoms.get_potential_energy(), generator="mh")


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
            hop = RecordedMinimaHopping(atoms, problem.recorder, **kwargs)
            hop(totalsteps=problem.budget + 1)
        finally:
            os.chdir(cwd)
