"""Background training jobs shared by every trainable model (DART, MeGen, DING, fingerprint cVAE).

A run lives in a directory (:class:`RunDirectory`): ``config.json`` (task and settings),
``log.jsonl`` (one record per epoch), ``checkpoint_last.pt`` / ``checkpoint_best.pt`` (written
atomically), ``curve.png`` (loss curve), ``result.json`` when finished and ``error.txt`` when
failed. A task is any function ``task(run_dir, config, resume) -> dict`` named in the config as
``"module:function"``; :func:`submit` runs it in this process or in a detached background process
and returns a :class:`Job`.
"""
from ase_mlgen.jobs.job import Job, submit
from ase_mlgen.jobs.run_directory import RunDirectory

__all__ = ["Job", "RunDirectory", "submit"]
