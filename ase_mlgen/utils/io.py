"""Atomic file writes: a reader never sees a half-written checkpoint, log or JSON file."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path`` and rename it into place.

    The rename is atomic on POSIX file systems, so an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextmanager
def exclusive_lock(path: str | os.PathLike, what: str = "file") -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``path + ".writer.lock"`` for the ``with`` block.

    Raises ``RuntimeError`` at once (no waiting) when another process — or another open of the
    same lock in this one — holds it, so that two writers never fill one database together.
    (Not ``path + ".lock"``: ASE's database takes that name for its own per-write lock.)
    """
    import fcntl

    lock = Path(f"{os.fspath(path)}.writer.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another process is writing {what} {os.fspath(path)} (lock "
                               f"{lock} is held); wait for it to finish, or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield lock
    finally:
        handle.close()      # releases the lock


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_json_dump(obj: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically."""
    return atomic_write(path, lambda fh: json.dump(obj, fh, indent=indent, default=_json_default),
                        mode="w")


def append_jsonl(obj: Any, path: str | os.PathLike) -> None:
    """Append one JSON line (a log record) and flush it to disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(obj, default=_json_default) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; a truncated last line (interrupted write) is ignored."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def read_model_file(path: str | os.PathLike, what: str, weights_only: bool = False
                    ) -> tuple[Path, Any]:
    """Read a saved torch model file: ``(resolved path, loaded object)``.

    A run directory stands for its ``model.pt``. A missing file raises ``FileNotFoundError`` and a
    file torch cannot read raises ``ValueError``, both naming ``what`` (e.g. ``"DART"``); checking
    that the loaded object really is such a model is left to the caller.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{what} model file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # pickle errors, foreign formats, truncated files
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"{path} is not a {what} model file (torch could not read it: "
                         f"{type(exc).__name__}: {first})") from None
    return path, state
