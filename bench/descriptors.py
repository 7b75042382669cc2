"""Descriptor throughput on CPU: ase_mlgen (torch, batched) next to DScribe, same structures, same run.

Structures: 10,000 random Pt10 clusters and 1,000 random Ga50 clusters (random sequential
addition in a sphere, minimum distance 2.2 Å; seeds below). ACSF settings:

* ``pt10_paper``: the ACSF-inversion paper's Pt10 set (cutoff 20 Å, 140 G2 + 50 G5, see
  ../shared/data/README.md);
* ``typical``: a typical smaller Behler set (cutoff 6 Å, 8 G2 at R_s = 0, 18 G4), the default of
  ``ase-mlgen describe``.

Ours: ``ACSF.compute_many(images)`` (from ase.Atoms, end to end) with torch using as many threads
as cores, and ``forward_batch`` on the already stacked positions (tensor path). DScribe:
``ACSF.create(images, n_jobs=cores)``. Every timing is the best of ``--repeats`` runs, ours and
DScribe's interleaved, because the machine may be shared. The TAD (``ase_mlgen.descriptors.tad``)
is timed on the Ga50 clusters (target: >= 20,000 clusters/s on 2 cores).

Usage: ``python bench/descriptors.py [--quick] [--out bench/results/descriptors.json]``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from ase_mlgen.descriptors import ACSF
from ase_mlgen.utils.io import atomic_json_dump

PT10_G2 = [[eta, rs] for eta in (0.01, 0.06, 0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 3.5, 5.0)
           for rs in (0, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9, 10)]
PT10_G5 = [[eta, zeta, lam] for zeta in (1, 2, 4, 16, 64) for lam in (-1, 1)
           for eta in (0.06, 0.1, 0.2, 0.4, 1.0)]
TYPICAL_G2 = [[eta, 0.0] for eta in (0.003214, 0.035711, 0.071421, 0.125, 0.214264, 0.357106,
                                      0.714213, 1.428426)]
TYPICAL_G4 = [[eta, zeta, lam] for eta in (0.000357, 0.028569, 0.089277)
              for zeta in (1.0, 2.0, 4.0) for lam in (-1.0, 1.0)]
SETTINGS = {
    "pt10_paper": dict(r_cut=20.0, g2_params=PT10_G2, g5_params=PT10_G5),
    "typical": dict(r_cut=6.0, g2_params=TYPICAL_G2, g4_params=TYPICAL_G4),
}
SEEDS = {"Pt10": 0, "Ga50": 1}


def random_clusters(symbol: str, n_atoms: int, count: int, seed: int, d_min: float = 2.2,
                    volume_per_atom: float = 25.0) -> list[Atoms]:
    """Random clusters: atoms added one by one, uniformly in a sphere, at least d_min apart."""
    rng = np.random.default_rng(seed)
    radius = (3 * n_atoms * volume_per_atom / (4 * np.pi)) ** (1 / 3)
    out = []
    for _ in range(count):
        pos = np.zeros((0, 3))
        while len(pos) < n_atoms:
            trial = rng.uniform(-radius, radius, (64, 3))
            trial = trial[np.linalg.norm(trial, axis=1) <= radius]
            for t in trial:
                if len(pos) == 0 or np.min(np.linalg.norm(pos - t, axis=1)) >= d_min:
                    pos = np.vstack([pos, t])
                    if len(pos) == n_atoms:
                        break
        out.append(Atoms(f"{symbol}{n_atoms}", positions=pos))
    return out


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def machine_info(cores: int) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dscribe
    from importlib.metadata import version

    return {"cpu": cpu, "cores": cores, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "dscribe": version("dscribe"),
            "numpy": np.__version__, "load_average_start": list(os.getloadavg()),
            "note": "shared machine: other jobs may run; compare ratios, not absolute rates",
            "dscribe_path": os.path.dirname(dscribe.__file__)}


def bench_acsf(name: str, images: list[Atoms], setting: str, cores: int, repeats: int) -> dict:
    from dscribe.descriptors import ACSF as DScribeACSF

    kw = SETTINGS[setting]
    species = sorted(set(images[0].get_chemical_symbols()))
    ours = ACSF(species, **kw)
    theirs = DScribeACSF(species=species, **kw)
    pos = torch.tensor(np.stack([a.positions for a in images]))
    numbers = images[0].numbers
    t_ours = t_tensor = t_theirs = np.inf
    out = ref = None
    for _ in range(repeats):  # interleaved: a load change affects both
        t, out = best_time(lambda: ours.compute_many(images), 1)
        t_ours = min(t_ours, t)
        with torch.no_grad():
            t, _ = best_time(lambda: ours.forward_batch(pos, numbers), 1)
        t_tensor = min(t_tensor, t)
        t, ref = best_time(lambda: theirs.create(images, n_jobs=cores), 1)
        t_theirs = min(t_theirs, t)
    out = np.stack(out)
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    n = len(images)
    res = {"structures": name, "n_structures": n, "n_atoms": len(images[0]), "setting": setting,
           "r_cut": kw["r_cut"], "n_features": ours.n_features,
           "ours_structures_per_s": n / t_ours, "ours_tensor_structures_per_s": n / t_tensor,
           "dscribe_structures_per_s": n / t_theirs, "ratio_vs_dscribe": t_theirs / t_ours,
           "ratio_tensor_vs_dscribe": t_theirs / t_tensor, "max_relative_difference": err,
           "seconds": {"ours": t_ours, "ours_tensor": t_tensor, "dscribe": t_theirs}}
    print(f"{name:5s} {setting:10s} ours {res['ours_structures_per_s']:10.1f}/s "
          f"(tensor {res['ours_tensor_structures_per_s']:10.1f}/s)  DScribe "
          f"{res['dscribe_structures_per_s']:10.1f}/s  ratio {res['ratio_vs_dscribe']:.2f}  "
          f"max rel diff {err:.1e}", flush=True)
    return res


def bench_tad(images: list[Atoms], repeats: int) -> dict | None:
    try:
        from ase_mlgen.descriptors.tad import TAD
    except ImportError:
        return None
    tad = TAD()
    n = len(images)

    def from_atoms():
        pos = torch.tensor(np.stack([a.positions for a in images]))
        return tad.forward_batch(pos)

    pos = torch.tensor(np.stack([a.positions for a in images]))
    with torch.no_grad():
        t_tensor, out = best_time(lambda: tad.forward_batch(pos), repeats)
        t_atoms, _ = best_time(from_atoms, repeats)
    ok = bool(np.array_equal(out[0].numpy(), tad.compute(images[0])))
    res = {"structures": "Ga50", "n_structures": n, "shells": list(tad.shells),
           "clusters_per_s_tensor": n / t_tensor, "clusters_per_s_from_atoms": n / t_atoms,
           "matches_compute": ok, "target_clusters_per_s": 20000}
    print(f"TAD   Ga50       {res['clusters_per_s_tensor']:10.1f} clusters/s (tensor), "
          f"{res['clusters_per_s_from_atoms']:10.1f} from Atoms", flush=True)
    return res


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer structures")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "descriptors.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.cores)
    scale = 10 if args.quick else 1
    n_pt, n_ga = 10000 // scale, 1000 // scale
    t0 = time.perf_counter()
    pt10 = random_clusters("Pt", 10, n_pt, SEEDS["Pt10"])
    ga50 = random_clusters("Ga", 50, n_ga, SEEDS["Ga50"])
    print(f"generated {n_pt} Pt10 and {n_ga} Ga50 clusters in {time.perf_counter() - t0:.1f} s",
          flush=True)
    results = {"machine": machine_info(args.cores),
               "structures": {"Pt10": {"count": n_pt, "seed": SEEDS["Pt10"]},
                              "Ga50": {"count": n_ga, "seed": SEEDS["Ga50"]},
                              "generation": "random sequential addition in a sphere of "
                                            "25 Å^3 per atom, minimum distance 2.2 Å"},
               "settings": {k: {"r_cut": v["r_cut"],
                                "n_g2": len(v.get("g2_params", [])),
                                "n_g4": len(v.get("g4_params", [])),
                                "n_g5": len(v.get("g5_params", []))}
                            for k, v in SETTINGS.items()},
               "repeats": args.repeats, "acsf": []}
    results["tad"] = None
    # cheapest first; the JSON is rewritten after every measurement (partial results survive)
    for name, setting in (("Pt10", "pt10_paper"), ("Pt10", "typical"), ("Ga50", "typical"),
                          ("TAD", None), ("Ga50", "pt10_paper")):
        if name == "TAD":
            results["tad"] = bench_tad(ga50, max(args.repeats, 3))
        else:
            images = pt10 if name == "Pt10" else ga50
            results["acsf"].append(bench_acsf(name, images, setting, args.cores, args.repeats))
        results["machine"]["load_average_end"] = list(os.getloadavg())
        results["complete"] = name == "Ga50" and setting == "pt10_paper"
        atomic_json_dump(results, args.out)
    results["targets"] = {
        "acsf_ratio_at_least_1": all(r["ratio_vs_dscribe"] >= 1.0 for r in results["acsf"]),
        "tad_ga50_at_least_20000_per_s": (results["tad"] is not None and
                                          results["tad"]["clusters_per_s_tensor"] >= 20000)}
    atomic_json_dump(results, args.out)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
