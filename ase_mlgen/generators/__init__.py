"""Structure generators: the protocol (:mod:`.base`), random baselines (:mod:`.random`), MeGen and
LoGAN. Every generator plugs into :class:`ase_mlgen.search.GeneratorSearch`."""
