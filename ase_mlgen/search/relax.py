"""Relax many structures in parallel, storing each result in ``ase.db`` as soon as it finishes.

>>> from concurrent.futures import ThreadPoolExecutor
>>> from ase_mlgen.generators.random import RandomClusters
>>> images = RandomClusters("Cu6", random_state=0).generate(3)
>>> relaxed = relax_many(images, "emt", fmax=0.05, steps=200, progress=False,
...                      executor=ThreadPoolExecutor(2))
>>> [a.info["converged"] for a in relaxed]
[True, True, True]

* ``executor``: any :class:`concurrent.futures.Executor`; a process pool by default. A Dask
  cluster works unchanged: ``relax_many(images, factory, executor=client.get_executor())``.
* ``calculator_factory``: a spec string (``"emt"``, ``"gap:PATH"``, ``"gpaw"``, …), a
  :class:`~ase_mlgen.calculators.specs.CalculatorSpec`, or any picklable zero-argument callable
  (calculators themselves rarely pickle, so each worker builds its own).
* ``db``: each finished relaxation is one row (``relaxed=1``, ``relax_key``, ``converged``,
  ``opt_steps``, ``calls``, ``seconds`` and the image's scalar ``info``). Rerunning with the same
  database skips the images whose ``relax_key`` is already there, so an interrupted run
  (Ctrl-C, a killed job) loses at most the relaxations that were in flight.
* ``relax_key``: ``info[key]`` when ``key`` is given, else a hash of numbers, positions (rounded
  to 1e-6 Å), cell and pbc.
* Threads: the default process pool gives each of its ``max_workers`` workers an equal share of
  the CPU cores for OpenMP/BLAS and torch (``threadpoolctl``). Without that, every worker's
  calculator (xTB, GPAW, BLAS) starts one thread per core, and on a busy machine the spinning
  OpenMP threads slow a pool of two xTB relaxations down by more than 20×.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.optimize import FIRE

from ase_mlgen.search.storage import frozen, info_key_values


def image_key(atoms: Atoms, key: str | None = None) -> str:
    """Stable identifier of an input structure (see module docstring)."""
    if key is not None:
        if key not in atoms.info:
            raise KeyError(f"image has no info[{key!r}] to identify it")
        return str(atoms.info[key])
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(atoms.positions, 6).astype(np.float64).tobytes() + b"|")
    h.update(np.round(atoms.cell.array, 6).astype(np.float64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return h.hexdigest()[:20]


def _limit_worker_threads(threads: int) -> None:
    """Process-pool initializer: ``threads`` OpenMP/BLAS (and torch) threads in this worker."""
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)     # for libraries the worker has not loaded yet
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)             # for those already loaded (fork keeps the parent's)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _as_factory(calculator_factory):
    from ase_mlgen.calculators.specs import CalculatorSpec

    if isinstance(calculator_factory, str):
        return CalculatorSpec(calculator_factory)
    if not callable(calculator_factory):
        raise TypeError("calculator_factory must be a spec string or a zero-argument callable "
                        "returning a calculator")
    return calculator_factory


def relax_one(atoms: Atoms, calculator_factory: Callable, fmax: float = 0.05, steps: int = 500,
              optimizer=FIRE, relax_cell: bool = False) -> Atoms:
    """Relax a copy of ``atoms``; return it with a frozen calculator and ``info`` entries
    ``converged``, ``opt_steps``, ``calls`` and ``seconds``. Runs in a worker."""
    from ase_mlgen.calculators.counting import CountingCalculator

    work = atoms.copy()
    work.calc = CountingCalculator(calculator_factory())
    target = work
    if relax_cell and work.pbc.all():
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(work)
    start = time.perf_counter()
    with optimizer(target, logfile=None) as opt:
        converged = bool(opt.run(fmax=fmax, steps=steps))
        nsteps = opt.nsteps
    energy = work.get_potential_energy()
    out = frozen(work, energy)
    out.info = dict(atoms.info)
    out.info.update(converged=converged, opt_steps=int(nsteps),
                    calls=int(work.calc.counter.calls),
                    seconds=float(time.perf_counter() - start))
    return out


def relax_many(images: Sequence[Atoms], calculator_factory, fmax: float = 0.05,
               steps: int = 500, executor: Executor | None = None, db=None,
               optimizer=FIRE, key: str | None = None, relax_cell: bool = False,
               max_workers: int | None = None, progress: bool = True,
               errors: str = "raise") -> list[Atoms | None]:
    """Relax ``images``; return the relaxed structures in input order.

    Images already in ``db`` (same ``relax_key``) are not relaxed again; their stored result is
    returned. ``errors="skip"`` returns ``None`` for an image whose relaxation failed instead of
    raising after the others finished.
    """
    if errors not in ("raise", "skip"):
        raise ValueError("errors must be 'raise' or 'skip'")
    factory = _as_factory(calculator_factory)
    images = list(images)
    keys = [image_key(a, key) for a in images]
    connection = None
    done: dict[str, Atoms] = {}
    if db is not None:
        from ase_mlgen.utils.database import connect_db

        connection = connect_db(db)
        wanted = set(keys)
        for row in connection.select(relaxed=1):
            k = row.get("relax_key")
            if k in wanted:
                atoms = row.toatoms(add_additional_information=False)
                atoms.info.update(row.key_value_pairs)
                done[k] = atoms
    todo = [(i, a) for i, (a, k) in enumerate(zip(images, keys)) if k not in done]
    results: dict[str, Atoms] = dict(done)
    failures: list[tuple[int, BaseException]] = []
    own_executor = executor is None and len(todo) > 0
    if own_executor:
        import os

        workers = max_workers or min(len(todo), os.cpu_count() or 1)
        executor = ProcessPoolExecutor(
            max_workers=workers, initializer=_limit_worker_threads,
            initargs=(max(1, (os.cpu_count() or 1) // workers),))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), initial=len(images) - len(todo), desc="relax",
                   unit="image")
    try:
        futures = {executor.submit(relax_one, a, factory, fmax, steps, optimizer, relax_cell): i
                   for i, a in todo}
        for future in as_completed(futures):
            i = futures[future]
            try:
                relaxed = future.result()
            except Exception as exc:  # stored results stay; report at the end
                failures.append((i, exc))
                if bar is not None:
                    bar.update(1)
                continue
            relaxed.info["relax_key"] = keys[i]
            if connection is not None:
                kv = info_key_values(relaxed.info)
                kv.update(relax_key=keys[i], relaxed=1, converged=relaxed.info["converged"])
                connection.write(relaxed, key_value_pairs=kv)
            results[keys[i]] = relaxed
            if bar is not None:
                bar.update(1)
    except BaseException:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            own_executor = False
        raise
    finally:
        if bar is not None:
            bar.close()
        if own_executor:
            executor.shutdown()
    if failures and errors == "raise":
        i, exc = failures[0]
        raise RuntimeError(f"{len(failures)} of {len(todo)} relaxations failed (first: image "
                           f"{i}: {exc!r}); finished ones are stored, rerun to retry") from exc
    return [results.get(k) for k in keys]
