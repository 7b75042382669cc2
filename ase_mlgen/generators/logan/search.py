"""The ``logan`` generator of ``ase-mlgen search``: candidates from a trained LoGAN (or ensemble),
optionally thinned to representatives (PCA + k-means) before they are relaxed."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from ase import Atoms


class LoGANSearchGenerator:
    """Proposes structures of the template's composition (and cell, when periodic).

    ``options``:

    - ``model``: a LoGAN model file, ensemble directory or finished run directory; or
    - ``data``: training structures (a file ASE reads) to fit a LoGAN here, with ``epochs``
      and any other LoGAN parameter in ``params`` (dict);
    - ``select``: when > 0, each call draws ``select_pool`` × n structures (default 20 ×) and
      returns ``n`` representatives of them (PCA + k-means); 0 (default) returns raw samples;
    - ``min_distance``: as in :func:`ase_mlgen.select.representatives` (default ``"covalent"``).
    """

    name = "logan"

    def __init__(self, template: Atoms, seed: int = 0, options: dict | None = None):
        from ase_mlgen.generators.logan.model import LoGAN
        from ase_mlgen.generators.logan.training import load_model

        options = dict(options or {})
        self.template = template
        self.rng = np.random.default_rng(seed)
        self.select = bool(options.get("select", 0))
        self.select_pool = int(options.get("select_pool", 20))
        self.min_distance = options.get("min_distance", "covalent")
        if options.get("model"):
            self.model = load_model(options["model"])
        elif options.get("data"):
            from ase.io import read

            images = read(options["data"], ":")
            params = dict(options.get("params", {}))
            cell = template.cell.array if np.any(template.pbc) else options.get("box")
            self.model = LoGAN(random_state=int(seed), **params).fit(
                images, composition=template, cell=cell)
        else:
            raise ValueError("the logan generator needs options 'model' (a trained model, "
                             "ensemble or run directory) or 'data' (training structures)")
        want = Counter(template.get_chemical_symbols())
        have = Counter(Atoms(self.model.generate(1, random_state=0)[0]).get_chemical_symbols())
        if want != have:
            raise ValueError(f"the LoGAN model generates {self.model.formula}, the template is "
                             f"{template.get_chemical_formula()}")

    def _seed(self) -> int:
        return int(self.rng.integers(2**31 - 1))

    def generate(self, n: int) -> list[Atoms]:
        """``n`` new candidate structures (``info["generator"] = "logan"``)."""
        if not self.select:
            out = self.model.generate(n, random_state=self._seed())
        else:
            from ase_mlgen.select import representatives

            pool = self.model.generate(max(n * self.select_pool, n), random_state=self._seed())
            out = representatives(pool, n, min_distance=self.min_distance,
                                  random_state=self._seed() % 2**31)
        for atoms in out:
            atoms.info["generator"] = "logan"
        return out

    def __call__(self, n: int = 1) -> list[Atoms]:
        return self.generate(n)

    def __iter__(self):
        while True:
            yield self.generate(1)[0]


def make_search_generator(template: Atoms, seed: int, options: dict[str, Any] | None = None):
    """Factory used by ``ase-mlgen search logan`` (``options`` as in
    :class:`LoGANSearchGenerator`)."""
    return LoGANSearchGenerator(template, seed, options)
