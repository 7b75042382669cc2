"""MeGen: reinforcement-learning growth of metal clusters (Modee et al., Mach. Learn.: Sci.
Technol. 4, 025032, 2023).

* :mod:`.env` — canvas, bag, placement rules and reward (any ASE calculator; DART by default);
* :mod:`.policy` — the rotation-covariant e3nn actor-critic;
* :mod:`.ppo` — PPO training as a resumable background job;
* :mod:`.generator` — :class:`MeGen` (seeded and iterative generation) and the
  ``ase-mlgen search megen`` factory :func:`make_search_generator`;
* :mod:`.duplicates` — the paper's duplicate criterion and a fingerprint one.
"""
from ase_mlgen.generators.megen.duplicates import (DuplicateFilter, SiteFilter, count_within,
                                                  unique)
from ase_mlgen.generators.megen.env import BatchGrowthEnv, PlacementRules
from ase_mlgen.generators.megen.generator import (MeGen, SearchMeGen, dimer,
                                                  make_search_generator, read_seeds)
from ase_mlgen.generators.megen.policy import MeGenPolicy

__all__ = ["MeGen", "SearchMeGen", "MeGenPolicy", "BatchGrowthEnv", "PlacementRules",
           "DuplicateFilter", "SiteFilter", "unique", "count_within", "dimer", "make_search_generator",
           "read_seeds"]
