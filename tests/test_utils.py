"""Input checks, atomic writes and device choice."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms

from ase_mlgen.utils.device import resolve_device
from ase_mlgen.utils.io import append_jsonl, atomic_json_dump, atomic_write, read_jsonl
from ase_mlgen.utils.validate import check_atoms


def test_check_atoms_accepts_a_good_structure():
    check_atoms(Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]), species=["Cu"], min_distance=1.0)


@pytest.mark.parametrize("atoms, kwargs, message", [
    (Atoms(), {}, "empty"),
    (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), {}, "NaN"),
    (Atoms("H", cell=np.zeros((3, 3)), pbc=True), {}, "zero volume"),
    (Atoms("CuAu", positions=[[0, 0, 0], [2.5, 0, 0]]), {"species": ["Cu"]}, "Au"),
    (Atoms("Cu2", positions=[[0, 0, 0], [0.5, 0, 0]]), {"min_distance": 1.5}, "overlapping"),
])
def test_check_atoms_names_the_problem(atoms, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_atoms(atoms, **kwargs)


def test_check_atoms_rejects_non_atoms():
    with pytest.raises(TypeError):
        check_atoms([1, 2, 3])


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "state.json"
    atomic_json_dump({"ok": 1}, path)

    def broken(fh):
        fh.write(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_jsonl_ignores_a_truncated_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl({"epoch": 1, "loss": np.float32(0.5)}, path)
    with open(path, "a") as fh:
        fh.write('{"epoch": 2, "lo')
    assert read_jsonl(path) == [{"epoch": 1, "loss": 0.5}]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


def test_read_model_file_resolves_run_dirs_and_refuses_bad_files(tmp_path):
    from ase_mlgen.utils.io import atomic_torch_save, read_model_file

    with pytest.raises(FileNotFoundError, match="DART model file"):
        read_model_file(tmp_path / "missing.pt", "DART")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match="is not a DART model file"):
        read_model_file(tmp_path / "junk.pt", "DART")
    atomic_torch_save({"kind": "demo"}, tmp_path / "run" / "model.pt")
    path, state = read_model_file(tmp_path / "run", "demo")
    assert path == tmp_path / "run" / "model.pt" and state == {"kind": "demo"}


def test_connect_db_creates_the_folder_of_a_new_database(tmp_path):
    from ase import Atoms

    from ase_mlgen.utils.database import connect_db

    con = connect_db(tmp_path / "new" / "deeper" / "out.db")
    con.write(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]), relaxed=1)
    assert (tmp_path / "new" / "deeper" / "out.db").exists()
    assert connect_db(con) is con
