"""Running a task in this process or as a detached background process, and watching it."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

from typing import Any, Callable

from ase_mlgen.jobs.run_directory import RunDirectory


def resolve_callable(spec: str) -> Callable:
    """Import ``"package.module:function"``."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"task {spec!r} must be written as 'module:function'")
    return getattr(importlib.import_module(module_name), attr)


class Job:
    """A training run, in the foreground (finished) or in a background process.

    ``status()`` reads the run directory, ``wait()`` blocks until the run ends, ``result()`` returns
    the trained object (through the task's ``loader``) or raises ``RuntimeError`` with the error.
    """

    def __init__(self, run_dir: str | os.PathLike, process: subprocess.Popen | None = None):
        self.run_dir = RunDirectory(run_dir)
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else self.run_dir.pid()

    def status(self) -> dict:
        if self.process is not None:
            self.process.poll()  # reap a finished child so that its state reads correctly
        return self.run_dir.summary()

    def done(self) -> bool:
        return self.status()["state"] in ("done", "failed", "stopped")

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> dict:
        """Block until the run has finished (or ``timeout`` seconds passed); returns ``status()``."""
        start = time.monotonic()
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            return self.status()
        while not self.done():
            if timeout is not None and time.monotonic() - start > timeout:
                break
            time.sleep(poll)
        return self.status()

    def result(self, timeout: float | None = None) -> Any:
        status = self.wait(timeout)
        state = status["state"]
        if state == "failed":
            raise RuntimeError(f"training run {self.run_dir.path} failed:\n"
                               + self.run_dir.error_path.read_text())
        if state != "done":
            raise RuntimeError(f"training run {self.run_dir.path} is {state}; resume it with "
                               "resume=True (CLI: --resume)")
        config = self.run_dir.read_config()
        loader = config.get("loader")
        if loader:
            return resolve_callable(loader)(self.run_dir.path)
        return self.run_dir.read_result()

    def __repr__(self) -> str:
        return f"Job({str(self.run_dir.path)!r}, state={self.status()['state']!r})"


def run_task(run_dir: str | os.PathLike, resume: bool = False) -> dict:
    """Run the task of a run directory in this process; errors are written to ``error.txt``."""
    import traceback

    rd = RunDirectory(run_dir)
    config = rd.read_config()
    task = resolve_callable(config["task"])
    if rd.error_path.exists():
        rd.error_path.unlink()
    rd.pid_path.write_text(str(os.getpid()))
    try:
        result = task(rd, config, resume)
    except BaseException as exc:
        rd.error_path.write_text(traceback.format_exc())
        raise exc
    rd.plot()
    rd.write_result(result or {})
    return result


def submit(task: str, config: dict, run_dir: str | os.PathLike, *, background: bool = False,
           resume: bool = False, loader: str | None = None) -> Job:
    """Write ``config`` into ``run_dir`` and run ``task`` (``"module:function"``).

    ``background=True`` starts a detached process (it outlives the caller) and returns at once.
    ``resume=True`` continues from the run's last checkpoint; without it an existing run directory
    with a log is refused so that no run is overwritten by accident.
    """
    rd = RunDirectory(run_dir)
    if not resume and (rd.log_path.exists() or rd.result_path.exists()):
        raise ValueError(f"run directory {rd.path} already holds a run; pass resume=True "
                         "(CLI: --resume) to continue it or choose another directory")
    if resume and rd.state() == "running":
        raise ValueError(f"run {rd.path} is still running (pid {rd.pid()})")
    rd.path.mkdir(parents=True, exist_ok=True)
    for stale in (rd.result_path, rd.error_path):
        if stale.exists():
            stale.unlink()
    rd.write_config({**config, "task": task, "loader": loader})
    if not background:
        run_task(rd.path, resume=resume)
        return Job(rd.path)
    cmd = [sys.executable, "-m", "ase_mlgen.jobs.worker", str(rd.path)]
    if resume:
        cmd.append("--resume")
    out = open(rd.output_path, "ab")
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True,
                               cwd=os.getcwd())
    out.close()
    rd.pid_path.write_text(str(process.pid))
    return Job(rd.path, process)


def format_status(status: dict) -> str:
    """A few human-readable lines for ``ase-mlgen status``."""
    lines = [f"run      {status['run']}", f"task     {status.get('task')}",
             f"state    {status['state']}"]
    if "epoch" in status:
        epoch = status["epoch"]
        total = status.get("max_epochs")
        lines.append(f"epoch    {epoch}" + (f" / {total}" if total else ""))
    for key in sorted(status):
        if ("loss" in key or "mae" in key or "reward" in key) and isinstance(status[key], (int, float)):
            lines.append(f"{key:8s} {status[key]:.6g}")
    if "lr" in status:
        lines.append(f"lr       {status['lr']:.3g}")
    if "elapsed_s" in status:
        lines.append(f"elapsed  {status['elapsed_s']:.1f} s")
    if "eta_s" in status:
        lines.append(f"eta      {status['eta_s']:.0f} s (at most; early stopping may end sooner)")
    if status.get("error"):
        lines.append(f"error    {status['error'][0]}")
    return "\n".join(lines)


