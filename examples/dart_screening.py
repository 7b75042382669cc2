"""The DART paper's screening workflow (section 3.5), at small scale.

Molecular dynamics of a Ga cluster with the GAP teacher gives many snapshots; DART scores them all
at once; one snapshot per predicted-energy bin is relaxed with the teacher; duplicate minima are
removed. Needs a trained DART model (e.g. ``bench/data/parts/dart_random_split.pt`` from
``bench/dart.py``, or ``ase-mlgen train dart``) and the GAP extra::

    python examples/dart_screening.py --model dart.pt --gap ../shared/data/ga/Ga_gap.xml \
        --natoms 31 --md-steps 300 --bins 10
"""
from __future__ import annotations

import argparse
import time


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="DART model file")
    ap.add_argument("--gap", required=True, help="GAP XML file (the teacher)")
    ap.add_argument("--natoms", type=int, default=31)
    ap.add_argument("--md-steps", type=int, default=300)
    ap.add_argument("--interval", type=int, default=3, help="MD steps between snapshots")
    ap.add_argument("--temperature", type=float, default=1200.0, help="K")
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--relax-steps", type=int, default=100)
    ap.add_argument("--out", default="screening.traj")
    args = ap.parse_args(argv)

    from ase import units
    from ase.io import write
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.optimize import FIRE

    from ase_mlgen import DART
    from ase_mlgen.calculators.gap import GAPCalculator
    from ase_mlgen.generators.megen.duplicates import same_by_distances_and_angles
    from ase_mlgen.generators.random import RandomClusters
    from ase_mlgen.select import energy_bins

    teacher = GAPCalculator(args.gap)
    atoms = RandomClusters(f"Ga{args.natoms}", packing=0.45, random_state=0).generate(1)[0]
    atoms.calc = teacher
    FIRE(atoms, logfile=None).run(fmax=0.1, steps=50)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=None)
    md = Langevin(atoms, 5 * units.fs, temperature_K=args.temperature, friction=0.02,
                  fixcm=False)
    snapshots = []
    md.attach(lambda: snapshots.append(atoms.copy()), interval=args.interval)
    t0 = time.perf_counter()
    md.run(args.md_steps)
    print(f"MD: {len(snapshots)} snapshots in {time.perf_counter() - t0:.1f} s")

    dart = DART.load(args.model)
    t0 = time.perf_counter()
    picks = energy_bins(snapshots, dart, args.bins)
    print(f"DART scored {len(snapshots)} snapshots in {time.perf_counter() - t0:.3f} s; "
          f"{len(picks)} picks")

    minima = []
    for pick in picks:
        pick.calc = teacher
        FIRE(pick, logfile=None).run(fmax=0.05, steps=args.relax_steps)
        e = pick.get_potential_energy()
        if not any(abs(e - em) < 0.01 and same_by_distances_and_angles(pick, m)
                   for m, em in minima):
            minima.append((pick.copy(), e))
    minima.sort(key=lambda t: t[1])
    for m, e in minima:
        m.info["teacher_energy"] = e
    write(args.out, [m for m, _ in minima])
    print(f"{len(minima)} unique minima from {len(picks)} relaxations; lowest "
          f"{minima[0][1]:.4f} eV; written to {args.out}")


if __name__ == "__main__":
    main()
