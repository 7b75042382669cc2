"""LoGAN: local-environment Wasserstein GAN for molecules and crystals (Kovács et al. 2024).

- :class:`LoGAN` — ``LoGAN(random_state=0).fit(images, composition="C5H12O").generate(1000)``
- :func:`train` / :func:`train_ensemble` — training as a (background, resumable) job
- :class:`LoGANEnsemble` — several models, one ``generate``
- :func:`make_search_generator` — the ``logan`` generator of ``ase-mlgen search``
"""
from ase_mlgen.generators.logan.model import DEFAULTS, LoGAN, parse_composition
from ase_mlgen.generators.logan.search import make_search_generator
from ase_mlgen.generators.logan.training import (LoGANEnsemble, load_model, load_run, train,
                                                 train_ensemble)

__all__ = ["DEFAULTS", "LoGAN", "LoGANEnsemble", "load_model", "load_run",
           "make_search_generator", "parse_composition", "train", "train_ensemble"]
