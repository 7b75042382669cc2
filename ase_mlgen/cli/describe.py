"""``ase-mlgen describe FILE``: per-atom (or pooled) descriptors of every frame, saved as .npy."""
from __future__ import annotations

import argparse

import numpy as np

DEFAULT_R_CUT = {"acsf": 6.0, "bessel": 4.0}

# a typical small ACSF set (Behler-style): radial G2 and angular G4 functions
DEFAULT_G2 = [[eta, 0.0] for eta in (0.003214, 0.035711, 0.071421, 0.125, 0.214264, 0.357106,
                                      0.714213, 1.428426)]
DEFAULT_G4 = [[eta, zeta, lam] for eta in (0.000357, 0.028569, 0.089277)
              for zeta in (1.0, 2.0, 4.0) for lam in (-1.0, 1.0)]


def make_descriptor(name: str, species, r_cut: float | None, n_max: int = 4,
                    max_neighbours: int = 12):
    from ase_mlgen.descriptors import ACSF, TAD, SphericalBessel

    if name == "acsf":
        return ACSF(species, r_cut or DEFAULT_R_CUT["acsf"], g2_params=DEFAULT_G2,
                    g4_params=DEFAULT_G4)
    if name == "bessel":
        return SphericalBessel(species, r_cut or DEFAULT_R_CUT["bessel"], n_max, max_neighbours)
    if name == "tad":
        return TAD()
    raise ValueError(f"unknown descriptor {name!r}; use acsf, bessel or tad")


def run(args: argparse.Namespace) -> int:
    from ase.io import read

    images = read(args.structure, index=":")
    if not images:
        raise ValueError(f"{args.structure} holds no structures")
    species = args.species or sorted({s for a in images for s in a.get_chemical_symbols()})
    desc = make_descriptor(args.descriptor, species, args.r_cut, args.n_max, args.max_neighbours)
    if args.descriptor == "tad":
        feats = [desc.compute(a) for a in images]
    else:
        feats = desc.compute_many(images)
    if args.pooled:
        from ase_mlgen.descriptors import pool
        import torch

        out = np.stack([pool(torch.as_tensor(f), ("max", "min"), atom_dim=0).numpy()
                        for f in feats])
    elif len({f.shape for f in feats}) == 1:
        out = np.stack(feats)
        if len(images) == 1:
            out = out[0]
    else:
        out = np.concatenate(feats)  # different sizes: all atoms of all frames, in order
    np.save(args.out, out)
    print(f"{args.descriptor}: {len(images)} structure(s), {sum(len(a) for a in images)} atoms, "
          f"species {getattr(desc, 'species', species)} -> {args.out} {out.shape}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "describe", help="compute ACSF / spherical-Bessel / TAD descriptors of a structure file",
        description="Per-atom descriptors of every frame of an ASE-readable file, saved as .npy: "
                    "(n_atoms, F) for one frame, (n_frames, n_atoms, F) for frames of equal "
                    "size, otherwise all atoms concatenated (sum n_atoms, F); with --pooled one "
                    "[max over atoms, min over atoms] vector per frame.")
    p.add_argument("structure", help="structure file (any format ASE reads; all frames)")
    p.add_argument("--descriptor", choices=["acsf", "bessel", "tad"], default="acsf")
    p.add_argument("--species", nargs="+", help="elements (default: those in the file)")
    p.add_argument("--r-cut", type=float, help="cutoff in Å (acsf 6, bessel 4)")
    p.add_argument("--n-max", type=int, default=4, help="bessel: radial order (default 4)")
    p.add_argument("--max-neighbours", type=int, default=12,
                   help="bessel: nearest neighbours kept (default 12)")
    p.add_argument("--pooled", action="store_true",
                   help="one [max, min]-pooled vector per structure instead of per-atom rows")
    p.add_argument("--out", default="fp.npy", help="output .npy file (default fp.npy)")
    p.set_defaults(func=run)
