"""From a DING composition to relaxed candidate crystals.

    python examples/ding_to_crystals.py --model runs/ding1 [--n-crystals 8]

1. DING generates compositions for a target (here formation enthalpy -0.3 eV/atom, energy
   -4.0 eV/atom, volume 14 Å³/atom) and we keep those made only of elements the cheap EMT
   calculator knows (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O). When none comes out, a fixed
   composition (AlCu2) stands in and the script says so.
2. :class:`ase_mlgen.generators.random.RandomCrystals` makes random unit cells with that content
   at the volume per atom the DING predictor gives.
3. Each crystal is relaxed (positions and cell) with EMT and BFGS; the lowest energies are
   printed. EMT is a toy stand-in: use a DFT calculator or a trained potential for real work.
"""
from __future__ import annotations

import argparse
import sys

EMT_ELEMENTS = {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"}


def main(argv=None) -> int:
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    from ase_mlgen import DING
    from ase_mlgen.generators.random import RandomCrystals

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="trained DING model file or run directory")
    p.add_argument("--n-crystals", type=int, default=8)
    p.add_argument("--steps", type=int, default=200, help="BFGS steps per crystal")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    model = DING.load(args.model)
    targets = {"delta_e": -0.3, "energy_pa": -4.0, "volume_pa": 14.0}
    cands = model.generate(2000, **targets, random_state=args.seed)
    usable = [c for c in cands if set(c.count()) <= EMT_ELEMENTS and len(c) <= 12]
    if usable:
        chosen = usable[0]
        volume = chosen.properties.get("volume_pa", targets["volume_pa"])
        print(f"DING composition {chosen.format()} (predicted {chosen.properties})")
    else:
        from ase.formula import Formula

        chosen, volume = Formula("AlCu2"), 14.0
        print(f"none of {len(cands)} generated compositions is made of EMT elements only; "
              f"using {chosen} instead")

    gen = RandomCrystals(chosen.format(), volume_per_atom=volume, random_state=args.seed)
    results = []
    for i, atoms in enumerate(gen.generate(args.n_crystals)):
        atoms.calc = EMT()
        opt = BFGS(FrechetCellFilter(atoms), logfile=None)
        opt.run(fmax=0.05, steps=args.steps)
        e = atoms.get_potential_energy() / len(atoms)
        results.append((e, atoms.get_volume() / len(atoms), i))
        print(f"crystal {i}: {e:.4f} eV/atom, {results[-1][1]:.2f} Å³/atom, "
              f"{opt.nsteps} steps")
    e, v, i = min(results)
    print(f"lowest: crystal {i}, {e:.4f} eV/atom (EMT), {v:.2f} Å³/atom")
    return 0


if __name__ == "__main__":
    sys.exit(main())
