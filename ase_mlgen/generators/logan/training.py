"""Training LoGAN models through :mod:`ase_mlgen.jobs` (foreground or background, resumable),
and ensembles of models with different seeds and hyper-parameters.

A run directory holds ``training.extxyz`` (the training structures), ``config.json``, the
top-level ``log.jsonl`` (one record per finished member, epochs counted over all members),
``member_00/`` … (each member's own ``log.jsonl`` and resumable ``checkpoint_last.pt``),
``member_00.pt`` … (the trained models) and ``ensemble.json``. :func:`load_run` returns a
:class:`~ase_mlgen.generators.logan.LoGAN` for a one-member run and a :class:`LoGANEnsemble`
otherwise.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from ase_mlgen.generators.logan.model import DEFAULTS, LoGAN

#: what the members of a default ensemble vary (the paper's grid: r_cut 5/6 Å × n_max 3/4,
#: several seeds each); member i takes variation i % len(...) and seed random_state + i
DEFAULT_VARIATIONS: list[dict[str, Any]] = [
    {"r_cut": 5.0, "n_max": 4}, {"r_cut": 6.0, "n_max": 4},
    {"r_cut": 5.0, "n_max": 3}, {"r_cut": 6.0, "n_max": 3},
]

TASK = "ase_mlgen.generators.logan.training:train_task"
LOADER = "ase_mlgen.generators.logan.training:load_run"


class LoGANEnsemble:
    """Several LoGAN models for one target; one model collapses onto a few basins, the union of
    an ensemble covers more. ``generate(n)`` draws ``n`` structures split evenly over the
    members (``info["model"]`` says which)."""

    def __init__(self, models: Sequence[LoGAN]):
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"LoGANEnsemble({len(self.models)} models, composition={self.models[0].formula!r})"

    @property
    def formula(self) -> str | None:
        return self.models[0].formula

    def generate(self, n: int, random_state: int | None = None,
                 snapshots: bool = False) -> list[Atoms]:
        """``n`` structures split evenly over the members (and, with ``snapshots=True``, over
        each member's training snapshots, see :meth:`LoGAN.generate`)."""
        out: list[Atoms] = []
        k = len(self.models)
        for i, model in enumerate(self.models):
            m = n // k + (1 if i < n % k else 0)
            seed = None if random_state is None else int(random_state) * 1000 + i
            for atoms in model.generate(m, random_state=seed, snapshots=snapshots):
                atoms.info["model"] = i
                out.append(atoms)
        return out

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = []
        for i, model in enumerate(self.models):
            name = f"member_{i:02d}.pt"
            model.save(directory / name)
            names.append(name)
        (directory / "ensemble.json").write_text(json.dumps({"members": names}, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> "LoGANEnsemble":
        directory = Path(directory)
        meta = directory / "ensemble.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{directory} holds no LoGAN ensemble (no ensemble.json)")
        names = json.loads(meta.read_text())["members"]
        return cls([LoGAN.load(directory / name, device=device) for name in names])


def load_model(path: str | Path, device: str | None = None) -> LoGAN | LoGANEnsemble:
    """A LoGAN model file, a run directory, or an ensemble directory."""
    path = Path(path)
    if path.is_dir():
        return load_run(path, device=device)
    return LoGAN.load(path, device=device)


def load_run(path: str | Path, device: str | None = None) -> LoGAN | LoGANEnsemble:
    """The trained model(s) of a finished run directory."""
    path = Path(path)
    if (path / "ensemble.json").is_file():
        ens = LoGANEnsemble.load(path, device=device)
        return ens.models[0] if len(ens) == 1 else ens
    raise FileNotFoundError(f"{path} holds no finished LoGAN run (no ensemble.json)")


def member_settings(n_models: int, random_state: int = 0,
                    variations: Sequence[dict] | None = None, **params) -> list[dict]:
    """Seed and parameters of each ensemble member: ``params`` overridden by the member's
    variation (``variations[i % len]``; default :data:`DEFAULT_VARIATIONS` for more than one
    member, none for one). Member ``i`` is seeded ``random_state + i`` unless its variation
    names its own ``random_state`` (e.g. to keep a member's seed when members are reordered)."""
    if n_models < 1:
        raise ValueError("n_models must be at least 1")
    if variations is None:
        variations = DEFAULT_VARIATIONS if n_models > 1 else [{}]
    variations = list(variations) or [{}]
    members = []
    for i in range(n_models):
        p = {**params, **variations[i % len(variations)]}
        seed = int(p.pop("random_state", int(random_state) + i))
        unknown = set(p) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown LoGAN parameter(s) {sorted(unknown)}")
        p = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}
        members.append({"random_state": seed, "params": p})
    return members


def read_variations(text: str) -> list[dict[str, Any]]:
    """Per-member settings for :func:`train` (``variations=``) from a JSON list of objects, or
    from ``@FILE`` holding one, e.g. ``'[{"random_state": 2, "epochs": 2000}, {}]'``; every key
    must be a LoGAN parameter or ``random_state``."""
    source = "JSON"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise FileNotFoundError(f"member settings file {path} not found")
        text, source = path.read_text(), str(path)
    try:
        variations = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"member settings ({source}) are not valid JSON: {err}") from None
    if not isinstance(variations, list) or not variations or not all(
            isinstance(v, dict) for v in variations):
        raise ValueError(f"member settings ({source}): expected a non-empty JSON list of "
                         "objects, e.g. '[{\"random_state\": 2}, {}]'")
    for v in variations:
        unknown = set(v) - set(DEFAULTS) - {"random_state"}
        if unknown:
            raise ValueError(f"member settings ({source}): unknown LoGAN parameter(s) "
                             f"{sorted(unknown)}")
    return variations


def _cell_json(cell):
    if cell is None:
        return None
    arr = np.asarray(cell.array if hasattr(cell, "array") else cell, dtype=float)
    return arr.tolist()


def _composition_json(composition):
    if composition is None or isinstance(composition, str):
        return composition
    if isinstance(composition, Atoms):
        return [int(z) for z in composition.numbers]
    if isinstance(composition, dict):
        return {str(k): int(v) for k, v in composition.items()}
    return [int(z) if not isinstance(z, str) else z for z in composition]


def train(images: Sequence[Atoms] | str | Path, composition=None, cell=None, *, run_dir,
          n_models: int = 1, random_state: int = 0, variations: Sequence[dict] | None = None,
          background: bool = False, resume: bool = False, threads: int | None = None,
          **params):
    """Train one LoGAN (``n_models=1``) or an ensemble as a job; returns a
    :class:`~ase_mlgen.jobs.Job` (``job.result()`` loads the model or ensemble).

    ``images``: training structures or the path of a file ASE can read. ``background=True``
    returns at once (a detached process); ``resume=True`` continues an interrupted run from its
    checkpoints (finished members are kept; a finished member trained for fewer than ``epochs``
    trains on from its last checkpoint, so a run can be extended). ``threads``: torch CPU
    threads of every member's ``fit`` (default: the model's ``threads`` parameter, 1).
    """
    from ase.io import read, write

    from ase_mlgen.jobs import submit

    run_dir = Path(run_dir)
    data = run_dir / "training.extxyz"
    if isinstance(images, (str, Path)):
        source = Path(images)
        if not source.is_file():
            raise FileNotFoundError(f"training data {source} not found")
        images = read(source, ":")
    images = list(images)
    if not images:
        raise ValueError("no training structures")
    if not (resume and data.exists()):
        run_dir.mkdir(parents=True, exist_ok=True)
        clean = []
        for a in images:
            b = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
            clean.append(b)
        write(data, clean, format="extxyz")
    if threads is not None:
        params.setdefault("threads", int(threads))
    config = {"data": str(data.resolve()), "composition": _composition_json(composition),
              "cell": _cell_json(cell),
              "members": member_settings(n_models, random_state, variations, **params),
              "threads": threads}
    return submit(TASK, config, run_dir, background=background, resume=resume, loader=LOADER)


def train_ensemble(images, composition=None, cell=None, *, n_models: int = 4, **kwargs):
    """:func:`train` with several members (default 4, varying ``r_cut`` and ``n_max``)."""
    return train(images, composition, cell, n_models=n_models, **kwargs)


def trained_epochs(model: LoGAN) -> int:
    """Generator steps a fitted model has been trained for (0 without a training history)."""
    return int(model.history[-1]["epoch"]) if model.history else 0


def train_member(run_path: Path, i: int, member: dict, images, composition, cell,
                 resume: bool) -> tuple["LoGAN", bool]:
    """Member ``i`` of the ensemble in ``run_path``: loaded from ``member_0I.pt`` when it is
    trained for its epochs (and ``resume``), else (further) trained from its checkpoints in
    ``member_0I/`` with its ``random_state`` and ``params`` and saved. Returns the model and
    whether it was trained now."""
    from ase_mlgen.jobs.run_directory import RunDirectory

    path = Path(run_path) / f"member_{i:02d}.pt"
    epochs = int(member["params"].get("epochs", DEFAULTS["epochs"]))
    model = LoGAN.load(path) if resume and path.is_file() else None
    if model is not None and trained_epochs(model) >= epochs:
        return model, False
    # new member, or a finished one asked for more epochs: (continue to) train from the
    # member's last checkpoint
    model = LoGAN(random_state=member["random_state"], **member["params"])
    model.fit(images, composition=composition, cell=cell,
              run_dir=RunDirectory(Path(run_path) / f"member_{i:02d}"), resume=resume)
    model.save(path)
    return model, True


def train_task(run_dir, config: dict, resume: bool) -> dict:
    """Job task: train every member of ``config["members"]`` in turn (see :func:`train`)."""
    import torch
    from ase.io import read

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    images = read(config["data"], ":")
    composition = config.get("composition")
    cell = config.get("cell")
    members = config["members"]
    total = sum(int(m["params"].get("epochs", DEFAULTS["epochs"])) for m in members)
    done_epochs = 0
    names, summary = [], []
    t0 = time.perf_counter()
    for i, member in enumerate(members):
        names.append(f"member_{i:02d}.pt")
        model, _ = train_member(run_dir.path, i, member, images, composition, cell, resume)
        done_epochs += int(member["params"].get("epochs", DEFAULTS["epochs"]))
        last = model.history[-1] if model.history else {}
        record = {"epoch": done_epochs, "max_epochs": total, "member": i,
                  "wasserstein": last.get("wasserstein"),
                  "generator_loss": last.get("generator_loss"),
                  "member_seconds": model.fit_seconds}
        run_dir.log({k: v for k, v in record.items() if v is not None}, plot_every=0)
        summary.append({"member": i, "random_state": member["random_state"],
                        "params": member["params"], "fit_seconds": model.fit_seconds,
                        "final": last})
    (run_dir.path / "ensemble.json").write_text(json.dumps({"members": names}, indent=2))
    return {"members": summary, "seconds": time.perf_counter() - t0,
            "composition": models_formula(run_dir.path / names[0])}


def models_formula(path: Path) -> str | None:
    try:
        return LoGAN.load(path, device="cpu").formula
    except Exception:  # noqa: BLE001 - only a summary field
        return None
