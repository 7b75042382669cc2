"""Fingerprint inversion (Fung et al., Mach. Learn.: Sci. Technol. 3, 045018, 2022): positions from
ACSF (or any differentiable descriptor) fingerprints by gradient descent, a conditional VAE that
proposes fingerprints at a target property, and a generator chaining both."""
from __future__ import annotations

import importlib

_LAZY = {
    "ACSFInverter": "ase_mlgen.inversion.inverter",
    "pool_fingerprint": "ase_mlgen.inversion.inverter",
    "CVAE": "ase_mlgen.inversion.cvae",
    "FingerprintGenerator": "ase_mlgen.inversion.cvae",
    "SurrogateModel": "ase_mlgen.inversion.surrogate",
    "AtomicSurrogate": "ase_mlgen.inversion.surrogate",
    "InversionGenerator": "ase_mlgen.inversion.generator",
    "make_search_generator": "ase_mlgen.inversion.generator",
    "canonical_order": "ase_mlgen.inversion.per_atom",
    "per_atom_vectors": "ase_mlgen.inversion.per_atom",
    "cluster_rmsd": "ase_mlgen.inversion.compare",
    "periodic_rmsd": "ase_mlgen.inversion.compare",
    "structure_rmsd": "ase_mlgen.inversion.compare",
    "reconstruction_acsf": "ase_mlgen.inversion.recipes",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ase_mlgen.inversion' has no attribute {name!r}")
