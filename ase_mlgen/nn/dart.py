"""The DART network: per-atom energies from the Topological Atomic Descriptor.

Modee et al., Phys. Chem. Chem. Phys. 23, 21995 (2021). For every atom ``i`` with TAD
``t_i = (n_J, n_K, n_L)``:

* ``Y_f = MLP_f(t_i)`` — the atom's own embedding (3:128:128);
* ``ΣJ = Σ_{j in J(i)} MLP_J(t_j)``, and likewise ``ΣK``, ``ΣL`` — embeddings (3:128:128 each) of
  the neighbours in the J, K and L shells, summed;
* ``E_i = interaction(Y_f + ΣJ + ΣK + ΣL)`` — the interaction block (128:256:128:32:1);
* the cluster energy is ``Σ_i E_i``.

CELU activations, Kaiming-normal initialisation. The shell sums are batched matrix products of the
``(B, N, N)`` shell membership matrices (:func:`ase_mlgen.descriptors.tad.shell_masks`) with the
``(B, N, 128)`` neighbour embeddings — no Python loop over pairs.

Three additions that do not change the architecture: the TAD input, and each shell sum, are
divided by fixed per-shell scales (the training set's mean counts) so that the integer counts, up
to ~70, and the sums of up to ~70 embeddings enter their layers at order one; and the per-atom output is mapped to eV as ``E_i = e_ref + σ · out_i`` with the
per-atom energy reference ``e_ref`` (mean teacher energy per atom of the training set, eV/atom)
and spread ``σ`` (eV/atom) kept in the model (:meth:`DARTNet.fit_reference`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ase_mlgen.descriptors.tad import DEFAULT_SHELLS, TAD, shell_masks

#: the paper's layer sizes
EMBEDDING_DIMS = (3, 128, 128)
INTERACTION_DIMS = (128, 256, 128, 32, 1)

_ACTIVATIONS = {"celu": nn.CELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def mlp(dims: Sequence[int], activation: str = "celu", last_activation: bool = False
        ) -> nn.Sequential:
    """Linear layers of the given sizes with the activation between them (and after the last
    layer when ``last_activation``); Kaiming-normal weights, zero biases."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if k < len(dims) - 2 or last_activation:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class DARTNet(nn.Module):
    """DART as a torch module (see the module docstring).

    Parameters
    ----------
    shells, width:
        Of the TAD (:class:`~ase_mlgen.descriptors.tad.TAD`); ``width=0`` is the paper's integer
        TAD, ``width>0`` a smooth TAD that gives forces.
    embedding_dims:
        Layer sizes of MLP_f, MLP_J, MLP_K and MLP_L (first must be 3).
    interaction_dims:
        Layer sizes of the interaction block (first must equal the embedding size, last 1).
    activation:
        ``"celu"`` (paper), ``"relu"``, ``"silu"`` or ``"tanh"``.
    """

    kind = "dart"

    def __init__(self, shells: Sequence[float] = DEFAULT_SHELLS, width: float = 0.0,
                 embedding_dims: Sequence[int] = EMBEDDING_DIMS,
                 interaction_dims: Sequence[int] = INTERACTION_DIMS, activation: str = "celu"):
        super().__init__()
        embedding_dims, interaction_dims = tuple(embedding_dims), tuple(interaction_dims)
        if embedding_dims[0] != 3:
            raise ValueError("the embedding MLPs take the 3 TAD counts: embedding_dims[0] must be 3")
        if interaction_dims[0] != embedding_dims[-1] or interaction_dims[-1] != 1:
            raise ValueError(f"interaction_dims must start with the embedding size "
                             f"{embedding_dims[-1]} and end with 1; got {interaction_dims}")
        self.tad = TAD(shells, width)
        self.hyper = {"shells": list(self.tad.shells), "width": self.tad.width,
                      "embedding_dims": list(embedding_dims),
                      "interaction_dims": list(interaction_dims), "activation": activation}
        # MLP_f, MLP_J, MLP_K, MLP_L (activation after their last layer too: their outputs are
        # summed and fed to the interaction block)
        self.mlp_f = mlp(embedding_dims, activation, last_activation=True)
        self.mlp_j = mlp(embedding_dims, activation, last_activation=True)
        self.mlp_k = mlp(embedding_dims, activation, last_activation=True)
        self.mlp_l = mlp(embedding_dims, activation, last_activation=True)
        self.interaction = mlp(interaction_dims, activation)
        self.register_buffer("tad_scale", torch.ones(3))
        self.register_buffer("energy_reference", torch.zeros(()))   # eV/atom
        self.register_buffer("energy_scale", torch.ones(()))        # eV/atom

    # -- normalisation ------------------------------------------------------------------------
    @torch.no_grad()
    def fit_reference(self, energies: torch.Tensor, natoms: torch.Tensor,
                      tad_mean: torch.Tensor | None = None) -> None:
        """Set the per-atom energy reference and scale (eV/atom) from training energies (eV)."""
        per_atom = energies.double() / natoms.double()
        self.energy_reference.fill_(float(per_atom.mean()))
        spread = float(per_atom.std()) if len(per_atom) > 1 else 0.0
        self.energy_scale.fill_(spread if spread > 1e-6 else 1.0)
        if tad_mean is not None:
            self.tad_scale.copy_(torch.clamp(tad_mean.to(self.tad_scale), min=1.0))

    def prepare(self, features: dict, energies: torch.Tensor) -> None:
        """Fit the energy reference and the TAD input scales on training features (trainer hook)."""
        mask = features["mask"]
        tad = features["tad"].double()[mask]
        self.fit_reference(energies, mask.sum(-1), tad.mean(0))

    # -- features -----------------------------------------------------------------------------
    def featurize_images(self, images, chunk: int = 512) -> dict:
        """Features of many clusters, padded to the largest: ``tad (n, N, 3)``, the J/K/L shell
        matrices ``(n, N, N)`` (bool for the integer TAD) and ``mask (n, N)``."""
        from ase_mlgen.nn.training import pad_positions
        from ase_mlgen.utils.validate import check_atoms

        for k, atoms in enumerate(images):
            check_atoms(atoms, what=f"image {k}")
            if atoms.pbc.any():
                raise ValueError(f"image {k} is periodic; DART models clusters (pbc=False)")
        pos, _, mask = pad_positions(images)
        parts: dict[str, list] = {"tad": [], "J": [], "K": [], "L": []}
        with torch.no_grad():
            for start in range(0, len(pos), chunk):
                f = self.featurize(pos[start:start + chunk], mask[start:start + chunk])
                for key in parts:
                    v = f[key]
                    if key != "tad":
                        v = v.bool() if self.tad.width == 0 else v.float()
                    parts[key].append(v)
        out = {k: torch.cat(v) for k, v in parts.items()}
        out["mask"] = mask
        return out

    def featurize(self, positions: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """TAD and shell matrices of a padded batch ``positions (B, N, 3)`` (Å)."""
        j, k, l_ = shell_masks(positions, mask, self.tad.shells, self.tad.width)
        tad = torch.stack([j.sum(-1), k.sum(-1), l_.sum(-1)], dim=-1)
        return {"tad": tad, "J": j, "K": k, "L": l_}

    def _embed(self, tad: torch.Tensor):
        """``Y_f`` and the neighbour embeddings of the J, K, L shells, the latter already divided
        by their shell scales (see :meth:`forward_features`)."""
        x = tad / self.tad_scale
        s = self.tad_scale
        mlps = (self.mlp_f, self.mlp_j, self.mlp_k, self.mlp_l)
        scales = (None, s[0], s[1], s[2])
        if self.tad.width == 0 and not x.requires_grad:
            # integer TAD: many atoms share a TAD; run the four MLPs on the distinct rows only
            flat = tad.reshape(-1, 3).round().long()
            key = (flat[:, 0] * 4096 + flat[:, 1]) * 4096 + flat[:, 2]
            uniq, inverse = torch.unique(key, return_inverse=True)
            if len(uniq) < 0.5 * len(key):
                rows = torch.stack([uniq // (4096 * 4096), (uniq // 4096) % 4096, uniq % 4096],
                                   dim=-1).to(x.dtype) / self.tad_scale
                outs = []
                for m, sc in zip(mlps, scales):
                    y = m(rows)
                    if sc is not None:
                        y = y / sc
                    outs.append(y[inverse].reshape(*tad.shape[:-1], -1))
                return outs
        return [m(x) if sc is None else m(x) / sc for m, sc in zip(mlps, scales)]

    def _interaction_inference(self, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """The interaction block without autograd: chunks of atoms that stay in cache and
        in-place activations (the same numbers as ``self.interaction(y)``)."""
        layers = list(self.interaction)
        out = y.new_empty(len(y))
        for start in range(0, len(y), chunk):
            h = y[start:start + chunk]
            for layer in layers:
                if isinstance(layer, nn.Linear):
                    h = torch.nn.functional.linear(h, layer.weight, layer.bias)
                elif isinstance(layer, (nn.CELU, nn.ReLU, nn.SiLU)):
                    h = layer.__class__(inplace=True)(h) if not isinstance(layer, nn.CELU) \
                        else torch.nn.functional.celu_(h, layer.alpha)
                else:
                    h = layer(h)
            out[start:start + chunk] = h.squeeze(-1)
        return out

    def forward_features(self, features: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-atom energies ``(B, N)`` in eV (padded atoms 0) from :meth:`featurize` output."""
        tad = features["tad"]
        if mask is None:
            mask = features.get("mask")
        dtype = self.tad_scale.dtype
        tad = tad.to(dtype)
        y_f, y_j, y_k, y_l = self._embed(tad)
        # shell sums, each divided by the training set's mean count of its shell (a constant
        # factor, i.e. a reparametrisation of the interaction block's first layer, that keeps the
        # sums of up to ~70 embeddings at the scale of Y_f at initialisation; folded into the
        # embeddings by _embed)
        y = torch.baddbmm(y_f, features["J"].to(dtype), y_j)
        y = torch.baddbmm(y, features["K"].to(dtype), y_k)
        y = torch.baddbmm(y, features["L"].to(dtype), y_l)
        interaction = (self.interaction if torch.is_grad_enabled()
                       else self._interaction_inference)
        ref, scale = self.energy_reference.to(y.dtype), self.energy_scale.to(y.dtype)
        if mask is None:
            out = interaction(y.reshape(-1, y.shape[-1])).reshape(y.shape[:-1])
            return ref + scale * out
        # the interaction block only on real atoms (padding would cost as much as atoms)
        mask = mask.to(device=y.device, dtype=torch.bool)
        out = interaction(y[mask]).reshape(-1)
        e = y.new_zeros(mask.shape)
        e[mask] = ref + scale * out
        return e

    def forward(self, positions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-atom energies ``(B, N)`` in eV of a padded batch of clusters (Å)."""
        return self.forward_features(self.featurize(positions, mask), mask)
