"""The on-disk state of one training run; everything a resume or ``ase-mlgen status`` needs."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ase_mlgen.utils.io import append_jsonl, atomic_json_dump, atomic_torch_save, read_jsonl


class RunDirectory:
    """Paths and helpers of one run directory (created on first use)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- paths --------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoint_last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoint_best.pt"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    @property
    def error_path(self) -> Path:
        return self.path / "error.txt"

    @property
    def pid_path(self) -> Path:
        return self.path / "pid"

    @property
    def curve_path(self) -> Path:
        return self.path / "curve.png"

    @property
    def output_path(self) -> Path:
        return self.path / "output.log"

    # -- config -------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_json_dump(config, self.config_path)

    def read_config(self) -> dict:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        return json.loads(self.config_path.read_text())

    # -- log ----------------------------------------------------------------------------------
    def log(self, record: dict[str, Any], plot_every: int = 10) -> None:
        """Append one record (``epoch`` plus losses, …) with a time stamp; redraw the curve."""
        record = {"time": time.time(), **record}
        append_jsonl(record, self.log_path)
        epoch = record.get("epoch")
        if epoch is not None and plot_every and (epoch % plot_every == 0):
            self.plot()

    def records(self) -> list[dict]:
        return read_jsonl(self.log_path)

    def plot(self, keys: tuple[str, ...] | None = None) -> Path | None:
        """Draw the learning curve(s) of the log to ``curve.png``; returns the path."""
        from ase_mlgen.jobs.plotting import plot_learning_curve

        records = self.records()
        if not records:
            return None
        return plot_learning_curve(records, self.curve_path, keys=keys,
                                   title=self.path.name)

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, state: dict, best: bool = False) -> None:
        atomic_torch_save(state, self.last_checkpoint)
        if best:
            atomic_torch_save(state, self.best_checkpoint)

    def load_checkpoint(self, which: str = "last", map_location: Any = "cpu") -> dict | None:
        import torch

        path = self.best_checkpoint if which == "best" else self.last_checkpoint
        if not path.exists():
            return None
        return torch.load(path, map_location=map_location, weights_only=False)

    # -- outcome ------------------------------------------------------------------------------
    def write_result(self, result: dict) -> None:
        atomic_json_dump(result, self.result_path)

    def read_result(self) -> dict | None:
        if not self.result_path.exists():
            return None
        return json.loads(self.result_path.read_text())

    def pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def state(self) -> str:
        """``done``, ``failed``, ``running``, ``stopped`` (process gone, resumable) or ``new``."""
        if self.result_path.exists():
            return "done"
        if self.error_path.exists():
            return "failed"
        pid = self.pid()
        if pid is not None and _process_alive(pid):
            return "running"
        if self.log_path.exists() or self.last_checkpoint.exists():
            return "stopped"
        return "new"

    def summary(self) -> dict:
        """Epoch, latest losses, elapsed seconds and expected seconds left."""
        records = self.records()
        out: dict[str, Any] = {"run": str(self.path), "state": self.state()}
        if self.config_path.exists():
            out["task"] = self.read_config().get("task")
        if records:
            last = records[-1]
            out.update({k: v for k, v in last.items() if k != "time"})
            start = records[0]["time"] - records[0].get("epoch_seconds", 0.0)
            out["elapsed_s"] = last["time"] - start
            epoch, max_epochs = last.get("epoch"), last.get("max_epochs")
            if epoch and max_epochs and out["state"] in ("running", "stopped"):
                per_epoch = out["elapsed_s"] / max(epoch, 1)
                out["eta_s"] = per_epoch * max(max_epochs - epoch, 0)
        if self.error_path.exists():
            out["error"] = self.error_path.read_text().strip().splitlines()[-1:]
        return out


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a finished child that was not reaped is a zombie: count it as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True
