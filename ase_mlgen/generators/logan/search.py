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

        from ase_mlgen.generators.base import option

        options = dict(options or {})
        self.template = template
        self.rng = np.random.default_rng(seed)
        self.select = option(options, "select", 0, int)
        self.select_pool = option(options, "select_pool", 20, int)
        md = options.get("min_distance", "covalent")
        self.min_distance = md if md in (None, "covalent") else float(md)
        if options.get("model"):
            self.model = load_model(options["model"])
        elif options.get("data"):
            from ase.io import read

            images = read(options["data"], ":")
            params = options.get("params", {})
            if isinstance(params, str):
                import json

                params = json.loads(params)
            if "epochs" in options:
                params["epochs"] = option(options, "epochs", 0, int)
            cell = template.cell.array if np.any(template.pbc) else options.get("box")
            self.model = LoGAN(random_state=int(seed), **params).fit(
                images, composition=template, cell=cell)
        else:
            raise ValueError("the logan generator needs options 'model' (a trained model, "
                             "ensemble or run directory) or 'data' (training structures)")
        want = Counter(template.get_chemical_symbols())
        have = Counter(self.model.generate(1, random_state=0)[0].get_chemical_symbols())
        if want != have:
            raise ValueError(f"the LoGAN model generates {self.model.formula}, the template is "
                             f"{template.get_chemical_formula()}")

    def generate(self, n: int, rng: np.random.Generator | int | None = None) -> list[Atoms]:
        """``n`` new candidate structures (``info["generator"] = "logan"``); molecules and
        clusters come without a cell, centred at the origin (the generator protocol)."""
        from ase_mlgen.generators.base import as_rng, tag

        r = as_rng(rng, self.rng)
        seed = int(r.integers(2**31 - 1))
        if not self.select:
            out = self.model.generate(n, random_state=seed)
        else:
            from ase_mlgen.select import representatives

            pool = self.model.generate(max(n * self.select_pool, n), random_state=seed)
            out = representatives(pool, n, min_distance=self.min_distance,
                                  random_state=seed % 2**31)
            while len(out) < n:  # fewer distinct clusters than asked for: top up with samples
                out += self.model.generate(n - len(out), random_state=int(r.integers(2**31)))
        for atoms in out:
            if not np.any(atoms.pbc):
                atoms.set_cell(np.zeros((3, 3)))
                atoms.positions -= atoms.positions.mean(axis=0)
            tag(atoms, "logan")
        return out


def make_search_generator(template: Atoms, seed: int, options: dict[str, Any] | None = None):
    """Factory used by ``ase-mlgen search logan`` (``options`` as in
    :class:`LoGANSearchGenerator`)."""
    return LoGANSearchGenerator(template, seed, options)
