"""One trainer for the per-atom energy models (DART and the HDNN baseline), and the job task.

Training follows the DART paper (Modee et al., PCCP 23, 21995, 2021): L1 loss on the cluster
energy (eV), Adam (lr 1e-3, betas 0.9/0.999), batch 32, learning rate × 0.1 when the validation
loss has not improved for 25 epochs (``ReduceLROnPlateau``, eps 1e-9), stop when the rate reaches
1e-8 or after ``max_epochs``.

A model for this trainer is a ``torch.nn.Module`` with

* ``kind`` (``"dart"``, ``"hdnn"``) and ``hyper`` (its constructor arguments, JSON-able);
* ``featurize_images(images) -> dict`` of tensors whose first dimension runs over the images and
  which holds ``"mask"`` (``(n, N)``, True for real atoms of the padded batch);
* ``prepare(features, energies)`` — fit normalisations (energy reference, input scales);
* ``forward_features(features) -> (B, N)`` per-atom energies in eV (0 on padding).

The features are computed once; epochs only index them.
"""
from __future__ import annotations

import importlib
import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

#: model kinds: name -> "module:class"
MODEL_KINDS = {"dart": "ase_mlgen.nn.dart:DARTNet", "hdnn": "ase_mlgen.nn.hdnn:HDNNNet"}

#: the paper's training settings
TRAINER_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "batch_size": 32, "lr_factor": 0.1,
                    "patience": 25, "lr_eps": 1e-9, "min_lr": 1e-8, "max_epochs": 2000,
                    "seed": 0}

FORMAT_VERSION = 1


def model_class(kind: str):
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODEL_KINDS)}")
    module, _, name = MODEL_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def build_model(kind: str, hyper: dict) -> torch.nn.Module:
    return model_class(kind)(**hyper)


def energies_of(images: Sequence[Atoms]) -> torch.Tensor:
    """Teacher energies (eV) of labelled images, float64; a clear error for unlabelled ones."""
    out = []
    for k, atoms in enumerate(images):
        if atoms.calc is None:
            raise ValueError(f"image {k} has no energy (no calculator results attached); "
                             "training needs labelled structures")
        out.append(float(atoms.get_potential_energy()))
    return torch.tensor(out, dtype=torch.float64)


def pad_positions(images: Sequence[Atoms], dtype=torch.float64):
    """``positions (n, N, 3)``, ``numbers (n, N)`` (0 on padding) and ``mask (n, N)``."""
    n_max = max(len(a) for a in images)
    pos = np.zeros((len(images), n_max, 3))
    num = np.zeros((len(images), n_max), dtype=np.int64)
    mask = np.zeros((len(images), n_max), dtype=bool)
    for k, atoms in enumerate(images):
        n = len(atoms)
        pos[k, :n] = atoms.positions
        num[k, :n] = atoms.numbers
        mask[k, :n] = True
    return (torch.as_tensor(pos, dtype=dtype), torch.as_tensor(num), torch.as_tensor(mask))


def index_features(features: dict, idx) -> dict:
    """The rows ``idx`` of padded features, cut to the largest structure among them."""
    sub = {k: v[idx] for k, v in features.items()}
    mask = sub["mask"]
    n = int(mask.sum(-1).max()) if len(mask) else 0
    if n < mask.shape[1]:
        width = mask.shape[1]
        for k, v in sub.items():
            sl = [slice(None)] + [slice(0, n) if d == width else slice(None)
                                  for d in v.shape[1:]]
            sub[k] = v[tuple(sl)]
    return sub


def size_bucketed_permutation(natoms: torch.Tensor, batch_size: int, generator) -> torch.Tensor:
    """A random order in which consecutive batches hold clusters of similar size (less padding):
    shuffle, sort within windows of 16 batches by size, then shuffle the batches."""
    n = len(natoms)
    perm = torch.randperm(n, generator=generator)
    window = 16 * batch_size
    parts = []
    for start in range(0, n, window):
        chunk = perm[start:start + window]
        parts.append(chunk[torch.argsort(natoms[chunk], stable=True)])
    perm = torch.cat(parts)
    batches = list(perm.split(batch_size))
    order = torch.randperm(len(batches), generator=generator)
    return torch.cat([batches[i] for i in order])


def features_to(features: dict, device) -> dict:
    return {k: v.to(device) for k, v in features.items()}


@torch.no_grad()
def predict_features(model, features: dict, batch_size: int = 1024) -> torch.Tensor:
    """Cluster energies (eV, float64) of featurized images."""
    model.eval()
    n = len(features["mask"])
    out = []
    for start in range(0, n, batch_size):
        sub = index_features(features, slice(start, start + batch_size))
        out.append(model.forward_features(sub).sum(-1).double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def model_file(model, species: Sequence[str], extra: dict | None = None) -> dict:
    """What a saved model file holds: format, version, species, hyper-parameters, weights."""
    return {"format": f"ase_mlgen.{model.kind}", "version": FORMAT_VERSION, "kind": model.kind,
            "species": list(species), "hyper": model.hyper,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "energy_reference_eV_per_atom": float(model.energy_reference),
            "info": dict(extra or {})}


def model_from_file(data, expect_kind: str | None = None, path: str = "file"):
    """Rebuild a model from :func:`model_file` output; refuses anything else clearly."""
    if isinstance(data, dict) and "model" in data and "optimizer" in data:
        data = data["model"]  # a training checkpoint
    fmt = data.get("format") if isinstance(data, dict) else None
    if not (isinstance(fmt, str) and fmt.startswith("ase_mlgen.")):
        raise ValueError(f"{path} is not an ase_mlgen model file (no 'format' entry)")
    kind = data.get("kind")
    if expect_kind is not None and kind != expect_kind:
        raise ValueError(f"{path} holds a {kind!r} model, not a {expect_kind!r} model")
    if data.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer ase_mlgen (format version "
                         f"{data['version']} > {FORMAT_VERSION}); upgrade ase_mlgen")
    model = build_model(kind, data["hyper"])
    model.load_state_dict(data["state_dict"])
    model.eval()
    return model, data


class EnergyTrainer:
    """Trains a per-atom energy model on cluster energies (see the module docstring).

    All settings are constructor arguments; defaults are the DART paper's. ``max_seconds`` (of
    training, wall clock) is an extra stop for time-boxed runs.
    """

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), batch_size: int = 32,
                 lr_factor: float = 0.1, patience: int = 25, lr_eps: float = 1e-9,
                 min_lr: float = 1e-8, max_epochs: int = 2000, seed: int = 0,
                 device: str | torch.device = "auto", dtype: torch.dtype = torch.float32,
                 max_seconds: float | None = None):
        from ase_mlgen.utils.device import resolve_device

        self.lr, self.betas, self.batch_size = float(lr), tuple(betas), int(batch_size)
        self.lr_factor, self.patience, self.lr_eps = float(lr_factor), int(patience), float(lr_eps)
        self.min_lr, self.max_epochs, self.seed = float(min_lr), int(max_epochs), int(seed)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.max_seconds = None if max_seconds is None else float(max_seconds)

    def fit(self, model, train: Sequence[Atoms], validation: Sequence[Atoms] | None = None,
            run_dir=None, resume: bool = False, species: Sequence[str] | None = None,
            progress: bool = False) -> dict:
        """Train ``model`` in place; returns a summary. With a ``run_dir``
        (:class:`~ase_mlgen.jobs.RunDirectory`) every epoch is logged and checkpointed, and
        ``resume=True`` continues from the last checkpoint."""
        torch.manual_seed(self.seed)
        species = list(species or sorted({s for a in train for s in a.get_chemical_symbols()}))
        t0 = time.perf_counter()
        model.to(dtype=self.dtype)
        e_train = energies_of(train)
        f_train = model.featurize_images(train)
        state = run_dir.load_checkpoint("last") if (resume and run_dir is not None) else None
        if state is None:
            model.prepare(f_train, e_train)
        model.to(self.device)
        f_train = features_to(f_train, self.device)
        e_train_d = e_train.to(self.device, self.dtype)
        if validation is not None and len(validation):
            e_val = energies_of(validation)
            f_val = features_to(model.featurize_images(validation), self.device)
        else:
            e_val, f_val = None, None
        featurize_s = time.perf_counter() - t0

        opt = torch.optim.Adam(model.parameters(), lr=self.lr, betas=self.betas)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=self.lr_factor, patience=self.patience, eps=self.lr_eps)
        gen = torch.Generator().manual_seed(self.seed)
        epoch, best, best_state = 0, math.inf, None
        if state is not None:
            model.load_state_dict(state["model"]["state_dict"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            epoch, best = state["epoch"], state["best"]
            best_ckpt = run_dir.load_checkpoint("best")
            best_state = best_ckpt["model"]["state_dict"] if best_ckpt else None
        n = len(train)
        natoms = torch.tensor([len(a) for a in train])
        stop = "max_epochs"
        train_s = 0.0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.max_epochs, initial=epoch, desc=f"train {model.kind}",
                       unit="epoch")
        while epoch < self.max_epochs:
            if opt.param_groups[0]["lr"] <= self.min_lr * (1 + 1e-6):
                stop = "min_lr"
                break
            if self.max_seconds is not None and train_s >= self.max_seconds:
                stop = "max_seconds"
                break
            te = time.perf_counter()
            epoch += 1
            model.train()
            perm = size_bucketed_permutation(natoms, self.batch_size, gen).to(self.device)
            total = 0.0
            for start in range(0, n, self.batch_size):
                idx = perm[start:start + self.batch_size]
                pred = model.forward_features(index_features(f_train, idx)).sum(-1)
                loss = torch.nn.functional.l1_loss(pred, e_train_d[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            train_loss = total / n
            record = {"epoch": epoch, "max_epochs": self.max_epochs, "train_loss": train_loss,
                      "lr": opt.param_groups[0]["lr"]}
            if f_val is not None:
                pred = predict_features(model, f_val).cpu()
                err = pred - e_val
                val_loss = float(err.abs().mean())
                record.update({"val_loss": val_loss,
                               "val_rmse": float(err.pow(2).mean().sqrt())})
            else:
                val_loss = train_loss
            sched.step(val_loss)
            improved = val_loss < best
            if improved:
                best = val_loss
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            epoch_s = time.perf_counter() - te
            train_s += epoch_s
            record["epoch_seconds"] = epoch_s
            if run_dir is not None:
                ckpt = {"epoch": epoch, "best": best, "model": model_file(model, species),
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "generator": gen.get_state()}
                run_dir.save_checkpoint(ckpt, best=improved)
                run_dir.log(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
        if bar is not None:
            bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return {"epochs": epoch, "stop_reason": stop, "best_val_loss": best,
                "final_lr": opt.param_groups[0]["lr"],
                "featurize_seconds": featurize_s, "train_seconds": train_s,
                "device": str(self.device), "n_train": n,
                "n_validation": 0 if validation is None else len(validation)}


# -- data for the job task -------------------------------------------------------------------------
def read_images(path: str, select: str | None = None) -> list[Atoms]:
    """Labelled structures from an ase.db (``select`` applies) or any file ase.io reads."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"training data {p} not found")
    if p.suffix == ".db":
        from ase_mlgen.data.clusters import load_dataset

        return load_dataset(p, select)
    from ase.io import read

    if select:
        raise ValueError("--select works on ase.db files only")
    return list(read(str(p), ":"))


def split_indices(n: int, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Random split of ``range(n)`` into parts of the given fractions (the last takes the rest)."""
    perm = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for f in fractions[:-1]:
        k = int(round(f * n))
        out.append(np.sort(perm[start:start + k]))
        start += k
    out.append(np.sort(perm[start:]))
    return out


def train_task(run_dir, config: dict, resume: bool) -> dict:
    """Job task (``ase_mlgen.nn.training:train_task``): train the model named in the config.

    Config keys: ``kind`` (``dart``/``hdnn``), ``hyper`` (model arguments), ``trainer``
    (:class:`EnergyTrainer` arguments), ``data`` (path), ``select``, ``validation`` (path, or
    none to split ``validation_fraction`` of the data off with ``split_seed``).
    """
    images = read_images(config["data"], config.get("select"))
    if not images:
        raise ValueError(f"no labelled structures in {config['data']} "
                         f"(select={config.get('select')!r})")
    if config.get("validation"):
        train, val = images, read_images(config["validation"])
    else:
        frac = float(config.get("validation_fraction", 0.1))
        if frac > 0 and len(images) >= 2:
            iv, it = split_indices(len(images), [frac, 1 - frac], config.get("split_seed", 0))
            train, val = [images[i] for i in it], [images[i] for i in iv]
        else:
            train, val = images, None
    species = sorted({s for a in train for s in a.get_chemical_symbols()})
    hyper = dict(config.get("hyper", {}))
    if config["kind"] == "hdnn":
        hyper.setdefault("species", species)
    model = build_model(config["kind"], hyper)
    trainer_args = dict(config.get("trainer", {}))
    trainer_args["dtype"] = getattr(torch, trainer_args.get("dtype", "float32"))
    trainer = EnergyTrainer(**trainer_args)
    summary = trainer.fit(model, train, val, run_dir=run_dir, resume=resume, species=species)
    from ase_mlgen.utils.io import atomic_torch_save

    data = model_file(model.cpu(), species, {"train_summary": summary,
                                            "data": str(config["data"]),
                                            "select": config.get("select")})
    atomic_torch_save(data, Path(run_dir.path) / "model.pt")
    summary["model"] = str(Path(run_dir.path) / "model.pt")
    return json.loads(json.dumps(summary, default=str))
