"""ase_mlgen: machine-learned structure generation for ASE.

Public entry points (imported lazily so that ``import ase_mlgen`` stays fast):

- :class:`DART` — per-atom energy model on the Topological Atomic Descriptor, an ASE calculator.
- :class:`MeGen` — reinforcement-learning growth of metal clusters.
- :class:`LoGAN` — local-environment Wasserstein GAN for molecules and crystals.
- :class:`ACSFInverter` — positions from ACSF fingerprints by gradient descent.
- :class:`DING` — conditional VAE over chemical compositions.
"""
from __future__ import annotations

import importlib

from ase_mlgen._version import __version__

# public name -> module that defines it
_LAZY = {
    "DART": "ase_mlgen.calculators.dart",
    "MeGen": "ase_mlgen.generators.megen",
    "LoGAN": "ase_mlgen.generators.logan",
    "ACSFInverter": "ase_mlgen.inversion.inverter",
    "DING": "ase_mlgen.ding.model",
    "GeneratorSearch": "ase_mlgen.search.generator_search",
    "TAD": "ase_mlgen.descriptors",
    "ACSF": "ase_mlgen.descriptors",
    "SphericalBessel": "ase_mlgen.descriptors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ase_mlgen' has no attribute {name!r}")
