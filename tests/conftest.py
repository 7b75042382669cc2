"""Shared fixtures: paths of the reference data in ../shared/data (skipped when absent)."""
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
