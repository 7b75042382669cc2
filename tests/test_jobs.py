"""The background-job machinery: foreground and background runs, resume, failures, status."""
from __future__ import annotations

import json

import pytest

from ase_mlgen.jobs import RunDirectory, submit
from ase_mlgen.cli.main import main

TASK = "tests.jobs_tasks:count_task"
LOADER = "tests.jobs_tasks:load_count"


def test_foreground_run_logs_checkpoints_and_result(tmp_path):
    job = submit(TASK, {"epochs": 5}, tmp_path / "run", loader=LOADER)
    rd = RunDirectory(tmp_path / "run")
    assert rd.state() == "done"
    records = rd.records()
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert rd.last_checkpoint.exists() and rd.best_checkpoint.exists()
    assert rd.curve_path.exists()
    assert job.result() == 5


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    submit(TASK, {"epochs": 2}, tmp_path / "run")
    with pytest.raises(ValueError, match="resume"):
        submit(TASK, {"epochs": 2}, tmp_path / "run")


def test_resume_continues_after_interruption(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        submit(TASK, {"epochs": 6, "interrupt_at": 3}, run)
    rd = RunDirectory(run)
    assert rd.state() == "failed"
    assert [r["epoch"] for r in rd.records()] == [1, 2]
    job = submit(TASK, {"epochs": 6}, run, resume=True, loader=LOADER)
    assert [r["epoch"] for r in rd.records()] == [1, 2, 3, 4, 5, 6]
    assert job.result() == 6


def test_background_run_and_status_cli(tmp_path, capsys):
    job = submit(TASK, {"epochs": 3, "sleep": 0.2}, tmp_path / "bg", background=True,
                 loader=LOADER)
    assert job.pid is not None
    status = job.wait(timeout=60)
    assert status["state"] == "done", status
    assert job.result() == 3
    assert main(["status", str(tmp_path / "bg"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["epoch"] == 3 and shown["state"] == "done"


def test_failed_background_run_reports_error(tmp_path):
    job = submit(TASK, {"epochs": 3, "fail_at": 2}, tmp_path / "bad", background=True)
    job.wait(timeout=60)
    assert job.status()["state"] == "failed"
    with pytest.raises(RuntimeError, match="deliberate failure"):
        job.result()


def test_status_of_a_non_run_is_a_clear_error(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_learning_curve_plot_uses_a_private_temporary_file(tmp_path):
    from ase_mlgen.jobs.plotting import plot_learning_curve

    records = [{"epoch": i, "train_loss": 1.0 / i} for i in range(1, 6)]
    out = plot_learning_curve(records, tmp_path / "curve.png")
    plot_learning_curve(records, tmp_path / "curve.png")   # again over the finished file
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == ["curve.png"]
