"""Names of the ``ase-mlgen search`` methods and where their code lives.

Two kinds of method exist:

* **generator methods** (``random``, ``megen``, ``logan``, ``invert``): the target is a factory
  ``make_search_generator(template: Atoms, seed: int, options: dict) -> StructureGenerator``
  (see :mod:`ase_mlgen.generators.base`); the search loop is always
  :class:`ase_mlgen.search.GeneratorSearch`, so every generator is relaxed, deduplicated, counted
  and stored the same way;
* **baselines** (``bh``, ``mh``, ``ga``): the target is a runner
  ``run(problem: SearchProblem) -> None`` that drives its own ASE algorithm on the counted
  calculator of :mod:`ase_mlgen.search.runner`.

Targets are ``"module:function"`` strings imported only when a method is used, so a method whose
module is missing (not built yet, or an optional extra not installed) fails with a message that
says what to install, while every other method keeps working. Add a method with
:func:`register_method`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

#: method name -> "module:function"
METHODS: dict[str, str] = {
    "random": "ase_mlgen.generators.random:make_search_generator",
    "bh": "ase_mlgen.search.baselines:run_basin_hopping",
    "mh": "ase_mlgen.search.baselines:run_minima_hopping",
    "ga": "ase_mlgen.search.genetic:run_genetic_algorithm",
    "megen": "ase_mlgen.generators.megen:make_search_generator",
    "logan": "ase_mlgen.generators.logan:make_search_generator",
    "invert": "ase_mlgen.inversion.generator:make_search_generator",
}

#: methods whose target is a baseline runner rather than a generator factory
BASELINES = frozenset({"bh", "mh", "ga"})

#: what to tell a user when a method's module cannot be imported
INSTALL_HINTS: dict[str, str] = {
    "ga": "the genetic algorithm needs the package ase-ga: pip install 'ase_mlgen[ga]'",
    "megen": "MeGen is not available in this installation (module ase_mlgen.generators.megen); "
             "update ase_mlgen to a version with MeGen and train a policy with "
             "'ase-mlgen megen train', then pass it with --model PATH",
    "logan": "LoGAN is not available in this installation (module ase_mlgen.generators.logan); "
             "update ase_mlgen to a version with LoGAN, train a model with 'ase-mlgen logan', "
             "and pass it with --model PATH",
    "invert": "fingerprint inversion is not available in this installation (module "
              "ase_mlgen.inversion.generator); update ase_mlgen to a version with it",
}


class MethodUnavailableError(ValueError):
    """A known method whose code cannot be imported here (missing module or optional extra)."""


@dataclass(frozen=True)
class SearchMethod:
    """A resolved method: its name, kind (``"generator"`` or ``"baseline"``) and function."""

    name: str
    kind: str
    function: Callable
    target: str


def register_method(name: str, target: str, baseline: bool = False) -> None:
    """Make ``name`` a search method (e.g. from a plugin): ``target`` is ``"module:function"``."""
    global BASELINES
    if ":" not in target:
        raise ValueError(f"target must be 'module:function'; got {target!r}")
    METHODS[name] = target
    BASELINES = BASELINES | {name} if baseline else BASELINES - {name}


def available_methods() -> list[str]:
    """All method names (whether or not their modules import here)."""
    return sorted(METHODS)


def load_method(name: str) -> SearchMethod:
    """Import the method ``name``; raise :class:`MethodUnavailableError` with an install hint."""
    if name not in METHODS:
        raise ValueError(f"unknown search method {name!r}; known: {', '.join(available_methods())}")
    target = METHODS[name]
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        hint = INSTALL_HINTS.get(name, f"install what {module_name} needs")
        raise MethodUnavailableError(
            f"search method {name!r} is unavailable: cannot import {module_name} "
            f"(missing {missing}). {hint}") from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise MethodUnavailableError(
            f"search method {name!r} is unavailable: {module_name} has no {function_name}(). "
            f"{INSTALL_HINTS.get(name, '')}".strip())
    kind = "baseline" if name in BASELINES else "generator"
    return SearchMethod(name=name, kind=kind, function=function, target=target)


def make_generator(name: str, template, seed: int, options: dict | None = None):
    """Build the generator of a generator method: ``make_search_generator(template, seed, opts)``."""
    method = load_method(name)
    if method.kind != "generator":
        raise ValueError(f"{name!r} is a baseline search, not a generator")
    generator = method.function(template, int(seed), dict(options or {}))
    if not hasattr(generator, "generate"):
        raise TypeError(f"{method.target} returned {type(generator).__name__}, which has no "
                        "generate(n, rng=None) method")
    return generator
