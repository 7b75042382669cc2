"""``ase-mlgen train fingerprint DATA --out RUN``: train the fingerprint cVAE and surrogate.

DATA is the folder of the shared DFT Pt10 files (``pt10_acsf_300.csv`` and
``pt10_formation_energy_300.csv``) or an ``.npz`` with arrays ``x`` (fingerprints) and ``y``
(properties).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run_train(args: argparse.Namespace) -> int:
    from ase_mlgen.inversion.cvae import FingerprintGenerator

    x = y = None
    settings = {}
    if not args.resume:
        if not args.data:
            raise ValueError("training data is required (a Pt10 data folder or an .npz file)")
        path = Path(args.data)
        if path.suffix == ".npz":
            data = np.load(path)
            x, y = data["x"], data["y"]
        else:
            from ase_mlgen.data.pt10 import PT10_POOLING, load_dft_pt10, pt10_acsf

            x, y = load_dft_pt10(path)
            settings.update(descriptor=pt10_acsf().todict(), pooling=list(PT10_POOLING),
                            numbers=[78] * 10)
        settings.update(epochs=args.epochs, beta=args.beta, latent=args.latent, lr=args.lr,
                        batch_size=args.batch_size, device=args.device, seed=args.seed,
                        surrogate=args.surrogate, atom_features=args.atom_features)
    job = FingerprintGenerator.train(x, y, args.out, background=args.background,
                                     resume=args.resume, **settings)
    if args.background:
        print(json.dumps({"run": str(args.out), "pid": job.pid,
                          "status": f"ase-mlgen status {args.out}"}))
    else:
        print(json.dumps({"run": str(args.out), "state": "done",
                          **(job.run_dir.read_result() or {})}, indent=2))
    return 0


def register_train(subparsers) -> None:
    p = subparsers.add_parser("fingerprint", help="fingerprint cVAE + surrogate (inversion)",
                              description=__doc__)
    p.add_argument("data", nargs="?", help="Pt10 data folder or .npz with x, y")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--beta", type=float, default=0.75)
    p.add_argument("--latent", type=int, default=25)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--surrogate", choices=("mlp", "atomic"), default="mlp",
                   help="property model: 'mlp' on the whole vector (the paper's) or 'atomic' "
                        "(per-atom fingerprints flattened to N*F numbers: mean of one MLP over "
                        "the atoms; give --atom-features F)")
    p.add_argument("--atom-features", type=int, default=None,
                   help="features per atom of a per-atom fingerprint vector (--surrogate atomic)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=run_train)
