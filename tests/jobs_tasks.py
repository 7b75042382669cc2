"""A tiny task for the job tests: counts epochs, checkpoints each, can fail or be interrupted."""
from __future__ import annotations

import time


def count_task(run_dir, config, resume):
    state = run_dir.load_checkpoint("last") if resume else None
    start = state["epoch"] if state else 0
    for epoch in range(start + 1, config["epochs"] + 1):
        if config.get("interrupt_at") == epoch:
            raise KeyboardInterrupt
        if config.get("fail_at") == epoch:
            raise ValueError("deliberate failure")
        time.sleep(config.get("sleep", 0.0))
        run_dir.log({"epoch": epoch, "max_epochs": config["epochs"], "train_loss": 1.0 / epoch},
                    plot_every=2)
        run_dir.save_checkpoint({"epoch": epoch}, best=True)
    return {"epochs": config["epochs"]}


def load_count(path):
    from ase_mlgen.jobs import RunDirectory

    return RunDirectory(path).load_checkpoint("best")["epoch"]
