"""Global search: one loop for every generator (:class:`GeneratorSearch`), parallel relaxation
(:func:`relax_many`), ase.db storage, and the baselines (BasinHopping, MinimaHopping, genetic
algorithm, random) that ``ase-mlgen search`` compares at an equal budget."""
from __future__ import annotations

import importlib

_LAZY = {
    "GeneratorSearch": "ase_mlgen.search.generator_search",
    "relax_many": "ase_mlgen.search.relax",
    "SearchRecorder": "ase_mlgen.search.recorder",
    "SearchStorage": "ase_mlgen.search.storage",
    "run_search": "ase_mlgen.search.runner",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ase_mlgen.search' has no attribute {name!r}")
