"""Probe of LoGAN's optional short-contact prior on one SiO2 target → JSON.

Trains one LoGAN member (seed 0, the SiO2 recipe of ``bench/logan.py``: r_cut 5 Å, n_max 4, 12
neighbours, lr 1e-3, one rattled copy of each training polymorph of ≤ 48 atoms, 2,000 epochs,
snapshots every 250 from 500, wide crystal span) per ``--repulsion`` weight, generates 4,000
structures from its snapshots and reports, without any relaxation, the shortest interatomic
distance per structure and the Si–O coordination defects (Si four-fold, O two-fold, bonds
< 2.0 Å). ``--baseline RUN_DIR`` adds the same statistics for already trained members without
the prior (e.g. ``runs/bench_logan_sio2/sio2/mp-1188220``).

    python bench/logan_repulsion.py --target mp-1188220 --repulsion 10 \\
        --baseline runs/bench_logan_sio2/sio2/mp-1188220 --out bench/results/logan_repulsion.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data" / "logan" / "SiO2"
FLOOR = 1.445   # Å: 0.9 × the shortest training distance, the benchmark's filters' floor


def pool_statistics(pool) -> dict:
    """Shortest distance (Å) and coordination defects of generated crystals."""
    from logan import _coordination

    shortest, defects, ideal = [], [], 0
    for atoms in pool:
        d = atoms.get_all_distances(mic=True)
        np.fill_diagonal(d, np.inf)
        c = _coordination(atoms)
        shortest.append(float(d.min()))
        defects.append(c["defects"])
        ideal += bool(c["all_ideal"])
    s, dfc = np.array(shortest), np.array(defects)
    return {"n": len(pool), "shortest_median": float(np.median(s)),
            "shortest_p10_p90": np.percentile(s, [10, 90]).tolist(),
            f"fraction_at_least_{FLOOR}": float((s >= FLOOR).mean()),
            "all_ideal": int(ideal), "fewest_defects": int(dfc.min()),
            "defects_p10_p50": np.percentile(dfc, [10, 50]).tolist()}


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="mp-1188220")
    ap.add_argument("--repulsion", type=float, nargs="+", default=[10.0])
    ap.add_argument("--scale", type=float, default=0.9, help="repulsion_scale")
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--snapshot-start", type=int, default=500)
    ap.add_argument("--snapshot-every", type=int, default=250)
    ap.add_argument("--n", type=int, default=4000, help="structures generated per model")
    ap.add_argument("--baseline", default=None, help="run directory with member_*.pt")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "logan_repulsion.json"))
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        raise SystemExit(f"SiO2 data not found at {args.data}")
    torch.set_num_threads(1)
    from logan import _sio2_target, sio2_targets

    from ase_mlgen import LoGAN

    held, train_images = _sio2_target(sio2_targets(args.data)[args.target], 48)
    recipe = dict(epochs=args.epochs, lr_generator=1e-3, lr_critic=1e-3, r_cut=5.0, n_max=4,
                  max_neighbours=12, rattle=1, cell_margin=0.5,
                  snapshot_every=args.snapshot_every, snapshot_start=args.snapshot_start,
                  device="cpu")
    out = {"what": "LoGAN short-contact prior, one member per weight, no relaxation",
           "target": args.target, "recipe": recipe, "repulsion_scale": args.scale, "seed": 0,
           "generation_random_state": 1,
           "machine": {"hostname": platform.node(), "cpus": os.cpu_count(),
                       "load_average": os.getloadavg()}, "models": []}
    for w in args.repulsion:
        t0 = time.perf_counter()
        model = LoGAN(random_state=0, repulsion=w, repulsion_scale=args.scale, **recipe)
        model.fit(train_images, composition=held, cell=held.cell.array)
        row = {"repulsion": w, "fit_seconds": time.perf_counter() - t0,
               "final_log": model.history[-1],
               **pool_statistics(model.generate(args.n, random_state=1, snapshots=True))}
        out["models"].append(row)
        print(json.dumps(row), flush=True)
    if args.baseline:
        for path in sorted(Path(args.baseline).glob("member_*.pt")):
            model = LoGAN.load(path, device="cpu")
            row = {"baseline": path.name, "random_state": model.random_state, "repulsion": 0.0,
                   "final_log": model.history[-1],
                   **pool_statistics(model.generate(args.n, random_state=1, snapshots=True))}
            out["models"].append(row)
            print(json.dumps(row), flush=True)
    from ase_mlgen.utils.io import atomic_json_dump

    atomic_json_dump(out, args.out)


if __name__ == "__main__":
    main()
