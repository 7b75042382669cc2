"""Any structure generator as an ASE global optimiser, drop-in beside ``BasinHopping``.

>>> from ase_mlgen.generators.random import RandomClusters
>>> from ase_mlgen.calculators.lennard_jones import FullLennardJones
>>> atoms = Atoms("Ar7"); atoms.calc = FullLennardJones()
>>> gen = RandomClusters(atoms, bond_length=2 ** (1 / 6), random_state=0)
>>> search = GeneratorSearch(atoms, gen, logfile=None, trajectory=None, seed=0)
>>> search.run(20)
True
>>> round(search.get_minimum()[0], 4)      # LJ7 global minimum, ε
-16.5054

One step = one candidate from ``generator.generate`` relaxed by ``atoms.calc`` with
``optimizer`` to ``fmax``, or to the candidate's own ``info["relax_fmax"]`` when that is
tighter (a generator may ask for one minimum to be refined before moves that depend on its exact
geometry; that relaxation counts like any other). A candidate that relaxes to an already known
minimum (energy window and fingerprint, :mod:`ase_mlgen.structures.similarity`) counts as a
duplicate. With ``db`` every candidate and every minimum is a row
(:mod:`ase_mlgen.search.storage`), and a search created on a database that already holds rows of
the same ``name`` and ``seed`` continues where it stopped:
candidates of step ``k`` come from a random stream seeded by ``(seed, k // batch_size)``, so no
relaxation is lost or repeated.
"""
from __future__ import annotations

from typing import IO

import numpy as np
from ase import Atoms
from ase.io.trajectory import Trajectory
from ase.optimize import FIRE
from ase.optimize.optimize import DEFAULT_MAX_STEPS, Dynamics

from ase_mlgen.calculators.counting import CountingCalculator
from ase_mlgen.generators.base import check_generated
from ase_mlgen.search.recorder import BudgetExhausted, SearchRecorder


def _generator_name(generator) -> str:
    name = getattr(generator, "name", None)
    return name if isinstance(name, str) and name else type(generator).__name__.lower()


class GeneratorSearch(Dynamics):
    """Global optimisation by relaxing generated candidates.

    Parameters
    ----------
    atoms:
        The structure to work on; its calculator relaxes every candidate (it is wrapped in a
        :class:`~ase_mlgen.calculators.counting.CountingCalculator` that counts calls). Every
        candidate must have the same number of atoms.
    generator:
        Anything with ``generate(n, rng=None) -> list[Atoms]``.
    optimizer, fmax, steps_per_relaxation:
        Local optimiser class, force threshold (eV/Å) and its step limit per candidate.
    logfile, trajectory, local_minima_trajectory:
        As in :class:`ase.optimize.basin.BasinHopping`: a log line per step (``"-"`` for stdout),
        the lowest structure each time it improves, and every local minimum (``None``: off).
    optimizer_logfile:
        Log of the local optimiser (``None``: off).
    db:
        ase.db file/URL or connection for candidate and minimum rows; enables restarts.
    name:
        Value of the ``search`` key (default: the generator's ``name``).
    seed:
        Seed of the candidate streams (default: adopt the seed of the run already in ``db``,
        else 0).
    batch_size:
        Candidates asked from the generator at once (batched models are faster).
    relax_cell:
        For periodic candidates, relax the cell too (``FrechetCellFilter``).
    energy_tol, fingerprint:
        Duplicate criterion.
    target_energy, target_tol:
        :meth:`run` stops early once the best energy is within ``target_tol`` of it.
    """

    def __init__(self, atoms: Atoms, generator, optimizer=FIRE, fmax: float = 0.05,
                 steps_per_relaxation: int = 2000, logfile: IO | str | None = "-",
                 trajectory: str | None = "lowest.traj",
                 local_minima_trajectory: str | None = None,
                 optimizer_logfile: str | None = None, db=None, name: str | None = None,
                 seed: int | None = None, batch_size: int = 1, relax_cell: bool = False,
                 energy_tol: float = 0.01, fingerprint="auto",
                 target_energy: float | None = None, target_tol: float = 1e-3):
        if atoms.calc is None:
            raise ValueError("GeneratorSearch relaxes with atoms.calc; attach a calculator first")
        if not hasattr(generator, "generate"):
            raise TypeError(f"{type(generator).__name__} has no generate(n, rng=None) method")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not isinstance(atoms.calc, CountingCalculator):
            atoms.calc = CountingCalculator(atoms.calc)
        self.generator = generator
        self.optimizer = optimizer
        self.fmax = fmax
        self.steps_per_relaxation = steps_per_relaxation
        self.optimizer_logfile = optimizer_logfile
        self.batch_size = int(batch_size)
        self.relax_cell = relax_cell
        self.name = name or _generator_name(generator)
        if seed is None:
            seed = self._seed_from_db(db, self.name)
        self.seed = int(seed)
        self.recorder = SearchRecorder(self.name, self.seed, atoms.calc.counter, db=db,
                                       target_energy=target_energy, target_tol=target_tol,
                                       energy_tol=energy_tol, fingerprint=fingerprint)
        restarting = self.recorder.relaxations > 0
        super().__init__(atoms, logfile=logfile, trajectory=None)
        self.nsteps = self.recorder.relaxations
        self._lowest_path = trajectory
        self._lm_path = local_minima_trajectory
        for path in (trajectory, local_minima_trajectory):
            if path is not None and not restarting and not hasattr(path, "write"):
                Trajectory(path, "w").close()
        self._batch: list[Atoms] | None = None
        self._batch_index = -1
        self.last_record = None

    @staticmethod
    def _seed_from_db(db, name: str) -> int:
        if db is None:
            return 0
        from ase.db import connect

        connection = connect(db) if isinstance(db, str) or hasattr(db, "__fspath__") else db
        seeds = {row.seed for row in connection.select(search=name) if "seed" in row}
        if len(seeds) > 1:
            raise ValueError(f"database holds runs of {name!r} with seeds {sorted(seeds)}; "
                             "pass seed= to say which one to continue")
        return seeds.pop() if seeds else 0

    # -- ASE Dynamics interface ------------------------------------------------------------
    def todict(self) -> dict:
        return {"type": "optimization", "optimizer": self.__class__.__name__,
                "generator": self.name, "local-minima-optimizer": self.optimizer.__name__,
                "max-force": self.fmax, "seed": self.seed, "batch-size": self.batch_size}

    @property
    def Emin(self) -> float:
        return self.recorder.best_energy

    def get_minimum(self) -> tuple[float, Atoms]:
        """Return the lowest energy and its structure (like ``BasinHopping.get_minimum``)."""
        if self.recorder.best_atoms is None:
            raise RuntimeError("no candidate relaxed yet; call run(steps) first")
        return self.recorder.best_energy, self.recorder.best_atoms.copy()

    @property
    def minima(self):
        """The distinct minima found (:class:`~ase_mlgen.structures.similarity.KnownMinima`)."""
        return self.recorder.minima

    def irun(self, steps: int = DEFAULT_MAX_STEPS):
        """Relax ``steps`` candidates, yielding after each whether the target was reached."""
        self.max_steps = self.nsteps + steps
        while self.nsteps < self.max_steps:
            if self.recorder.reached:
                yield True
                return
            self.step()
            self.nsteps += 1
            self.call_observers()
            yield self.recorder.reached

    def run(self, steps: int = DEFAULT_MAX_STEPS) -> bool:
        """Relax ``steps`` more candidates; True if ``target_energy`` was reached (or none set
        and every step ran)."""
        for _ in self.irun(steps):
            pass
        return self.recorder.reached if self.recorder.target_energy is not None else True

    # -- one step --------------------------------------------------------------------------
    def _candidate(self, step: int) -> Atoms:
        batch_index = step // self.batch_size
        if batch_index != self._batch_index:
            rng = np.random.default_rng([self.seed, batch_index])
            self._batch = check_generated(self.generator.generate(self.batch_size, rng=rng),
                                          self.batch_size, self.name)
            self._batch_index = batch_index
        return self._batch[step % self.batch_size]

    def _load(self, candidate: Atoms) -> None:
        atoms = self.atoms
        if len(candidate) != len(atoms):
            raise ValueError(f"generator {self.name!r} made {len(candidate)} atoms; the search "
                             f"works on {len(atoms)}")
        atoms.set_atomic_numbers(candidate.numbers)
        atoms.set_pbc(candidate.pbc)
        if candidate.pbc.any() or candidate.cell.rank > 0:
            atoms.set_cell(candidate.cell)
        atoms.set_positions(candidate.positions)

    def _relax(self, fmax: float) -> int:
        target = self.atoms
        if self.relax_cell and self.atoms.pbc.all():
            from ase.filters import FrechetCellFilter

            target = FrechetCellFilter(self.atoms)
        with self.optimizer(target, logfile=self.optimizer_logfile) as opt:
            opt.run(fmax=fmax, steps=self.steps_per_relaxation)
            return opt.nsteps

    def _fmax_for(self, candidate: Atoms) -> float:
        """The search's ``fmax``, or the candidate's ``info["relax_fmax"]`` (eV/Å) when tighter."""
        asked = candidate.info.get("relax_fmax")
        if asked is None:
            return self.fmax
        if not float(asked) > 0:
            raise ValueError(f"candidate info['relax_fmax'] must be > 0 eV/Å, not {asked!r}")
        return min(self.fmax, float(asked))

    def step(self) -> None:
        """Generate, relax, deduplicate and store one candidate."""
        step = self.recorder.relaxations
        candidate = self._candidate(step)
        candidate_id = None
        if self.recorder.storage is not None:
            candidate_id = (self.recorder.storage.candidate_id(step)
                            or self.recorder.storage.write_candidate(candidate, step))
        self._load(candidate)
        opt_steps = self._relax(self._fmax_for(candidate))
        energy = self.atoms.get_potential_energy()
        relaxed = self.atoms.copy()
        relaxed.info = {k: v for k, v in candidate.info.items()}
        relaxed.calc = self.atoms.calc
        record = self.recorder.record(relaxed, energy, generator=candidate.info["generator"],
                                      candidate_id=candidate_id, opt_steps=opt_steps,
                                      raise_at_budget=False)
        self.last_record = record
        observe = getattr(self.generator, "observe", None)
        if observe is not None:  # optional protocol hook: adaptive generators learn from minima
            observe(relaxed, energy)
        if self._lm_path is not None:
            self._write(self._lm_path)
        if record.best and self._lowest_path is not None:
            self._write(self._lowest_path)
        self.log(step, energy, record)

    def _write(self, path) -> None:
        if hasattr(path, "write"):
            path.write(self.atoms)
            return
        with Trajectory(path, "a") as traj:
            traj.write(self.atoms)

    def log(self, step: int, energy: float, record) -> None:
        if self.logfile is None:
            return
        what = "new" if record.new else f"duplicate of minimum {record.minimum}"
        self.logfile.write(f"{self.__class__.__name__}: step {step}, energy {energy:15.6f}, "
                           f"emin {self.Emin:15.6f}, {what}\n")


__all__ = ["GeneratorSearch", "BudgetExhausted"]
