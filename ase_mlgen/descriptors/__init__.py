"""Descriptors of atomic environments, in torch: batched over atoms and structures, float64 by
default and differentiable with respect to positions (and the cell of periodic structures).

- :class:`ACSF` — Behler–Parrinello symmetry functions with DScribe's constructor and layout.
- :class:`SphericalBessel` — the element-resolved spherical-Bessel power spectrum of LoGAN.
- :class:`TAD` — the Topological Atomic Descriptor of DART (J/K/L shell counts).

Shared neighbour machinery lives in :mod:`ase_mlgen.descriptors.neighbours`.
"""
from ase_mlgen.descriptors.acsf import ACSF
from ase_mlgen.descriptors.base import LocalDescriptor, pool
from ase_mlgen.descriptors.bessel import SphericalBessel
from ase_mlgen.descriptors.tad import TAD

__all__ = ["ACSF", "SphericalBessel", "TAD", "LocalDescriptor", "pool"]
