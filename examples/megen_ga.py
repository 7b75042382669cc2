"""MeGen on Ga with the GAP teacher: train a growth policy briefly, grow Ga8 candidates from
relaxed Ga7 seeds, relax them, and count unique low-energy isomers.

    python examples/megen_ga.py [--gap ../shared/data/ga/Ga_gap.xml] [--iterations 5]

With a trained DART model, pass ``--reward dart:PATH`` (the paper's reward); GAP itself works as
a (slower) reward too.
"""
import argparse
from pathlib import Path

from ase.optimize import FIRE

from ase_mlgen.calculators.gap import GAPCalculator
from ase_mlgen.generators.megen import MeGen, count_within, unique
from ase_mlgen.generators.random import RandomClusters

parser = argparse.ArgumentParser()
parser.add_argument("--gap", default=str(Path(__file__).resolve().parents[2]
                                          / "shared/data/ga/Ga_gap.xml"))
parser.add_argument("--reward", default=None)
parser.add_argument("--iterations", type=int, default=5)
parser.add_argument("--out", default="runs/megen_example")
args = parser.parse_args()
gap = GAPCalculator(args.gap)


def relax(atoms):
    atoms = atoms.copy()
    atoms.calc = gap
    FIRE(atoms, logfile=None).run(fmax=0.05, steps=300)
    atoms.info["energy"] = atoms.get_potential_energy()
    return atoms


# 1. seeds: a few relaxed Ga7 minima from random starts
seeds = unique(sorted((relax(a) for a in RandomClusters("Ga7", random_state=0).generate(6)),
                      key=lambda a: a.info["energy"]))
print(f"{len(seeds)} unique Ga7 seeds, lowest {seeds[0].info['energy']:.3f} eV")

# 2. train briefly (PPO; resumable run directory with log, checkpoints and curve.png)
megen = MeGen(seeds=seeds, random_state=0)
megen.train(args.out, calculator=args.reward or f"gap:{args.gap}", iterations=args.iterations,
            episodes=16, minibatch=16, max_atoms=8, resume=Path(args.out, "config.json").exists())

# 3. grow Ga8 candidates, relax them with the teacher, count unique isomers
candidates = megen.generate(20)
minima = [relax(a) for a in candidates]
print(f"Ga8: lowest {min(m.info['energy'] for m in minima):.3f} eV; unique isomers within "
      f"0.5 eV: {count_within(minima, 0.5)}, within 1.0 eV: {count_within(minima, 1.0)}")
