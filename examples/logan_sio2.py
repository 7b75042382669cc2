"""LoGAN for a crystal: SiO2 in the alpha-quartz cell, trained on other silica polymorphs.

    python examples/logan_sio2.py [--data ../shared/data/logan/SiO2/mp-546546_training.extxyz]
                                  [--epochs 1500] [--k 10]

Trains one LoGAN on the shared SiO2 polymorphs of at most 48 atoms *except* every 9-atom one
(so no training structure has the target's atom count), generates Si3O6 in the quartz cell
(a = 4.916 Å, c = 5.405 Å) from the generator snapshots, picks k candidates with the
coordination-aware filter (PCA + k-means among the structures with the fewest Si/O coordination
defects), relaxes them and as many random structures with the BKS pair potential in the fixed
cell, and prints energies (eV/atom), space groups and whether every Si is four- and every O
two-coordinated. One model of 1500 epochs takes a few minutes on one core; ``bench/logan.py
--sio2 all`` is the full experiment on the six held-back targets.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "logan" / "SiO2" / "mp-546546_training.extxyz"
QUARTZ_CELL = [[4.916, 0.0, 0.0], [-2.458, 4.2574, 0.0], [0.0, 0.0, 5.405]]


def _random_structure(template, min_distance, rng):
    """Atoms of ``template`` at random positions in its cell, no two closer than
    ``min_distance`` (Å, minimum image)."""
    from ase import Atoms

    for _ in range(1000):
        atoms = Atoms(numbers=template.numbers, cell=template.cell, pbc=True,
                      scaled_positions=rng.random((len(template), 3)))
        d = atoms.get_all_distances(mic=True)
        if d[np.triu_indices(len(atoms), 1)].min() >= min_distance:
            return atoms
    raise RuntimeError("no random structure with atoms far enough apart")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--epochs", type=int, default=1500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from ase import Atoms
    from ase.io import read
    from ase.optimize import BFGSLineSearch

    from ase_mlgen.generators.logan import LoGAN
    from ase_mlgen.generators.logan.bks import BKS
    from ase_mlgen.select import representatives
    from ase_mlgen.structures.coordination import (SILICA_CUTOFFS, SILICA_IDEAL,
                                                   coordination_defects)
    from ase_mlgen.structures.crystals import space_group

    if not Path(args.data).is_file():
        print(f"{args.data} not found: pass --data (a file of SiO2 polymorphs, extxyz)",
              file=sys.stderr)
        return 1
    train = [a for a in read(args.data, ":") if len(a) <= 48 and len(a) != 9]
    target = Atoms("Si3O6", cell=QUARTZ_CELL, pbc=True)
    print(f"training on {len(train)} polymorphs (none with 9 atoms) ...", flush=True)
    model = LoGAN(random_state=args.seed, epochs=args.epochs, r_cut=5.0, n_max=4, rattle=1,
                  snapshot_every=250, snapshot_start=min(500, args.epochs))
    model.fit(train, composition=target, cell=target.cell.array)
    print(f"trained in {model.fit_seconds:.0f} s; {len(model.snapshots)} snapshots")
    pool = model.generate(2000, random_state=args.seed, snapshots=True)

    def defects(atoms):
        return coordination_defects(atoms, SILICA_IDEAL, SILICA_CUTOFFS)

    print(f"generated {len(pool)}; with ideal coordination: "
          f"{sum(defects(a) == 0 for a in pool)}")
    picked = representatives(pool, args.k, min_distance=1.45, prefer=defects,
                             random_state=args.seed)
    rng = np.random.default_rng(args.seed)
    randoms = [_random_structure(target, 1.45, rng) for _ in picked]

    def relax(atoms):
        atoms = atoms.copy()
        atoms.calc = BKS()
        converged = BFGSLineSearch(atoms, logfile=None).run(fmax=0.05, steps=300)
        if not converged:
            print("  (a relaxation did not reach fmax 0.05 eV/Å in 300 steps)")
        return atoms.get_potential_energy() / len(atoms), atoms

    for name, structures in (("LoGAN", picked), ("random", randoms)):
        rows = [relax(a) for a in structures]
        energies = [e for e, _ in rows]
        print(f"\n{name}: median {np.median(energies):.4f} eV/atom, "
              f"lowest {min(energies):.4f} eV/atom")
        for e, a in sorted(rows, key=lambda r: r[0]):
            print(f"  {e:9.4f}  {space_group(a, symprec=0.1)!s:16}  "
                  f"ideal coordination: {defects(a) == 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
