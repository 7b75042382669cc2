"""Shared fixtures: paths of the reference data in ../shared/data (skipped when absent), and
the small ACSF of the fingerprint-inversion tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("ASE_MLGEN_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a file in the shared data folder; skips the test with a clear message if absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared reference data {path} is not present (set ASE_MLGEN_SHARED_DATA)")
    return path


@pytest.fixture
def ga_gap_path() -> Path:
    pytest.importorskip("quippy", reason="the GAP teacher needs quippy-ase (extra 'gap')")
    return shared_file("ga/Ga_gap.xml")


# a small ACSF for the inversion tests: G1 + 12 G2 + 4 G5 per element (pair)
SMALL_G2 = [[eta, rs] for eta in (0.5, 2.0) for rs in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)]
SMALL_G5 = [[0.005, z, lam] for z in (1, 4) for lam in (-1, 1)]


def small_acsf(species, r_cut: float = 5.0):
    """The inversion tests' small ACSF for ``species`` with cutoff ``r_cut`` (Å)."""
    from ase_mlgen.descriptors.acsf import ACSF

    return ACSF(species, r_cut=r_cut, g2_params=SMALL_G2, g5_params=SMALL_G5)
