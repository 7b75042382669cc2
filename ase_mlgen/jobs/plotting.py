"""Learning-curve plots of a run's log."""
from __future__ import annotations

import os
from pathlib import Path


def plot_learning_curve(records: list[dict], path: str | Path, keys: tuple[str, ...] | None = None,
                        title: str = "") -> Path:
    """Plot every numeric ``*loss*`` (or the given ``keys``) against ``epoch`` into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if keys is None:
        keys = tuple(sorted({k for r in records for k, v in r.items()
                             if ("loss" in k or "reward" in k or "mae" in k)
                             and isinstance(v, (int, float))}))
    fig, ax = plt.subplots(figsize=(6, 4))
    log_scale = True
    for key in keys:
        pts = [(r.get("epoch", i), r[key]) for i, r in enumerate(records)
               if isinstance(r.get(key), (int, float))]
        if not pts:
            continue
        x, y = zip(*pts)
        if min(y) <= 0:
            log_scale = False
        ax.plot(x, y, label=key)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    # a temporary name of this process: two processes plotting one run must not share it
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
