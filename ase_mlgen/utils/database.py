"""Opening ASE databases the same way everywhere."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def connect_db(db: Any, **kwargs):
    """An ``ase.db`` connection from a path, a URL (``postgresql://…``) or an open connection.

    For a file path the parent folder is created first, so ``--db runs/new/out.db`` works on a
    fresh checkout; URLs and connection objects are passed through unchanged.
    """
    from ase.db import connect

    if isinstance(db, (str, os.PathLike)):
        text = os.fspath(db)
        if "://" not in text:
            Path(text).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return connect(text, **kwargs)
    return db
