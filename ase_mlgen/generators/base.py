"""The structure-generator protocol that every generator of ase_mlgen follows.

A generator proposes candidate structures; it does not relax them. Any object with a
``generate(n, rng=None) -> list[Atoms]`` method is a generator (a :class:`typing.Protocol`, so no
base class is required)::

    >>> from ase_mlgen.generators.random import RandomClusters
    >>> gen = RandomClusters("Ga13", random_state=0)
    >>> [a.info["generator"] for a in gen.generate(2)]
    ['random', 'random']

Rules every generator follows

* each returned :class:`~ase.Atoms` is a new object carrying ``info["generator"]`` (a short name
  such as ``"random"``, ``"megen"``, ``"logan"``, ``"invert"``) and whatever else the generator
  predicted (e.g. ``info["predicted_energy"]`` in eV), set with :func:`tag`;
* ``rng`` may be a :class:`numpy.random.Generator`, an integer seed or ``None`` (use the
  generator's own state, which :func:`as_rng` builds from its ``random_state`` once, so that
  successive calls give new structures);
* clusters are returned without a cell (``pbc=False``), centred at the origin; crystals with
  ``pbc=True`` and their cell.
* optionally, a generator that adapts to what the search finds defines
  ``observe(atoms, energy)``: :class:`~ase_mlgen.search.generator_search.GeneratorSearch` calls
  it with every relaxed structure and its energy (eV) after each step (MeGen reseeds from the
  minima it is shown). A search restarted from its database does not replay earlier steps.

Generators become ``ase-mlgen search`` methods through :mod:`ase_mlgen.search.methods`: the method
names a factory ``make_search_generator(template, seed, options) -> StructureGenerator`` where
``template`` is the system's :class:`~ase.Atoms` (composition, cell and ``template.info`` hints
such as ``bond_length`` in Å and ``system``), ``seed`` the run's integer seed and ``options`` a
``dict[str, str]`` from ``--option KEY=VALUE`` (``--model PATH`` arrives as ``options["model"]``).
Use :func:`option` to read typed values from it.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from ase import Atoms

RNGLike = "np.random.Generator | int | None"


@runtime_checkable
class StructureGenerator(Protocol):
    """Anything that proposes candidate structures."""

    def generate(self, n: int, rng: np.random.Generator | int | None = None) -> list[Atoms]:
        """Return ``n`` new candidates, each with ``info["generator"]`` set."""
        ...


def as_rng(rng: np.random.Generator | int | None,
           default: np.random.Generator | None = None) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from a generator, a seed, or ``None``.

    ``None`` returns ``default`` when given (a generator's own persistent state), else a fresh
    unseeded generator.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return default if default is not None else np.random.default_rng()
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.RandomState):  # legacy seeding, e.g. from ASE code
        return np.random.default_rng(rng.randint(2**31))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None; got {type(rng).__name__}")


def tag(atoms: Atoms, generator: str, **predicted: Any) -> Atoms:
    """Mark ``atoms`` as made by ``generator`` and store what it predicted in ``atoms.info``.

    Values must be JSON/ase.db friendly (numbers, strings, booleans). Returns ``atoms``.

    >>> tag(Atoms("H2"), "random", predicted_energy=-1.0).info
    {'generator': 'random', 'predicted_energy': -1.0}
    """
    if not generator or not isinstance(generator, str):
        raise ValueError("generator name must be a non-empty string")
    atoms.info["generator"] = generator
    for key, value in predicted.items():
        if isinstance(value, np.generic):
            value = value.item()
        atoms.info[key] = value
    return atoms


def option(options: dict | None, key: str, default: Any = None,
           type: Callable[[Any], Any] | None = None) -> Any:
    """Read ``options[key]`` (CLI strings) converted with ``type`` (default: type of ``default``).

    Booleans accept ``1/0/true/false/yes/no``. Missing keys return ``default``.

    >>> option({"packing": "0.4"}, "packing", 0.3)
    0.4
    """
    if not options or key not in options or options[key] is None:
        return default
    value = options[key]
    convert = type or (default.__class__ if default is not None else None)
    if convert is None or isinstance(value, convert) and convert is not bool:
        return value
    if convert is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"option {key}={value!r} is not a boolean (use true/false)")
    try:
        return convert(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"option {key}={value!r}: expected {convert.__name__}") from exc


def check_generated(structures: list[Atoms], n: int, name: str = "generator") -> list[Atoms]:
    """Validate a generator's output (used by the search loop): ``n`` Atoms, each tagged."""
    if len(structures) != n:
        raise ValueError(f"{name} returned {len(structures)} structures, {n} were asked for")
    for atoms in structures:
        if not isinstance(atoms, Atoms):
            raise TypeError(f"{name} returned a {type(atoms).__name__}, not ase.Atoms")
        if "generator" not in atoms.info:
            raise ValueError(f"{name} returned a structure without info['generator']; "
                             "use ase_mlgen.generators.base.tag")
    return structures
