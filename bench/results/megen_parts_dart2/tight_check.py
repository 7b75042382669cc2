"""Re-relax the best minimum of every MeGen race run (GAP, FIRE to fmax 0.005 eV/Å) to see
whether the 0.01 eV spread among the seeds' best energies is relaxation noise or distinct isomers."""
import json, glob, os, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
from ase import Atoms
from ase.optimize import FIRE
from ase_mlgen.calculators.specs import calculator_from_spec
from ase_mlgen.generators.megen.duplicates import sorted_pair_distances, same_by_fingerprint
calc = calculator_from_spec("gap:../shared/data/ga/Ga_gap.xml")
out = {"fmax": 0.005, "optimizer": "FIRE", "steps": 3000, "sizes": {}}
t0 = time.perf_counter()
for n in (13, 18, 20):
    rows = []
    for f in sorted(glob.glob(f"bench/results/megen_parts_dart2/runs/megen_*_Ga{n}_*.json")):
        r = json.load(open(f))
        m = r["minima"][0]
        a = Atoms(f"Ga{n}", positions=m["positions"]); a.calc = calc
        with FIRE(a, logfile=None) as opt:
            opt.run(fmax=0.005, steps=3000)
        rows.append({"run": os.path.basename(f), "energy_fmax0.05": m["energy"],
                     "energy_fmax0.005": float(a.get_potential_energy()),
                     "positions": np.round(a.positions, 5).tolist()})
    ats = [Atoms(f"Ga{n}", positions=r["positions"]) for r in rows]
    D = [sorted_pair_distances(a) for a in ats]
    lo = int(np.argmin([r["energy_fmax0.005"] for r in rows]))
    for r, a, d in zip(rows, ats, D):
        r["mean_abs_ddist_to_lowest"] = float(np.mean(np.abs(d - D[lo])))
        r["same_fingerprint_as_lowest"] = bool(same_by_fingerprint(a, ats[lo]))
        del r["positions"]
    out["sizes"][f"Ga{n}"] = {"lowest_tight": rows[lo]["energy_fmax0.005"], "runs": rows}
    for r in rows:
        print(n, r["run"], round(r["energy_fmax0.05"], 4), round(r["energy_fmax0.005"], 4),
              round(r["mean_abs_ddist_to_lowest"], 3), r["same_fingerprint_as_lowest"], flush=True)
out["seconds"] = time.perf_counter() - t0
json.dump(out, open("bench/results/megen_parts_dart2/tight_check.json", "w"), indent=1)
