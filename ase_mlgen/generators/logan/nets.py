"""The two networks of LoGAN: a fully connected generator and a per-atom fully connected critic."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def mlp(n_in: int, hidden: Sequence[int], n_out: int, negative_slope: float) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with leaky ReLU between them, then a linear output."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.LeakyReLU(negative_slope)]
        width = int(h)
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """Latent noise ``(B, latent_dim)`` → fractional coordinates ``(B, n_atoms, 3)`` in
    ``span`` (default (0, 1)).

    All coordinates come out at once (one fully connected network, a sigmoid on the output
    stretched onto ``span``); the caller scales them into the cell (periodic) or the box
    (molecules and clusters). For a crystal a span wider than (0, 1), e.g. (-0.5, 1.5), lets the
    caller wrap the atoms into the cell: the faces of the cell are then ordinary places, not the
    sigmoid's saturated ends.
    """

    def __init__(self, n_atoms: int, latent_dim: int = 20,
                 hidden: Sequence[int] = (512, 256, 128, 64, 32), negative_slope: float = 0.1,
                 span: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.n_atoms = int(n_atoms)
        self.latent_dim = int(latent_dim)
        self.span = (float(span[0]), float(span[1]))
        if not self.span[1] > self.span[0]:
            raise ValueError(f"span must be (low, high) with low < high, got {span}")
        self.net = mlp(self.latent_dim, hidden, 3 * self.n_atoms, negative_slope)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        low, high = self.span
        frac = torch.sigmoid(self.net(z))
        if (low, high) != (0.0, 1.0):
            frac = low + (high - low) * frac
        return frac.view(z.shape[0], self.n_atoms, 3)


class Critic(nn.Module):
    """Scores one atom's environment: input = its descriptor plus the one-hot of its species.

    ``forward(x)`` maps ``(..., n_features)`` to ``(...)``; per-structure scores are the sum or the
    mean of the per-atom scores (``reduce``), taken by the caller.
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = (256, 128, 64, 32),
                 negative_slope: float = 0.01):
        super().__init__()
        self.n_features = int(n_features)
        self.net = mlp(self.n_features, hidden, 1, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def input_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``d forward(x) / d x`` for every row of ``x (..., n_features)``, differentiable with
        respect to the weights (what the gradient penalty needs) without double backward.

        For a leaky-ReLU network ``f = w_L σ(W_{L-1} … σ(W_1 x + b_1) …)`` the input gradient is
        ``W_1ᵀ D_1 W_2ᵀ D_2 … w_Lᵀ`` with ``D_k = diag(σ'(z_k))``; the slopes ``σ'`` are 1 or
        ``negative_slope`` and constant almost everywhere, so they come from a forward pass
        without a graph and the product is one chain of matrix products.
        """
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        activations = [m for m in self.net if isinstance(m, nn.LeakyReLU)]
        with torch.no_grad():
            h = x
            pre = []
            for lin, act in zip(linears[:-1], activations):
                z = lin(h)
                pre.append(z)
                h = torch.nn.functional.leaky_relu(z, act.negative_slope)
        v = linears[-1].weight.expand(*x.shape[:-1], linears[-1].weight.shape[-1])
        for lin, z, act in zip(reversed(linears[:-1]), reversed(pre), reversed(activations)):
            # v ⊙ σ'(z): leaky ReLU's own backward kernel (one fused op, differentiable in v;
            # building the slope mask with where() made the penalty step ~1.5× slower on the
            # CPU, bench/logan_speed.py)
            v = torch.ops.aten.leaky_relu_backward(v, z, act.negative_slope, False) @ lin.weight
        return v
