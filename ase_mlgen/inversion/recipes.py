"""The ACSF that the reconstruction benchmark (``bench/inversion.py``) and the inversion examples
use: cutoff 6 Å, G1 + 16 G2 (η 0.5 and 2 Å⁻²; R_s 1–5 Å) + 6 G5 (η 0.005 Å⁻², ζ 1, 2, 4,
λ ±1) per element (pair) — 23 numbers per atom for one element, 46 in a pooled (max, min)
vector."""
from __future__ import annotations

from typing import Sequence

#: G2 ``[eta (Å⁻²), R_s (Å)]`` of the reconstruction benchmark
RECONSTRUCTION_G2 = [[eta, rs] for eta in (0.5, 2.0)
                     for rs in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)]
#: G5 ``[eta (Å⁻²), zeta, lambda]`` of the reconstruction benchmark
RECONSTRUCTION_G5 = [[0.005, z, lam] for z in (1, 2, 4) for lam in (-1, 1)]


def reconstruction_acsf(species: Sequence[str], r_cut: float = 6.0):
    """The benchmark's ACSF for ``species`` (element symbols) with cutoff ``r_cut`` (Å)."""
    from ase_mlgen.descriptors.acsf import ACSF

    return ACSF(list(species), r_cut=r_cut, g2_params=RECONSTRUCTION_G2,
                g5_params=RECONSTRUCTION_G5)
