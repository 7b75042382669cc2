"""DART as an ASE calculator: ``atoms.calc = DART.load("model.pt")``.

Properties: ``energy`` (eV), ``energies`` (per atom, eV) and — only for a model trained on the
smooth TAD (``width > 0``) — ``forces`` (eV/Å, by autograd). The paper's integer TAD is a step
function of the positions, so its energy has no forces; asking for them raises
:class:`~ase.calculators.calculator.PropertyNotImplementedError` saying so.

Training (:meth:`DART.train`) runs through :mod:`ase_mlgen.jobs`, in the foreground or in a
detached background process; :meth:`DART.predict` scores many clusters in batches.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from ase_mlgen.nn.dart import DARTNet
from ase_mlgen.nn.dart_fast import flushed_denormals
from ase_mlgen.nn.training import (EnergyTrainer, model_file, model_from_file)
from ase_mlgen.utils.validate import check_atoms

NO_FORCES = ("this DART model was trained on the paper's integer TAD (width=0): its energy is a "
             "step function of the positions and has no forces. Train with a smooth TAD, e.g. "
             "DART.train(images, width=0.1), to get forces")


@contextmanager
def _one_thread(device: torch.device):
    """One structure is too small for intra-op threads: on a busy CPU their synchronisation
    costs more than the work (measured: ~1.5 ms per Ga50 call on one thread, up to 100× more with
    two threads on an oversubscribed machine)."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class DART(Calculator):
    """DART energy model (Modee et al., PCCP 23, 21995, 2021) behind the ASE calculator interface.

    Parameters
    ----------
    model:
        A trained :class:`~ase_mlgen.nn.dart.DARTNet`, or None for an untrained default network.
    species:
        Elements the model was trained on; structures with other elements are refused.
    device:
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    batch_size:
        Structures per batch in :meth:`predict`.
    fast:
        In :meth:`predict`, evaluate integer-TAD models through the exact tabulated path
        (:mod:`ase_mlgen.nn.dart_fast`: embeddings looked up per distinct TAD, the interaction
        block's first layer folded into them) for batches of at least ``chunk_atoms`` atoms;
        ``False`` runs the plain network. Single structures always take the plain network, and
        so does CUDA (the fast path is a CPU-cache scheme: on an H200 the plain network scored
        ~120,000 Ga50/s, the fast path ~13,000; ``bench/results/cuda_check.json``).
    chunk_atoms:
        Atoms per work block of the fast path (whole clusters; its arrays stay in cache).
    **hyper:
        :class:`~ase_mlgen.nn.dart.DARTNet` arguments when ``model`` is None (``shells``,
        ``width``, ``embedding_dims``, ``interaction_dims``, ``activation``).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces"]
    nolabel = True

    def __init__(self, model: DARTNet | None = None, species: Sequence[str] = ("Ga",),
                 device: str = "cpu", batch_size: int = 2048, info: dict | None = None,
                 fast: bool = True, chunk_atoms: int = 800, **hyper):
        from ase_mlgen.utils.device import resolve_device

        calc_kwargs = {k: hyper.pop(k) for k in ("label", "atoms", "directory") if k in hyper}
        super().__init__(**calc_kwargs)
        self.model = model if model is not None else DARTNet(**hyper)
        self.species = [str(s) for s in species]
        self.device = resolve_device(device)
        self.model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.fast = bool(fast)
        self.chunk_atoms = int(chunk_atoms)
        self.info = dict(info or {})

    # -- ASE interface ------------------------------------------------------------------------
    @property
    def smooth(self) -> bool:
        return self.model.tad.width > 0

    def _check(self, atoms: Atoms, what: str = "structure") -> None:
        check_atoms(atoms, species=self.species, what=what)
        if atoms.pbc.any():
            raise ValueError(f"{what} is periodic; DART models isolated clusters (pbc=False)")

    def _check_many(self, images: list) -> dict[int, list[int]]:
        """The checks of :meth:`_check` for many structures at once (the element test on all
        atomic numbers together); return the indices of the images grouped by atom count. The
        first bad image is then checked alone for an error that names its problem. Positions
        are checked for NaN by the caller, on the stacked batch."""
        allowed = np.array(sorted(atomic_numbers[s] for s in self.species))
        sizes: dict[int, list[int]] = {}
        numbers = []
        for k, atoms in enumerate(images):
            if not isinstance(atoms, Atoms):
                raise TypeError(f"image {k} must be an ase.Atoms object, got "
                                f"{type(atoms).__name__}")
            if len(atoms) == 0 or atoms.pbc.any():
                self._check(atoms, what=f"image {k}")
            numbers.append(atoms.numbers)
            sizes.setdefault(len(atoms), []).append(k)
        known = np.isin(np.concatenate(numbers), allowed)
        if not known.all():
            first = int(np.searchsorted(np.cumsum([len(z) for z in numbers]),
                                        int(np.argmin(known)), side="right"))
            self._check(images[first], what=f"image {first}")
        return sizes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if "forces" in properties and not self.smooth:
            raise PropertyNotImplementedError(NO_FORCES)
        super().calculate(atoms, properties, system_changes)
        self._check(self.atoms)
        dtype = self.model.tad_scale.dtype
        pos = torch.as_tensor(self.atoms.positions, dtype=dtype, device=self.device)[None]
        want_forces = "forces" in properties and self.smooth
        with _one_thread(self.device), flushed_denormals():
            if want_forces:
                pos.requires_grad_(True)
                energies = self.model(pos)[0]
                energy = energies.sum()
                (grad,) = torch.autograd.grad(energy, pos)
                self.results["forces"] = -grad[0].detach().cpu().double().numpy()
            else:
                # one structure: the plain network (the fast path's per-call tables cost more
                # than they save when nearly every atom has its own TAD; measured 1.5 vs 3 ms)
                with torch.inference_mode():
                    energies = self.model(pos)[0]
        energies = energies.detach().cpu().double().numpy()
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())

    def _forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Per-atom energies (eV) of an unpadded batch without autograd: the tabulated fast path
        (:class:`~ase_mlgen.nn.dart_fast.TabulatedDART`, the same numbers) for the integer TAD
        and batches of at least ``chunk_atoms`` atoms unless ``fast=False``, the plain network
        otherwise."""
        if self.fast and not self.smooth and positions.device.type == "cpu" and \
                positions.shape[0] * positions.shape[1] >= self.chunk_atoms:
            from ase_mlgen.nn.dart_fast import TabulatedDART

            return TabulatedDART(self.model, chunk_atoms=self.chunk_atoms)(positions)
        return self.model(positions)

    # -- batched scoring ----------------------------------------------------------------------
    def predict(self, images: Sequence[Atoms], per_atom: bool = False) -> np.ndarray:
        """Energies (eV) of many clusters, batched; ``per_atom=True`` divides by the atom count.

        Clusters of one size are batched together (no padding); any mix of sizes works.
        """
        images = list(images)
        if not images:
            return np.zeros(0)
        out = np.zeros(len(images))
        sizes = self._check_many(images)
        dtype = self.model.tad_scale.dtype
        with torch.inference_mode(), flushed_denormals():
            for n, idx in sizes.items():
                pos = torch.as_tensor(np.stack([images[k].positions for k in idx]), dtype=dtype)
                finite = torch.isfinite(pos).flatten(1).all(1)
                if not finite.all():
                    bad = idx[int(finite.to(torch.uint8).argmin())]     # the first non-finite one
                    self._check(images[bad], what=f"image {bad}")     # raises, naming the problem
                for start in range(0, len(idx), self.batch_size):
                    chunk = pos[start:start + self.batch_size].to(self.device)
                    e = self._forward(chunk).sum(-1).double().cpu().numpy()
                    out[idx[start:start + self.batch_size]] = e
        if per_atom:
            out /= np.array([len(a) for a in images])
        return out

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file atomically (species, shells, width, hyper-parameters, energy
        reference, weights, format version)."""
        from ase_mlgen.utils.io import atomic_torch_save

        data = model_file(self.model.cpu(), self.species, self.info)
        data["shells"] = list(self.model.tad.shells)
        data["width"] = self.model.tad.width
        self.model.to(self.device)
        return atomic_torch_save(data, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", **kwargs) -> "DART":
        """Read a file written by :meth:`save` (or a training run's ``model.pt`` or checkpoint)."""
        from ase_mlgen.utils.io import read_model_file

        path, data = read_model_file(path, "DART")
        model, data = model_from_file(data, expect_kind="dart", path=str(path))
        return cls(model, species=data["species"], device=device, info=data.get("info"),
                   **kwargs)

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, images: Sequence[Atoms], validation: Sequence[Atoms] | float | None = 0.1,
              device: str = "auto", background: bool = False, run_dir=None,
              resume: bool = False, **hyper):
        """Train DART on labelled clusters (teacher energies attached to ``images``).

        ``validation``: labelled clusters, or a fraction of ``images`` split off at random, or
        None. ``hyper``: :class:`~ase_mlgen.nn.dart.DARTNet` arguments (``shells``, ``width``,
        ``embedding_dims``, ``interaction_dims``, ``activation``) and
        :class:`~ase_mlgen.nn.training.EnergyTrainer` arguments (``lr``, ``betas``,
        ``batch_size``, ``lr_factor``, ``patience``, ``lr_eps``, ``min_lr``, ``max_epochs``,
        ``seed``). The run (log, checkpoints, loss curve, ``model.pt``) goes to ``run_dir``
        (a new temporary directory when None).

        Returns the trained :class:`DART`, or with ``background=True`` a
        :class:`~ase_mlgen.jobs.Job` at once (``job.status()``, ``job.wait()``, ``job.result()``).
        """
        import inspect
        import tempfile

        from ase.io import write

        from ase_mlgen.jobs import submit

        model_keys = set(inspect.signature(DARTNet).parameters)
        trainer_keys = set(inspect.signature(EnergyTrainer).parameters) - {"device", "dtype"}
        unknown = set(hyper) - model_keys - trainer_keys
        if unknown:
            raise TypeError(f"unknown DART.train argument(s) {sorted(unknown)}; model: "
                            f"{sorted(model_keys)}; trainer: {sorted(trainer_keys)}")
        images = list(images)
        if not images:
            raise ValueError("DART.train needs at least one labelled structure")
        if run_dir is None:
            run_dir = tempfile.mkdtemp(prefix="dart_run_")
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        data_path = run_dir / "train.traj"
        if not (resume and data_path.exists()):
            for k, atoms in enumerate(images):
                if atoms.calc is None:
                    raise ValueError(f"image {k} has no energy attached; label it with the "
                                     "teacher first")
            write(str(data_path), images)
        config = {"kind": "dart", "data": str(data_path),
                  "hyper": {k: v for k, v in hyper.items() if k in model_keys},
                  "trainer": {**{k: v for k, v in hyper.items() if k in trainer_keys},
                              "device": device}}
        if isinstance(validation, (int, float)) and not isinstance(validation, bool):
            config["validation_fraction"] = float(validation)
        elif validation is None:
            config["validation_fraction"] = 0.0
        else:
            val_path = run_dir / "validation.traj"
            if not (resume and val_path.exists()):
                write(str(val_path), list(validation))
            config["validation"] = str(val_path)
        job = submit("ase_mlgen.nn.training:train_task", config, run_dir, background=background,
                     resume=resume, loader="ase_mlgen.calculators.dart:load_run")
        return job if background else job.result()


def load_run(run_dir) -> DART:
    """Loader of a finished training run (used by :meth:`ase_mlgen.jobs.Job.result`): the
    calculator on the device the run trained on (``"auto"`` is resolved again here)."""
    from ase_mlgen.jobs import RunDirectory

    config = RunDirectory(run_dir).read_config()
    return DART.load(Path(run_dir) / "model.pt",
                     device=config.get("trainer", {}).get("device") or "auto")
