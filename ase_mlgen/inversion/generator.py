"""Generation → inversion → optional relaxation, as a structure generator.

:class:`InversionGenerator` follows the generator protocol of :mod:`ase_mlgen.generators.base`:
``generate(n, rng)`` asks a trained :class:`~ase_mlgen.inversion.cvae.FingerprintGenerator` for
fingerprints at a target property, reconstructs each with :class:`ACSFInverter` and optionally
relaxes the result; every structure carries ``info["generator"] = "invert"``, the target, the
surrogate's prediction and ``info["reconstruction_loss"]``. ``max_loss`` drops reconstructions
whose loss is higher (fingerprints no structure has), generating more until ``n`` are found (up to
``max_tries`` × ``n`` attempts; the best of the rejected ones fill up otherwise, flagged
``info["valid"] = False``).

:func:`make_search_generator` builds one for ``ase-mlgen search invert --model RUN_DIR``.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from ase_mlgen.inversion.cvae import FingerprintGenerator, nearest_to_target
from ase_mlgen.inversion.inverter import ACSFInverter, parse_numbers


def descriptor_from_dict(spec: dict):
    """Rebuild a descriptor stored as ``{"kind": "ACSF", ...}`` (ACSF ``todict()`` output)."""
    from ase_mlgen.descriptors.acsf import ACSF

    spec = dict(spec)
    kind = spec.pop("kind", "ACSF")
    if kind != "ACSF":
        raise ValueError(f"cannot rebuild descriptor kind {kind!r} (only ACSF is stored)")
    return ACSF(**spec)


def _per_atom_rows(vector: np.ndarray, n_atoms: int) -> np.ndarray:
    """``(N, F)`` rows of a flat per-atom fingerprint vector of ``N · F`` numbers."""
    if vector.size % n_atoms:
        raise ValueError(f"a generated fingerprint of {vector.size} numbers is not a per-atom "
                         f"fingerprint of {n_atoms} atoms; was the model trained on pooled "
                         "fingerprints (then store its pooling with the model)?")
    return vector.reshape(n_atoms, -1)


def reconstruction_property(model: FingerprintGenerator, inverter: ACSFInverter,
                            images: list[Atoms]) -> np.ndarray:
    """The surrogate property of reconstructed structures, from their own (valid) fingerprints
    in the representation the model learned: canonical per-atom vectors for a per-atom
    inverter (``pooling=None``), pooled vectors otherwise."""
    if model.surrogate is None:
        raise ValueError("this generator was trained without a surrogate model")
    if not images:
        return np.zeros(0)
    if inverter.pooling is None:
        from ase_mlgen.inversion.per_atom import per_atom_vectors

        vectors, _ = per_atom_vectors(images, inverter.descriptor)
    else:
        vectors = np.stack([inverter.fingerprint(a) for a in images])
    return np.asarray(model.predict(vectors), dtype=float)


class InversionGenerator:
    """Fingerprints from a cVAE at ``target``, inverted into structures (paper's pipeline).

    Parameters
    ----------
    model: a :class:`FingerprintGenerator` (or a path to its run directory / saved file).
    numbers: atomic numbers of the structures (default: ``model.config["numbers"]``).
    target: property of the generated structures (e.g. formation energy, eV/atom).
    inverter: an :class:`ACSFInverter`; default: one built from the model's stored descriptor and
        pooling with ``inverter_options``.
    relax: ``None`` or a calculator spec/factory for :func:`ase_mlgen.search.relax.relax_many`.
    max_loss: drop reconstructions with ``info["reconstruction_loss"]`` above it.
    latent: ``"prior"`` (the paper's) or ``"posterior"`` — how the cVAE samples its latent (see
        :meth:`FingerprintGenerator.generate`).
    rescreen: a **surrogate filter after inversion**: reconstruct ``rescreen`` × n structures and
        keep the n whose surrogate property, computed on each reconstruction's own fingerprint
        (:func:`reconstruction_property`), is nearest ``target`` (1: off). Generated fingerprints
        are not exactly those of any structure; the reconstruction's property can differ from
        the target, most for strained high-energy structures.
    """

    name = "invert"

    def __init__(self, model, target: float, numbers=None, cell=None, pbc=False,
                 inverter: ACSFInverter | None = None, relax=None, fmax: float = 0.05,
                 max_loss: float | None = None, max_tries: int = 3, random_state=None,
                 latent: str = "prior", rescreen: int = 1, **inverter_options):
        if not isinstance(model, FingerprintGenerator):
            model = FingerprintGenerator.load(model)
        self.model = model
        self.target = float(target)
        if latent not in ("prior", "posterior"):
            raise ValueError(f"latent must be 'prior' or 'posterior'; got {latent!r}")
        self.latent = latent
        if numbers is None:
            numbers = model.config.get("numbers")
            if numbers is None:
                raise ValueError("numbers are needed (the model does not store them)")
        self.numbers = parse_numbers(numbers)
        self.cell, self.pbc = cell, pbc
        self._rng = np.random.default_rng(random_state)
        if inverter is None:
            spec = model.config.get("descriptor")
            if spec is None:
                raise ValueError("pass an inverter: the model does not store its descriptor")
            pooling = model.config.get("pooling")
            inverter = ACSFInverter(descriptor_from_dict(spec),
                                    pooling=tuple(pooling) if pooling else None,
                                    random_state=self._rng, **inverter_options)
        self.inverter = inverter
        self.relax, self.fmax = relax, fmax
        self.max_loss = max_loss
        self.max_tries = max(int(max_tries), 1)
        self.rescreen = int(rescreen)
        if self.rescreen < 1:
            raise ValueError(f"rescreen must be >= 1 (reconstructions per kept structure); "
                             f"got {rescreen}")
        if self.rescreen > 1 and model.surrogate is None:
            raise ValueError("rescreen > 1 needs the surrogate; this generator has none")

    def generate(self, n: int, rng=None) -> list[Atoms]:
        from ase_mlgen.generators.base import as_rng, tag

        rng = as_rng(rng, self._rng)
        self.inverter.rng = rng
        wanted, n = n, n * self.rescreen
        accepted: list[Atoms] = []
        rejected: list[Atoms] = []
        attempts = 0
        while len(accepted) < n and attempts < self.max_tries * n:
            k = n - len(accepted)
            fps = self.model.generate(k, self.target, seed=int(rng.integers(2 ** 31)),
                                      latent=self.latent)
            predicted = (self.model.predict(fps) if self.model.surrogate is not None
                         else [None] * k)
            for fp, pred in zip(fps, predicted):
                attempts += 1
                if self.inverter.pooling is None and fp.ndim == 1:
                    # a per-atom model's flat vector (per_atom_vectors): rows in canonical order
                    fp = _per_atom_rows(fp, len(self.numbers))
                atoms = self.inverter.reconstruct(fp, self.numbers, cell=self.cell, pbc=self.pbc)
                info = {"target": self.target,
                        "reconstruction_loss": atoms.info["reconstruction_loss"]}
                if pred is not None:
                    info["predicted_energy"] = float(pred)
                atoms.info.pop("loss_history", None)
                tag(atoms, self.name, **info)
                ok = self.max_loss is None or atoms.info["reconstruction_loss"] <= self.max_loss
                atoms.info["valid"] = bool(ok)
                (accepted if ok else rejected).append(atoms)
        if len(accepted) < n:
            rejected.sort(key=lambda a: a.info["reconstruction_loss"])
            accepted += rejected[:n - len(accepted)]
        accepted = accepted[:n]
        if self.rescreen > 1 and accepted:
            values = reconstruction_property(self.model, self.inverter, accepted)
            for a, v in zip(accepted, values):
                a.info["reconstruction_property"] = float(v)
            accepted = [accepted[i] for i in nearest_to_target(values, self.target, wanted)]
        if self.relax is not None:
            from ase_mlgen.search.relax import relax_many

            relaxed = relax_many(accepted, self.relax, fmax=self.fmax, progress=False)
            for a, r in zip(accepted, relaxed):
                r.info.update({k: v for k, v in a.info.items() if k not in r.info})
            accepted = relaxed
        return accepted


def make_search_generator(template: Atoms, seed: int, options: dict) -> InversionGenerator:
    """Factory for ``ase-mlgen search invert --model RUN_DIR [--option target=2.5 ...]``.

    Options: ``model`` (required: a trained fingerprint cVAE run directory or file), ``target``
    (default: the median property of the training data), ``n_init``, ``n_hops``, ``steps``,
    ``max_loss``, ``latent`` (``prior`` or ``posterior``). Numbers (and cell/pbc for crystals) come from ``template``.
    """
    from ase_mlgen.generators.base import option

    path = option(options, "model", None, str)
    if not path:
        raise ValueError("search method 'invert' needs a trained fingerprint model: "
                         "--model RUN_DIR (train one with 'ase-mlgen train fingerprint')")
    model = FingerprintGenerator.load(path)
    y_range = model.config.get("y_range") or [None, None, model.y_mean]
    target = option(options, "target", float(y_range[2]), float)
    periodic = bool(template.pbc.any())
    return InversionGenerator(
        model, target, numbers=template.numbers,
        cell=np.asarray(template.cell) if periodic else None,
        pbc=template.pbc.copy() if periodic else False,
        max_loss=option(options, "max_loss", None, float), random_state=seed,
        latent=option(options, "latent", "prior", str),
        n_init=option(options, "n_init", 10, int), n_hops=option(options, "n_hops", 5, int),
        steps=option(options, "steps", 150, int))
