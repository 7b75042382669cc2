"""``ase-mlgen invert fp.npy --numbers 78x10 -o out.xyz``: structures from fingerprints.

Measured recipes (doc/inversion.md): per-atom fingerprints ``--weights auto --n-init 40
--n-hops 3 --steps 300`` (symmetric clusters and molecules are searched among symmetric
structures first, 32 starts by default); pooled (max, min) vectors of metal clusters ``--weights
auto --init compact --tol 1e-5 --n-init 20 --n-hops 5 --steps 600 --patience 200 --polish 1000
--search-dtype float32 --time-limit 9 --symmetric-starts 64`` (``--init box``, the default
``--tol`` and no symmetric starts for molecules; ``--weights none --tol 1e-5`` for crystals).
Pooled searches refine by default (``--refine 0.25``: a quarter of the starts of every hop
restart 0.1 Å around the best structure).

The fingerprint file is ``.npy`` (or ``.csv``/``.txt``): one per-atom fingerprint ``(N, F)``, one
pooled vector ``(F,)``, or several pooled vectors ``(n, F)`` (one structure each, with
``--pooling``). The descriptor is the Pt10 ACSF of the paper by default (``--descriptor pt10``) or
an ACSF given as JSON (``--descriptor acsf.json`` holding ``ACSF.todict()`` output).
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def _load_fp(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    return np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=1)


def _descriptor(spec: str):
    if spec == "pt10":
        from ase_mlgen.data.pt10 import pt10_acsf

        return pt10_acsf()
    from ase_mlgen.inversion.generator import descriptor_from_dict

    with open(spec) as fh:
        return descriptor_from_dict(json.load(fh))


def run(args: argparse.Namespace) -> int:
    import torch
    from ase.io import write

    from ase_mlgen.inversion.inverter import ACSFInverter, parse_numbers

    fp = _load_fp(args.fingerprint)
    numbers = parse_numbers(args.numbers)
    pooling = None if args.pooling in (None, "none") else tuple(args.pooling.split(","))
    if pooling is None and args.descriptor == "pt10" and fp.ndim == 1:
        pooling = ("max", "min")
    cell = None
    if args.cell:
        vals = [float(v) for v in args.cell.replace(",", " ").split()]
        if len(vals) == 3:
            cell = np.diag(vals)
        elif len(vals) == 9:
            cell = np.array(vals).reshape(3, 3)
        else:
            raise ValueError("--cell takes 3 (orthorhombic) or 9 numbers in Å")
    inv = ACSFInverter(_descriptor(args.descriptor), n_init=args.n_init, n_hops=args.n_hops,
                       steps=args.steps, lr=args.lr, pooling=pooling, device=args.device,
                       feature_weights=None if args.weights == "none" else args.weights,
                       init=args.init, patience=args.patience, polish=args.polish, tol=args.tol,
                       time_limit=args.time_limit,
                       search_dtype=getattr(torch, args.search_dtype),
                       symmetric_starts=args.symmetric_starts, refine=args.refine,
                       random_state=args.seed)
    fps = [fp] if (pooling is None or fp.ndim == 1) else list(fp)
    images = []
    for k, f in enumerate(fps):
        atoms = inv.reconstruct(f, numbers, cell=cell, pbc=cell is not None)
        atoms.info.pop("loss_history", None)
        images.append(atoms)
        print(f"structure {k}: loss {atoms.info['reconstruction_loss']:.4g} "
              f"(relative {atoms.info['relative_loss']:.3g}), {atoms.info['seconds']:.1f} s")
    write(args.output, images)
    print(f"wrote {len(images)} structure(s) to {args.output}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("invert", help="reconstruct structures from fingerprints",
                              description=__doc__)
    p.add_argument("fingerprint", help="fingerprint file (.npy, .csv, .txt)")
    p.add_argument("--numbers", required=True,
                   help="atoms: '78x10', 'Pt10', 'Na4Cl4' or '8,1,1'")
    p.add_argument("--cell", help="periodic cell in Å: 'a b c' or 9 numbers")
    p.add_argument("--descriptor", default="pt10", help="'pt10' or an ACSF JSON file")
    p.add_argument("--pooling", default=None,
                   help="'max,min' for pooled fingerprints, 'none' for per-atom (default: "
                        "pooled when the fingerprint is 1-D)")
    p.add_argument("-o", "--output", required=True, help="output structure file (e.g. out.xyz)")
    p.add_argument("--n-init", type=int, default=10)
    p.add_argument("--n-hops", type=int, default=5)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=40,
                   help="a stage ends when no start improved by 1 %% in this many steps")
    p.add_argument("--polish", type=int, default=300, help="L-BFGS iterations at the end")
    p.add_argument("--tol", type=float, default=3e-4,
                   help="the search ends once the loss is below tol x the mean fingerprint "
                        "magnitude")
    p.add_argument("--weights", choices=("none", "auto"), default="none",
                   help="feature weights: 'none' (plain L1, the paper's) or 'auto' (each "
                        "feature scaled by its mean magnitude)")
    p.add_argument("--init", choices=("auto", "grow", "compact", "box"), default="auto",
                   help="initial structures of clusters and molecules")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per structure")
    p.add_argument("--search-dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the Adam stages (the polish stays float64)")
    p.add_argument("--symmetric-starts", type=int, default=None,
                   help="random symmetric structures searched first (default: 32 for per-atom "
                        "fingerprints, where they run only when rows repeat; 0 for pooled)")
    p.add_argument("--refine", type=float, default=None,
                   help="share of starts that every hop restarts 0.1 Å around the best structure "
                        "(default: 0.25 for pooled fingerprints, 0 for per-atom)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
