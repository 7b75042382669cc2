"""Search results in ``ase.db``: every candidate and every local minimum is a row.

Key-value pairs of every row written here:

==============  =============================================================================
key             meaning
==============  =============================================================================
``search``      method name (``random``, ``bh``, ``mh``, ``ga``, ``megen``, …)
``generator``   who proposed the structure (``info["generator"]``; e.g. ``random``, ``bh``)
``seed``        the run's integer seed
``step``        0-based index of the relaxation in the run
``relaxed``     0 for a candidate (as proposed), 1 for the local minimum it relaxed to
``duplicate_of``  for minima: id of the row of the first copy of this minimum, 0 if it is new;
                  −1 for candidates
``minimum``     index of the distinct minimum (0, 1, …; minima only)
``calls``, ``seconds``, ``opt_steps``  cost of this relaxation (minima only)
``total_calls``, ``total_seconds``, ``relaxations``  running totals after it (minima only)
==============  =============================================================================

plus scalar values the generator put in ``atoms.info`` (e.g. ``predicted_energy``). Questions
are then ``ase db out.db search=random,relaxed=1,duplicate_of=0 -s energy``.

``db`` is anything :func:`ase.db.connect` accepts: a ``.db`` file (SQLite), a ``.json`` file or a
``postgresql://`` URL.
"""
from __future__ import annotations

import os
import re

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db.core import reserved_keys

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OWN_KEYS = {"search", "generator", "seed", "step", "relaxed", "duplicate_of", "minimum", "calls",
            "seconds", "opt_steps", "total_calls", "total_seconds", "relaxations"}


def info_key_values(info: dict) -> dict:
    """Scalar entries of ``atoms.info`` that are valid ase.db key-value pairs."""
    out = {}
    for key, value in info.items():
        if not isinstance(key, str) or not _IDENT.match(key) or key in reserved_keys \
                or key in OWN_KEYS:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, (int, float)) and np.isfinite(value):
            out[key] = value
        elif isinstance(value, str) and value:
            out[key] = value
    return out


def frozen(atoms: Atoms, energy: float | None = None) -> Atoms:
    """A copy of ``atoms`` with its energy and forces frozen in a SinglePointCalculator."""
    copy = atoms.copy()
    results = {}
    calc = atoms.calc
    if calc is not None:
        for key in ("energy", "forces", "free_energy"):
            if key in getattr(calc, "results", {}):
                results[key] = calc.results[key]
    if energy is not None:
        results["energy"] = float(energy)
    if results:
        copy.calc = SinglePointCalculator(copy, **results)
    return copy


class SearchStorage:
    """Rows of one search run (``search`` and ``seed``) in an ase.db database."""

    def __init__(self, db, search: str, seed: int):
        from ase_mlgen.utils.database import connect_db

        self.connection = connect_db(db)
        #: file name of a file database (``None`` for URLs and open connections)
        self.path = None
        if isinstance(db, (str, os.PathLike)) and "://" not in os.fspath(db):
            self.path = os.fspath(db)
        self.search = str(search)
        self.seed = int(seed)

    @property
    def selection(self) -> dict:
        return {"search": self.search, "seed": self.seed}

    def write_candidate(self, atoms: Atoms, step: int) -> int:
        """Store a structure as proposed (before relaxation); return its row id."""
        kv = info_key_values(atoms.info)
        kv.update(self.selection, step=int(step), relaxed=0, duplicate_of=-1,
                  generator=str(atoms.info.get("generator", self.search)))
        return self.connection.write(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell,
                                           pbc=atoms.pbc), key_value_pairs=kv)

    def candidate_id(self, step: int) -> int | None:
        """Row id of the candidate of ``step`` if one was stored (restart after interruption)."""
        rows = list(self.connection.select(relaxed=0, step=int(step), **self.selection))
        return rows[-1].id if rows else None

    def write_minimum(self, atoms: Atoms, energy: float, step: int, generator: str,
                      duplicate_of: int, minimum: int, data: dict | None = None,
                      **costs) -> int:
        """Store a local minimum with its energy; ``duplicate_of`` is a row id or 0 (new);
        ``data``: the method's restart state (row data)."""
        kv = info_key_values(atoms.info)
        kv.update(self.selection, step=int(step), relaxed=1, duplicate_of=int(duplicate_of),
                  minimum=int(minimum), generator=str(generator))
        for key, value in costs.items():
            kv[key] = value.item() if isinstance(value, np.generic) else value
        return self.connection.write(frozen(atoms, energy), key_value_pairs=kv, data=data or {})

    def minima_rows(self) -> list:
        """Relaxed rows of this run, in step order."""
        return sorted(self.connection.select(relaxed=1, **self.selection),
                      key=lambda row: (row.step, row.id))

    def completed_steps(self) -> int:
        """Number of completed relaxations: 1 + the largest stored ``step`` (0 when none)."""
        rows = self.minima_rows()
        return (max(row.step for row in rows) + 1) if rows else 0
