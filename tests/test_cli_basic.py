"""The ``ase-mlgen`` entry point: --version, info, and sub-command discovery."""
from __future__ import annotations

import json
import subprocess
import sys

from ase_mlgen import __version__
from ase_mlgen.cli.main import main


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "ase_mlgen", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"ase-mlgen {__version__}"


def test_info_reports_versions_cuda_and_extras(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ase_mlgen"] == __version__
    assert isinstance(info["cuda_available"], bool)
    assert set(info["extras"]) >= {"dft", "gap", "xtb", "test"}
    assert info["extras"]["test"] is True  # pytest and dscribe are needed to run these tests


def test_no_command_prints_help(capsys):
    assert main([]) == 1
    assert "usage" in capsys.readouterr().out
