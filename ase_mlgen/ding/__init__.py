"""DING: a conditional VAE that proposes chemical compositions with a target formation enthalpy,
energy per atom and volume per atom (Pathak et al.; github.com/devalab/DING).

- :mod:`ase_mlgen.ding.composition` — composition ↔ 979-long one-hot vector (89 elements × counts
  0–10).
- :mod:`ase_mlgen.ding.model` — :class:`DING` (CVAE or VAE generator, three property predictors,
  training as a resumable job, generation, latent walks, save/load).
- :mod:`ase_mlgen.ding.nets` — the torch modules.
"""
from __future__ import annotations

from ase_mlgen.ding.composition import (ELEMENTS, MAX_COUNT, VECTOR_SIZE, CompositionError,
                                        decode, encode, encode_many, parse)

__all__ = ["DING", "Candidate", "CompositionError", "ELEMENTS", "MAX_COUNT", "VECTOR_SIZE",
           "decode", "encode", "encode_many", "parse"]


def __getattr__(name: str):
    if name in ("DING", "Candidate", "Candidates"):
        from ase_mlgen.ding import model

        return getattr(model, name)
    raise AttributeError(f"module 'ase_mlgen.ding' has no attribute {name!r}")
