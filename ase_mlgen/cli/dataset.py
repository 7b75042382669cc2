"""``ase-mlgen dataset clusters``: teacher-labelled cluster data in an ase.db (resumable)."""
from __future__ import annotations

import argparse
import json


def run_clusters(args: argparse.Namespace) -> int:
    from ase_mlgen.data.clusters import build_cluster_dataset

    summary = build_cluster_dataset(args.element, args.sizes, args.per_size, args.teacher,
                                    args.db, frames=args.frames, workers=args.workers,
                                    seed=args.seed, fmax=args.fmax, steps=args.steps,
                                    min_distance=args.min_distance, packing=args.packing,
                                    frame_window=None if args.frame_window == "all"
                                    else float(args.frame_window),
                                    progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="build training data with a teacher calculator")
    sub = p.add_subparsers(dest="dataset_kind", metavar="KIND", required=True)
    c = sub.add_parser(
        "clusters", help="random clusters relaxed by a teacher; path frames and minima in ase.db",
        description="Random compact clusters of one element, relaxed locally by the teacher "
                    "calculator; a few frames of every relaxation path and its final structure "
                    "are written to an ase.db (duplicate minima removed). Rerunning the same "
                    "command completes a partial database.")
    c.add_argument("--element", required=True, help="chemical symbol, e.g. Ga")
    c.add_argument("--sizes", required=True, help="cluster sizes, e.g. 31-70 or 13,20,31-35")
    c.add_argument("--per-size", type=int, default=20, help="relaxations per size (default 20)")
    c.add_argument("--teacher", required=True,
                   help="teacher calculator: emt, lj, gap:PATH, gpaw, xtb, dart:PATH")
    c.add_argument("--db", required=True, help="output ase.db file (completed if it exists)")
    c.add_argument("--frames", type=int, default=3,
                   help="frames per relaxation path besides the final structure (default 3)")
    c.add_argument("--frame-window", default="0.1", metavar="EV_PER_ATOM",
                   help="take path frames only within this many eV/atom of the final energy "
                        "(default 0.1); 'all': evenly along the whole path from the random start")
    c.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--fmax", type=float, default=0.05, help="relaxation force limit, eV/Å")
    c.add_argument("--steps", type=int, default=1000, help="relaxation step limit (default 1000)")
    c.add_argument("--min-distance", type=float, default=0.7,
                   help="closest pair of a random start, fraction of the bond length")
    c.add_argument("--packing", type=float, default=0.45,
                   help="volume fraction of the sphere random starts are drawn in")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_clusters)
