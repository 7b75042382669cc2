"""Why MeGen misses the Ga20 ground state: which one-atom relocations of the −51.012 eV funnel
minimum reach it → ``bench/results/megen_ga20_sites.json``.

Reads the tightly relaxed best minima of ``bench/megen_tight.py`` (``tight_check.json`` of
``--parts``): the lowest Ga20 minimum (the reference) and the lowest one above it (the funnel).
From the funnel minimum it removes each of the six lowest-coordinated atoms (the relocation
seeds of ``SearchMeGen``) and builds two candidate sets for the 19-atom fragments:

* ``policy``: ``--samples`` placements per fragment by the trained MeGen policy, distinct by
  site (``SiteFilter``), the putting-back of the removed atom excluded;
* ``hollow``: every hollow site of the fragment (``ase_mlgen.generators.megen.hollow``): the
  points at distance r (2.75 and 2.95 Å) from three atoms that are pairwise closer than 3.6 Å,
  no other atom closer than r − 0.05 Å, valid by the placement rules, sites closer than 0.3 Å
  merged.

Each candidate is relaxed with the GAP teacher (FIRE, fmax 0.05 eV/Å); candidates below the
funnel by more than 0.015 eV are re-relaxed to fmax 0.005 and compared with the reference
(cluster RMSD). Reported: how many reach it, and the DART rank of those among their set (the
order in which a DART-screened search would relax them), plus the first-neighbour distances the
policy proposes.

    python bench/megen_ga20_sites.py --parts bench/results/megen_parts_regrow \\
        --gap ../shared/data/ga/Ga_gap.xml
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from ase import Atoms
    from ase.optimize import FIRE

    from ase_mlgen.calculators.dart import DART
    from ase_mlgen.calculators.specs import calculator_from_spec
    from ase_mlgen.generators.megen import MeGen, PlacementRules
    from ase_mlgen.generators.megen.duplicates import SiteFilter
    from ase_mlgen.generators.megen.hollow import hollow_relocations
    from ase_mlgen.inversion.compare import cluster_rmsd
    from ase_mlgen.search.runner import machine_info
    from ase_mlgen.utils.io import atomic_json_dump

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=str(ROOT / "bench" / "results" / "megen_parts_regrow"))
    p.add_argument("--gap", default=str(ROOT.parent / "shared" / "data" / "ga" / "Ga_gap.xml"))
    p.add_argument("--model", default=str(ROOT / "bench" / "results" / "megen_parts_dart"
                                          / "megen_ga.pt"))
    p.add_argument("--dart", default=str(ROOT / "bench" / "datasets" / "dart_ga4-30.pt"))
    p.add_argument("--samples", type=int, default=200, help="policy placements per fragment")
    p.add_argument("--radii", type=float, nargs="+", default=[2.75, 2.95])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "megen_ga20_sites.json"))
    args = p.parse_args(argv)
    if not Path(args.gap).is_file():
        print(f"{args.gap} not found (the Ga GAP potential lives in ../shared/data); skipped")
        return 0

    runs = json.loads((Path(args.parts) / "tight_check.json").read_text())["sizes"]["Ga20"]["runs"]
    runs = sorted(runs, key=lambda r: r["energy_fmax0.005"])
    reference = Atoms("Ga20", positions=runs[0]["positions"])
    e_ref = runs[0]["energy_fmax0.005"]
    funnel_run = next(r for r in runs if r["energy_fmax0.005"] > e_ref + 0.01)
    funnel = np.array(funnel_run["positions"])
    e_funnel = funnel_run["energy_fmax0.005"]
    gap = calculator_from_spec(f"gap:{args.gap}")
    dart = DART.load(args.dart)
    rules = PlacementRules.ga()
    megen = MeGen.load(args.model, device="cpu", random_state=args.seed, dedupe=None)

    coordination = (Atoms("Ga20", positions=funnel).get_all_distances()
                    < rules.windows[0][1]).sum(1) - 1
    removed = np.argsort(coordination, kind="stable")[:6]
    sets: dict[str, list] = {"policy": [], "hollow": []}
    first_neighbour = []
    for j in removed:
        keep = [k for k in range(20) if k != j]
        fragment = funnel[keep]
        sites = SiteFilter()
        sites.add(Atoms("Ga20", positions=funnel[keep + [int(j)]]))
        for a in megen.place([Atoms("Ga19", positions=fragment)] * args.samples):
            shift = (a.positions[:-1] - fragment).mean(0)       # place() recentres the cluster
            new = a.positions[-1] - shift
            first_neighbour.append(float(np.linalg.norm(fragment - new, axis=1).min()))
            cand = Atoms("Ga20", positions=np.vstack([fragment, new]))
            if sites.add(cand):
                cand.info["removed"] = int(j)
                sets["policy"].append(cand)

    # the same six removals; ordered by removed atom, then radius
    hollow = []
    for r in args.radii:
        for cand in hollow_relocations(Atoms("Ga20", positions=funnel), rules, r, n_remove=6):
            cand.info["radius"] = r
            hollow.append(cand)
    position = {int(j): k for k, j in enumerate(removed)}
    sets["hollow"] = sorted(hollow, key=lambda a: (position[a.info["removed"]],
                                                   args.radii.index(a.info["radius"])))

    out = {"what": "one-atom relocations of the Ga20 funnel minimum: which reach the reference",
           "machine": machine_info(), "parts": str(args.parts), "seed": args.seed,
           "reference_tight_eV": e_ref, "reference_run": runs[0]["run"],
           "funnel_tight_eV": e_funnel, "funnel_run": funnel_run["run"],
           "removed_atoms": removed.tolist(), "samples_per_fragment": args.samples,
           "hollow_radii": args.radii,
           "policy_first_neighbour_quantiles_5_25_50_75_95": np.quantile(
               first_neighbour, [0.05, 0.25, 0.5, 0.75, 0.95]).round(3).tolist()}
    for name, cands in sets.items():
        t0 = time.perf_counter()
        predicted = dart.predict(cands)
        rank = np.argsort(np.argsort(predicted, kind="stable"), kind="stable")
        energies, hits = [], []
        for k, cand in enumerate(cands):
            b = cand.copy()
            b.calc = gap
            FIRE(b, logfile=None).run(fmax=0.05, steps=1500)
            e = float(b.get_potential_energy())
            energies.append(e)
            if e < e_funnel - 0.015:
                FIRE(b, logfile=None).run(fmax=0.005, steps=3000)
                rmsd = cluster_rmsd(b, reference)
                if rmsd < 0.1:
                    hits.append({"index": k, **cand.info, "loose_eV": e,
                                 "tight_eV": float(b.get_potential_energy()),
                                 "rmsd_to_reference": rmsd, "dart_rank": int(rank[k])})
        out[name] = {"candidates": len(cands), "reach_reference": len(hits), "hits": hits,
                     "lowest_loose_eV": sorted(energies)[:5],
                     "relax_seconds": time.perf_counter() - t0}
        print(name, {k: v for k, v in out[name].items() if k != "hits"}, hits, flush=True)
        atomic_json_dump(out, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
