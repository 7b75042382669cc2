"""Descriptors in a few seconds: ACSF (DScribe layout), its pooled fingerprint, gradients, and the
LoGAN spherical-Bessel descriptor.

    python examples/descriptors_acsf.py

The same on the command line::

    ase-mlgen describe structure.xyz --descriptor acsf --out fp.npy
    ase-mlgen describe structure.xyz --descriptor bessel --pooled --out fp.npy
"""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

from ase_mlgen.descriptors import ACSF, TAD, SphericalBessel


def main() -> None:
    # 1. ACSF of a molecule: same constructor and feature layout as dscribe.descriptors.ACSF
    acsf = ACSF(["H", "C", "O"], r_cut=6.0,
                g2_params=[[1.0, 0.0], [0.5, 1.5]], g4_params=[[0.05, 1.0, -1.0], [0.05, 1.0, 1.0]])
    ethanol = molecule("CH3CH2OH")
    features = acsf.compute(ethanol)
    print(f"ACSF of ethanol: {features.shape} (atoms x features), species order {acsf.species}")

    # 2. The Pt10 fingerprint of the ACSF-inversion paper: 190 values per atom, max then min pooled
    etas = [0.01, 0.06, 0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 3.5, 5.0]
    g2 = [[e, rs] for e in etas for rs in [0, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9, 10]]
    g5 = [[e, z, lam] for z in [1, 2, 4, 16, 64] for lam in [-1, 1]
          for e in [0.06, 0.1, 0.2, 0.4, 1.0]]
    pt_acsf = ACSF(["Pt"], 20.0, g2_params=g2, g5_params=g5, g1=False)
    rng = np.random.default_rng(0)
    clusters = [Atoms("Pt10", positions=rng.uniform(0, 5, (10, 3))) for _ in range(500)]
    fingerprints = pt_acsf.pooled_many(clusters)  # batched over all 500 clusters
    print(f"pooled Pt10 fingerprints: {fingerprints.shape}")

    # 3. Differentiable: gradient of a fingerprint distance with respect to the positions
    target = torch.tensor(fingerprints[0])
    pos = torch.tensor(clusters[1].positions, requires_grad=True)
    fp = pt_acsf.pooled_batch(pos[None], clusters[1].numbers)[0]
    loss = ((fp - target) ** 2).sum()
    loss.backward()
    print(f"fingerprint distance {loss.item():.3g}, |d loss / d positions| = "
          f"{float(pos.grad.norm()):.3g} per Å")

    # 4. LoGAN's spherical-Bessel descriptor and its per-species average (structure descriptor)
    sb = SphericalBessel(["H", "C", "O"], r_cut=4.0, n_max=4, max_neighbours=12)
    print(f"spherical Bessel: {sb.compute(ethanol).shape}, averaged {sb.averaged(ethanol).shape}")

    # 5. TAD of the DART paper (J, K, L shell counts)
    print("TAD of the first 3 atoms:\n", TAD().compute(ethanol)[:3])


if __name__ == "__main__":
    main()
