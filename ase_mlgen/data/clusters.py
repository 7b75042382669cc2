"""Training data for cluster energy models, labelled by any ASE calculator (the *teacher*).

:func:`build_cluster_dataset` makes, for every cluster size, ``per_size`` random compact starting
structures (:class:`~ase_mlgen.generators.random.RandomClusters`: no pair closer than
``min_distance`` × bond length), relaxes each locally with the teacher, and writes to an
:mod:`ase.db` database a few frames of every relaxation path and the final structure. By default
the path frames come from the late part of the path, within ``frame_window`` eV/atom of the final
energy: those are unrelaxed structures at bonding distances, like the grown clusters a generator
(MeGen) proposes and a model must score, whereas the random start itself has overlapping atoms and
energies tens of eV above any structure a search would ever propose (``frame_window=None`` takes the
frames evenly along the whole path, the random start first). A final structure that repeats a minimum already in the database (same size,
same energy within ``energy_tol`` eV and the same sorted pair distances and neighbour angles) is
not written again.

Every row has the column ``natoms`` (built into ase.db) and the key-value pairs ``relaxed`` (1 for the final structure of a
converged relaxation, else 0), ``final`` (1 for the last structure of a path), ``frame`` (index
along the path), ``e_above_final`` (eV above the path's final energy), ``teacher`` (the teacher's name), ``seed`` (of the starting structure) and
``dataset="clusters"``, and the teacher's energy (eV) and forces (eV/Å) as calculator results.

The database is the state: the seeds of finished relaxations are kept in its metadata, so running
the same command again skips them and completes a partial database. Relaxations run in parallel
over ``workers`` processes; the parent process alone writes the database.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from ase_mlgen.calculators.specs import CalculatorSpec

TeacherLike = "str | CalculatorSpec | Calculator | Callable[[], Calculator]"


def parse_sizes(text: str | int | Iterable[int]) -> list[int]:
    """``"31-70"``, ``"13,20,31-35"``, an int or a list of ints → sorted list of sizes."""
    if isinstance(text, (int, np.integer)):
        return [int(text)]
    if not isinstance(text, str):
        return sorted({int(s) for s in text})
    sizes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            sizes.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError:
            raise ValueError(f"cannot read cluster sizes {text!r}; write e.g. '31-70' or "
                             "'13,20,31-35'") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"cluster sizes must be positive integers, got {text!r}")
    return sorted(sizes)


def _teacher_factory(teacher) -> tuple[Callable[[], Calculator], str]:
    """A picklable zero-argument factory and a name for the ``teacher`` key."""
    if isinstance(teacher, CalculatorSpec):
        return teacher, teacher.spec
    if isinstance(teacher, str):
        spec = CalculatorSpec(teacher)
        name = spec.name if spec.name not in ("gap", "dart") else \
            f"{spec.name}:{Path(spec.argument).name}"
        return spec, name
    if isinstance(teacher, Calculator):
        return (lambda: teacher), type(teacher).__name__
    if callable(teacher):
        return teacher, getattr(teacher, "__name__", type(teacher).__name__)
    raise TypeError(f"teacher must be a spec string ('emt', 'gap:PATH', …), a Calculator or a "
                    f"zero-argument callable returning one; got {teacher!r}")


def task_seed(seed: int, size: int, index: int) -> int:
    """The seed of one starting structure: unique and stable for (base seed, size, index)."""
    return int(np.random.SeedSequence([int(seed), int(size), int(index)]).generate_state(1)[0])


# -- worker side -------------------------------------------------------------------------------
_WORKER_CALC: Calculator | None = None
_WORKER_FACTORY = None


def _init_worker(factory) -> None:
    global _WORKER_CALC, _WORKER_FACTORY
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER_FACTORY = factory
    _WORKER_CALC = None


def _calculator() -> Calculator:
    global _WORKER_CALC
    if _WORKER_CALC is None:
        _WORKER_CALC = _WORKER_FACTORY()
    return _WORKER_CALC


def relax_one(job: dict) -> dict:
    """Make one random start, relax it with the teacher, return the chosen frames."""
    from ase.optimize import FIRE

    from ase_mlgen.generators.random import RandomClusters

    gen = RandomClusters(job["symbols"], min_distance=job["min_distance"],
                         packing=job["packing"], random_state=job["seed"])
    atoms = gen.generate(1)[0]
    atoms.info.clear()
    atoms.calc = _calculator()
    path: list[tuple[np.ndarray, float, np.ndarray]] = []

    def record():
        path.append((atoms.get_positions().copy(), float(atoms.get_potential_energy()),
                     np.array(atoms.get_forces(), dtype=float)))

    opt = FIRE(atoms, logfile=None, maxstep=0.2)
    opt.attach(record, interval=1)
    converged = bool(opt.run(fmax=job["fmax"], steps=job["steps"]))
    if not path or not np.allclose(path[-1][0], atoms.positions):
        record()
    last = len(path) - 1
    chosen = choose_frames([e for _, e, _ in path], job["frames"], job.get("frame_window"),
                           len(atoms))
    frames = [(i, *path[i], i == last) for i in chosen] + [(last, *path[last], True)]
    return {"seed": job["seed"], "size": job["size"], "numbers": atoms.numbers.copy(),
            "converged": converged, "frames": frames}


def choose_frames(energies, frames: int, window: float | None, natoms: int) -> list[int]:
    """Indices of up to ``frames`` path frames (the final one excluded), evenly spaced.

    ``energies`` are the teacher's energies (eV) along the path, the last one final. With
    ``window`` (eV/atom) only frames at most ``window * natoms`` eV above the final energy are
    candidates: the first such frame and the final one span the evenly spaced picks. With
    ``window=None`` the picks span the whole path from the start.
    """
    e = np.asarray(energies, dtype=float)
    last = len(e) - 1
    if frames <= 0 or last <= 0:
        return []
    first = 0
    if window is not None:
        inside = np.flatnonzero(e[:last] - e[last] <= window * natoms)
        if inside.size == 0:
            return []
        first = int(inside[0])
    n = min(frames, last - first)
    picks = np.linspace(first, last, n, endpoint=False).astype(int)
    return [int(i) for i in np.unique(picks)]


# -- parent side --------------------------------------------------------------------------------
def _same_minimum(a: Atoms, ea: float, b: Atoms, eb: float, energy_tol: float) -> bool:
    if abs(ea - eb) > energy_tol:
        return False
    from ase_mlgen.generators.megen.duplicates import same_by_distances_and_angles

    return same_by_distances_and_angles(a, b)


def build_cluster_dataset(element: str, sizes, per_size: int, calculator, db: str | os.PathLike,
                          frames: int = 3, workers: int = 1, seed: int = 0, fmax: float = 0.05,
                          steps: int = 1000, min_distance: float = 0.7, packing: float = 0.45,
                          energy_tol: float = 0.01, frame_window: float | None = 0.1,
                          progress: bool = True) -> dict:
    """Build (or complete) a database of teacher-labelled clusters; returns a summary dict.

    Parameters
    ----------
    element:
        Chemical symbol of the cluster atoms, e.g. ``"Ga"``.
    sizes:
        Cluster sizes: ``"31-70"``, ``[13, 20]`` or an int.
    per_size:
        Number of random starts (relaxations) per size.
    calculator:
        The teacher: a spec string (``"emt"``, ``"lj"``, ``"gap:PATH"``, ``"gpaw"``), a
        :class:`~ase_mlgen.calculators.specs.CalculatorSpec`, a zero-argument callable returning a
        calculator (picklable when ``workers > 1``) or a calculator instance (``workers=1`` only).
    db:
        Path of the ase.db file (created or completed).
    frames:
        Path frames taken evenly (within ``frame_window``) from each relaxation besides the final
        structure.
    workers:
        Parallel processes, each with its own teacher.
    seed:
        Base seed; every start has its own seed derived from (seed, size, index).
    fmax, steps:
        Convergence (eV/Å) and step limit of the FIRE relaxation. A random Ga50 start takes
        about 135 steps to 0.05 eV/Å with GAP and Ga70 about 215; the default of 1000 lets every
        relaxation converge (``relaxed=1``) rather than cut it short.
    min_distance, packing:
        Of the random starts (fraction of the bond length; volume fraction of the sampling sphere).
    energy_tol:
        Energy window (eV) within which two final structures of one size are compared as possible
        duplicates.
    frame_window:
        Path frames are taken only from the part of the path at most this many eV/atom above the
        final energy (default 0.1 eV/atom: 3 eV for Ga31, 7 eV for Ga70, where a random start is
        50-170 eV above it). ``None``: along the whole path, the overlapping random start first.
        A database remembers the value it was built with; completing it with another is refused.
    """
    from ase.data import chemical_symbols

    if element not in chemical_symbols[1:]:
        raise ValueError(f"unknown element {element!r}")
    sizes = parse_sizes(sizes)
    if per_size < 1:
        raise ValueError("per_size must be at least 1")
    if frames < 0:
        raise ValueError("frames must be >= 0")
    if frame_window is not None and not frame_window > 0:
        raise ValueError(f"frame_window must be a positive energy in eV/atom or None, got "
                         f"{frame_window!r}")
    workers = max(1, int(workers))
    factory, teacher_name = _teacher_factory(calculator)
    if workers > 1 and isinstance(calculator, Calculator):
        raise ValueError("a calculator instance cannot be shared by worker processes: pass a "
                         "spec string or a zero-argument factory, or use workers=1")

    from tqdm import tqdm

    from ase_mlgen.utils.database import connect_db
    from ase_mlgen.utils.io import exclusive_lock

    # the lock is taken before the completed seeds are read, so that no other writer can add
    # rows between that read and this build's writes
    with exclusive_lock(db, "the cluster dataset"):
        con = connect_db(str(db), type="db")
        meta = dict(con.metadata) if Path(db).exists() else {}
        done = set(meta.get("completed_seeds", []))
        window_key = "all" if frame_window is None else float(frame_window)
        if done and meta.get("frame_window", "all") != window_key:
            raise ValueError(f"{db} was built with frame_window="
                             f"{meta.get('frame_window', 'all')!r} (eV/atom; 'all' = None); "
                             f"completing it with {frame_window!r} would mix two frame "
                             "selections: pass the same value or use a new database")
        jobs = []
        # round-robin over the sizes (every size's first start, then every size's second, …) so
        # that a partial database already covers all sizes
        for index in range(per_size):
            for size in sizes:
                s = task_seed(seed, size, index)
                if s not in done:
                    jobs.append({"symbols": f"{element}{size}", "size": size, "seed": s,
                                 "frames": frames, "frame_window": frame_window,
                                 "fmax": fmax, "steps": steps,
                                 "min_distance": min_distance, "packing": packing})
        # known minima per size, for duplicate removal
        minima: dict[int, list[tuple[Atoms, float]]] = {}
        if done:
            for row in con.select(final=1):
                minima.setdefault(row.natoms, []).append((row.toatoms(), row.energy))

        written = duplicates = 0
        bar = tqdm(total=len(jobs), desc=f"{element} clusters", unit="relax", disable=not progress)

        def store(res: dict) -> None:
            nonlocal written, duplicates
            rows = []
            e_final = res["frames"][-1][2]
            for index, pos, energy, forces, final in res["frames"]:
                atoms = Atoms(numbers=res["numbers"], positions=pos)
                if final:
                    known = minima.setdefault(res["size"], [])
                    if any(_same_minimum(atoms, energy, b, eb, energy_tol) for b, eb in known):
                        duplicates += 1
                        continue
                    known.append((atoms, energy))
                atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
                rows.append((atoms, {"frame": int(index),
                                     "final": int(final),
                                     "relaxed": int(final and res["converged"]),
                                     "e_above_final": float(energy - e_final),
                                     "teacher": teacher_name, "seed": int(res["seed"]),
                                     "dataset": "clusters"}))
            done.add(int(res["seed"]))
            with con:  # one transaction: rows and the completion mark land together
                for atoms, kv in rows:
                    con.write(atoms, **kv)
                con.metadata = {**meta, "element": element, "teacher": teacher_name,
                                "frame_window": window_key, "completed_seeds": sorted(done)}
            written += len(rows)
            bar.update(1)

        try:
            if workers == 1 or len(jobs) <= 1:
                _init_worker(factory)
                for job in jobs:
                    store(relax_one(job))
            else:
                import multiprocessing as mp

                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                with ctx.Pool(workers, initializer=_init_worker, initargs=(factory,)) as pool:
                    for res in pool.imap_unordered(relax_one, jobs):
                        store(res)
        finally:
            bar.close()
        return {"db": str(db), "relaxations": len(jobs),
                "skipped_done": len(sizes) * per_size - len(jobs), "rows_written": written,
                "duplicate_minima": duplicates, "rows_total": con.count()}


def load_dataset(db: str | os.PathLike, select: str | None = None) -> list[Atoms]:
    """All structures of an ase.db (optionally filtered, e.g. ``"natoms>=31"``) with their
    energies (and forces when stored) attached as single-point results; ``info`` holds the row's
    key-value pairs and ``info["id"]`` its id."""
    from ase.db import connect

    path = Path(db)
    if not path.exists():
        raise FileNotFoundError(f"database {path} not found")
    images = []
    for row in connect(str(path)).select(select or None):
        if row.get("energy") is None:
            continue
        atoms = row.toatoms()
        results = {"energy": row.energy}
        if row.get("forces") is not None:
            results["forces"] = row.forces
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info.update(row.key_value_pairs)
        atoms.info["id"] = row.id
        images.append(atoms)
    return images
