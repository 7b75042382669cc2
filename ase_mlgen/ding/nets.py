"""Torch modules of DING: the (conditional) variational auto-encoder and the property predictors.

Layer sizes are those of the DING paper and its notebooks (github.com/devalab/DING,
``CVAE/train_generator.ipynb``, ``Predictors/train_predictor.ipynb``): encoder 979 (+3 conditions)
→ 512 → 256 → 128 → 32 (mean and log-variance), decoder 32 (+3) → 128 → 256 → 512 → 979 with a
softmax over the 11 count levels of each of the 89 elements; predictors 979 → 1024 → 1024 → 1024
→ 512 → 128 → 64 → 32 → 1 with dropout 0.7, 0.7, 0.5 after the 2nd, 3rd and 4th layer. ReLU
throughout.

Every linear layer starts as the paper's Keras layers do (Glorot-uniform weights, zero biases).
PyTorch's own default (uniform ±1/√fan_in) shrinks the signal about √6-fold per ReLU layer, and
through the eight layers between the encoder input and the decoder output the gradient reaching
the encoder is then so small that the VAE learns only the marginal count distribution for many
epochs: with it, 20 epochs reconstruct 0.2 % of the validation compositions exactly, with
Glorot initialisation 49 % (``doc/ding.md``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ase_mlgen.ding.composition import N_ELEMENTS, N_LEVELS, VECTOR_SIZE


def glorot_init(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every :class:`~torch.nn.Linear` of
    ``module`` (Keras' default, which the DING paper's models use); returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _mlp(sizes: Sequence[int], dropout: Sequence[float] | None = None) -> nn.Sequential:
    """Linear+ReLU layers ``sizes[0] → sizes[1] → …`` (ReLU after every layer), with dropout
    ``dropout[i]`` after layer ``i`` where it is non-zero."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
        if dropout is not None and i < len(dropout) and dropout[i] > 0:
            layers.append(nn.Dropout(float(dropout[i])))
    return nn.Sequential(*layers)


#: where a CVAE's decoder receives the conditions: with the latent vector only (the paper's)
#: or at the input of every decoder layer
DECODER_CONDITIONING = ("input", "every_layer")


class CompositionVAE(nn.Module):
    """VAE over one-hot compositions; conditional (CVAE) when ``n_cond > 0``: the scaled
    properties are concatenated to the encoder input and to the latent vector
    (``decoder_conditioning="input"``, the paper's) or to the input of every decoder layer,
    output layer included (``"every_layer"``: the conditions reach each layer directly, so the
    decoder cannot lose them behind a latent vector that already describes the composition)."""

    def __init__(self, n_cond: int = 3, encoder_layers: Sequence[int] = (512, 256, 128),
                 latent_dim: int = 32, decoder_layers: Sequence[int] = (128, 256, 512),
                 dropout: float = 0.0, decoder_conditioning: str = "input"):
        super().__init__()
        if decoder_conditioning not in DECODER_CONDITIONING:
            raise ValueError(f"decoder_conditioning must be one of {DECODER_CONDITIONING}, "
                             f"not {decoder_conditioning!r}")
        self.n_cond = int(n_cond)
        self.latent_dim = int(latent_dim)
        self.every_layer = decoder_conditioning == "every_layer" and self.n_cond > 0
        enc = [VECTOR_SIZE + self.n_cond, *encoder_layers]
        self.encoder = _mlp(enc, [dropout] * (len(enc) - 1))
        self.mu = nn.Linear(enc[-1], latent_dim)
        self.log_var = nn.Linear(enc[-1], latent_dim)
        dec = [latent_dim + self.n_cond, *decoder_layers]
        if self.every_layer:
            self.dropout = float(dropout)
            self.decoder = nn.ModuleList(
                nn.Linear(dec[i] + (self.n_cond if i else 0), dec[i + 1])
                for i in range(len(dec) - 1))
            self.out = nn.Linear(dec[-1] + self.n_cond, VECTOR_SIZE)
        else:
            self.decoder = _mlp(dec, [dropout] * (len(dec) - 1))
            self.out = nn.Linear(dec[-1], VECTOR_SIZE)
        glorot_init(self)

    def _cat(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.n_cond == 0:
            return x
        if cond is None:
            raise ValueError("this is a conditional model: give the (scaled) properties")
        return torch.cat([x, cond], dim=1)

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self._cat(x, cond))
        return self.mu(h), self.log_var(h)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(N, 89, 11)``; a softmax over the last axis gives the count probabilities."""
        h = self._cat(z, cond)
        if not self.every_layer:
            return self.out(self.decoder(h)).view(-1, N_ELEMENTS, N_LEVELS)
        for i, layer in enumerate(self.decoder):
            h = torch.relu(layer(h if i == 0 else torch.cat([h, cond], dim=1)))
            if self.dropout > 0:
                h = nn.functional.dropout(h, self.dropout, self.training)
        return self.out(torch.cat([h, cond], dim=1)).view(-1, N_ELEMENTS, N_LEVELS)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        mu, log_var = self.encode(x, cond)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return self.decode(z, cond), mu, log_var


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
             recon_weight: float = 10.0, kl_weight: float = 0.05
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's loss: ``recon_weight`` × (cross-entropy summed over the 89 elements, averaged
    over the batch) + ``kl_weight`` × Σ(exp(log σ²) + μ² − 1 − log σ²) averaged over the batch.

    Returns ``(total, reconstruction, kl)`` (each already weighted)."""
    # cross-entropy of one-hot targets as logsumexp − (target logit): the same number as
    # nn.functional.cross_entropy, about 2.5 times faster on one CPU thread
    logits = logits.reshape(-1, N_ELEMENTS, N_LEVELS)
    ce = (torch.logsumexp(logits, dim=2).sum() - (x.reshape_as(logits) * logits).sum()) \
        / logits.shape[0]
    kl = (log_var.exp() + mu.pow(2) - 1.0 - log_var).sum(dim=1).mean()
    recon, kl = recon_weight * ce, kl_weight * kl
    return recon + kl, recon, kl


def substitute_elements(counts: torch.Tensor, probability: float, weights: torch.Tensor,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Element-substitution augmentation for the generator: with ``probability`` per row, one
    present element of the counts ``(N, 89)`` (drawn uniformly among the present ones) gives
    its count to an element drawn from ``weights`` ``(89,)`` (e.g. how often each element
    occurs in the training compositions) and becomes absent; a row whose drawn element is
    already present stays as it is. Returns a new tensor; the input is not changed.

    Trained with these compositions as encoder input and reconstruction target alike (the
    conditions stay the original composition's), the decoder must read which elements are
    present from the latent vector and cannot reproduce a training composition from its
    neighbourhood in latent and property space; this roughly halves the element swaps that
    make unseen compositions fail (``doc/ding.md``, issue #8)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"substitution probability must lie in [0, 1], got {probability}")
    counts = counts.clone()
    if probability == 0.0 or len(counts) == 0:
        return counts
    rows = torch.arange(len(counts), device=counts.device)
    chosen = torch.rand(len(counts), generator=generator) < probability
    # one present element per row, uniformly among the present ones
    old = (torch.rand(counts.shape, generator=generator) * (counts > 0).cpu()).argmax(1)
    new = torch.multinomial(weights.double().cpu(), len(counts), replacement=True,
                            generator=generator)
    chosen, old, new = chosen.to(counts.device), old.to(counts.device), new.to(counts.device)
    ok = chosen & (counts[rows, new] == 0) & (counts[rows, old] > 0)
    r, old, new = rows[ok], old[ok], new[ok]
    counts[r, new] = counts[r, old]
    counts[r, old] = 0
    return counts


PREDICTOR_INPUTS = ("onehot", "fractions")


def element_fractions(x: torch.Tensor) -> torch.Tensor:
    """Atomic fractions ``(N, 89)`` of one-hot composition vectors ``(N, 979)`` (each element's
    count divided by the number of atoms; all zero for an empty composition)."""
    levels = torch.arange(N_LEVELS, dtype=x.dtype, device=x.device)
    counts = x.reshape(-1, N_ELEMENTS, N_LEVELS) @ levels
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)


class PropertyPredictor(nn.Module):
    """MLP from a composition to one (scaled) property. It is always called with the one-hot
    composition vector ``(N, 979)``; ``inputs="onehot"`` (the paper's) feeds that vector to the
    network, ``inputs="fractions"`` first reduces it to the 89 atomic fractions (ElemNet's
    input, Jha et al. 2018): properties per atom are intensive, so ``Fe2O3`` and ``Fe4O6`` get
    the same input and the network need not learn each count level of an element apart."""

    def __init__(self, layers: Sequence[int] = (1024, 1024, 1024, 512, 128, 64, 32),
                 dropout: Sequence[float] = (0.0, 0.7, 0.7, 0.5, 0.0, 0.0, 0.0),
                 inputs: str = "onehot"):
        super().__init__()
        if inputs not in PREDICTOR_INPUTS:
            raise ValueError(f"predictor inputs must be one of {PREDICTOR_INPUTS}, not "
                             f"{inputs!r}")
        self.inputs = inputs
        self.body = _mlp([VECTOR_SIZE if inputs == "onehot" else N_ELEMENTS, *layers], dropout)
        self.head = nn.Linear(layers[-1], 1)
        glorot_init(self)

    @property
    def member_inputs(self) -> tuple[str, ...]:
        """The input kind of each member: this predictor alone (see :class:`PredictorEnsemble`)."""
        return (self.inputs,)

    def members_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, N)``: the output as a one-member ensemble."""
        return self(x)[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inputs == "fractions":
            x = element_fractions(x)
        return self.head(self.body(x)).squeeze(-1)


class PredictorEnsemble(nn.Module):
    """Several :class:`PropertyPredictor` members for one property (e.g. one per input kind);
    ``forward`` returns their mean, :meth:`members_forward` each member's output. Errors of
    predictors that see the composition differently are partly independent, so the mean is
    more accurate than either member and the members' spread is a rough uncertainty."""

    def __init__(self, members: Sequence[PropertyPredictor]):
        super().__init__()
        if not members:
            raise ValueError("a predictor ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(m.inputs for m in self.members)

    @property
    def member_inputs(self) -> tuple[str, ...]:
        """The input kind of each member."""
        return self.inputs

    def members_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n_members, N)`` outputs of the members."""
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_forward(x).mean(dim=0)
