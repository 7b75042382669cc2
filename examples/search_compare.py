"""Random search (GeneratorSearch + RandomClusters) against ASE BasinHopping on LJ13, same
optimiser, same number of local relaxations. Swap RandomClusters for MeGen/LoGAN to compare them."""
from ase import Atoms
from ase.optimize.basin import BasinHopping

from ase_mlgen.calculators.lennard_jones import FullLennardJones
from ase_mlgen.generators.random import RandomClusters
from ase_mlgen.search import GeneratorSearch

generator = RandomClusters("Ar13", bond_length=2 ** (1 / 6), random_state=0)   # σ units
atoms = Atoms("Ar13"); atoms.calc = FullLennardJones()
random_search = GeneratorSearch(atoms, generator, fmax=0.05, logfile=None, seed=0)
random_search.run(40)                                           # 40 relaxed candidates

start = generator.generate(1)[0]; start.calc = FullLennardJones()
bh = BasinHopping(start, temperature=0.8, dr=0.4, fmax=0.05, logfile=None,
                  optimizer_logfile=None, local_minima_trajectory=None)
bh.run(39)                                                      # + the initial relaxation

print(f"random: {random_search.get_minimum()[0]:.6f}  basin hopping: {bh.get_minimum()[0]:.6f}"
      "  known: -44.326801 (ε)")
