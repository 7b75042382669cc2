"""Structural baseline: a Behler–Parrinello high-dimensional neural network (HDNN).

Behler & Parrinello, Phys. Rev. Lett. 98, 146401 (2007): every atom's environment is described by
atom-centred symmetry functions (:class:`ase_mlgen.descriptors.ACSF`, G2 radial and G4 angular
terms within ``r_cut``); one MLP per element maps them to an atomic energy; the structure's energy
is the sum. It is the "BPSF-HDNN" comparison of the DART paper and trains with the same
:class:`~ase_mlgen.nn.training.EnergyTrainer` on the same split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ase_mlgen.nn.dart import mlp

#: default G2 (eta 1/Å², R_s Å) and G4 (eta 1/Å², zeta, lambda) parameters
DEFAULT_G2 = [[0.003, 0.0], [0.02, 0.0], [0.06, 0.0], [0.15, 0.0], [0.4, 0.0],
              [1.0, 2.6], [1.0, 3.2], [1.0, 3.8], [1.0, 4.4], [1.0, 5.0]]
DEFAULT_G4 = [[0.005, 1.0, 1.0], [0.005, 1.0, -1.0], [0.005, 4.0, 1.0], [0.005, 4.0, -1.0],
              [0.03, 1.0, 1.0], [0.03, 1.0, -1.0], [0.03, 4.0, 1.0], [0.03, 4.0, -1.0]]


class HDNNNet(nn.Module):
    """ACSF features → per-element MLP → atomic energies (eV).

    Parameters
    ----------
    species: elements of the training data.
    r_cut: ACSF cut-off (Å).
    g2_params, g4_params: ACSF parameters (DScribe layout).
    hidden: hidden layer sizes of each element's MLP.
    activation: ``"tanh"`` (Behler–Parrinello) or ``"celu"``, ….
    """

    kind = "hdnn"

    def __init__(self, species: Sequence[str] = ("Ga",), r_cut: float = 6.0,
                 g2_params=None, g4_params=None, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh"):
        super().__init__()
        from ase_mlgen.descriptors.acsf import ACSF

        self.species = [str(s) for s in species]
        g2 = DEFAULT_G2 if g2_params is None else g2_params
        g4 = DEFAULT_G4 if g4_params is None else g4_params
        self.acsf = ACSF(self.species, r_cut, g2_params=g2, g4_params=g4)
        n_features = self.acsf.get_number_of_features()
        self.hyper = {"species": self.species, "r_cut": float(r_cut),
                      "g2_params": [list(map(float, r)) for r in g2],
                      "g4_params": [list(map(float, r)) for r in g4],
                      "hidden": list(hidden), "activation": activation}
        self.nets = nn.ModuleList(mlp([n_features, *hidden, 1], activation)
                                  for _ in self.species)
        from ase.data import atomic_numbers

        self.register_buffer("species_numbers",
                             torch.tensor([atomic_numbers[s] for s in self.species]))
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("energy_reference", torch.zeros(()))   # eV/atom
        self.register_buffer("energy_scale", torch.ones(()))        # eV/atom

    def featurize_images(self, images) -> dict:
        """ACSF ``(n, N, F)`` padded, ``numbers (n, N)`` and ``mask (n, N)``."""
        feats = self.acsf.compute_many(list(images))
        n_max = max(len(a) for a in images)
        x = np.zeros((len(images), n_max, feats[0].shape[1]))
        numbers = np.zeros((len(images), n_max), dtype=np.int64)
        mask = np.zeros((len(images), n_max), dtype=bool)
        for k, (atoms, f) in enumerate(zip(images, feats)):
            x[k, :len(atoms)] = f
            numbers[k, :len(atoms)] = atoms.numbers
            mask[k, :len(atoms)] = True
        return {"acsf": torch.as_tensor(x, dtype=torch.float32),
                "numbers": torch.as_tensor(numbers), "mask": torch.as_tensor(mask)}

    @torch.no_grad()
    def prepare(self, features: dict, energies: torch.Tensor) -> None:
        mask = features["mask"]
        x = features["acsf"][mask].double()
        self.feature_mean.copy_(x.mean(0).to(self.feature_mean))
        self.feature_std.copy_(x.std(0).clamp(min=1e-6).to(self.feature_std))
        per_atom = energies.double() / mask.sum(-1).double()
        self.energy_reference.fill_(float(per_atom.mean()))
        spread = float(per_atom.std()) if len(per_atom) > 1 else 0.0
        self.energy_scale.fill_(spread if spread > 1e-6 else 1.0)

    def forward_features(self, features: dict) -> torch.Tensor:
        mask = features["mask"].to(torch.bool)
        dtype = self.feature_mean.dtype
        x = (features["acsf"][mask].to(dtype) - self.feature_mean) / self.feature_std
        numbers = features["numbers"][mask]
        out = x.new_zeros(len(x))
        for k, net in enumerate(self.nets):
            sel = numbers == self.species_numbers[k]
            if sel.any():
                out = out.index_put((sel.nonzero(as_tuple=True)[0],), net(x[sel]).squeeze(-1))
        e = x.new_zeros(mask.shape)
        e[mask] = self.energy_reference.to(dtype) + self.energy_scale.to(dtype) * out
        return e


class HDNN:
    """A trained HDNN with ``predict(images) -> ndarray`` (eV); ``HDNN.load(path)``."""

    def __init__(self, model: HDNNNet, species):
        self.model = model.eval()
        self.species = list(species)

    def predict(self, images) -> np.ndarray:
        from ase_mlgen.nn.training import predict_features

        images = list(images)
        feats = self.model.featurize_images(images)
        return predict_features(self.model, feats).numpy()

    @classmethod
    def load(cls, path) -> "HDNN":
        from ase_mlgen.nn.training import model_from_file

        from ase_mlgen.utils.io import read_model_file

        path, state = read_model_file(path, "HDNN")
        model, data = model_from_file(state, expect_kind="hdnn", path=str(path))
        return cls(model, data["species"])


def load_run(run_dir) -> HDNN:
    return HDNN.load(Path(run_dir) / "model.pt")
