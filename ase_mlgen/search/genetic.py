"""The ``ga`` method: the cluster genetic algorithm of ``ase_ga`` (package ``ase-ga``).

Vilhelmsen & Hammer, J. Chem. Phys. 141, 044711 (2014), as in ASE's GA tutorial, except that the
start population is the same compact random starts the other methods use (``random``, ``bh`` and
``mh`` start from start 0; ``StartGenerator`` took ~0.4 s a Ga13 start, 2 % of a 5-relaxation GAP
run), then cut-and-splice pairing, rattle (/ permutation for alloys) mutations (mirror on
request, see below), and a ``Population`` with the interatomic-distance comparator. The GA keeps its
own state in an ``ase_ga`` database; every relaxation is also reported to the run's recorder
like every other method.

Where the GA database lives: option ``ga_db``; else, when the run has a database ``out.db``,
``out.ga-<seed>.db`` next to it; else a scratch file. A run restarted on the same databases
continues: candidates made but not relaxed are relaxed first, the population is rebuilt from the
relaxed ones, and the random stream is reseeded with ``(seed, relaxations done)`` so the restart
does not replay the operators of the first session. Each relaxation is written to the GA database
before the run's database, so the only window in which an interruption can lose it is between the
two writes; the restart then takes it from the GA database without relaxing it again.

Options and defaults:

* ``population_size`` — 10 (ASE's GA tutorial and Vilhelmsen & Hammer use 10-20; smaller budgets
  get ``budget // 3`` so that breeding starts before the budget is spent);
* ``mutation_probability`` — 0.3 (the tutorial's value: most children come from cut-and-splice,
  which carries whole motifs between parents, the rest are mutated);
* ``rattle_strength`` — 0.3 × the bond length (moves atoms by a fraction of a bond, enough to
  leave a basin without destroying the cluster);
* ``mirror`` — off: ase_ga's ``MirrorMutation`` mirrors the atoms on one side of a random plane
  through the centre, and any atom closer than ``blmin / 2`` to that plane lands too close to its
  own image, which in a compact cluster is almost always the case. It then gives up after 1000
  tries (~2 s): 0 of 10 calls on relaxed LJ19 and LJ20 clusters made a structure, and on Ga13
  with GAP it was most of the GA's 7.8 % overhead. ``mirror=1`` puts it back (the LJ13/LJ19
  benchmark GA runs of session 2 were made with it, a cost in seconds, not in relaxations);
* ``ga_db`` — see above.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ase_mlgen.generators.base import option
from ase_mlgen.search.storage import frozen


try:   # imported here, before a run's clock starts (a few hundred ms), when ase-ga is installed
    import ase_ga.cutandsplicepairing  # noqa: F401
    import ase_ga.data  # noqa: F401
    import ase_ga.population  # noqa: F401
    import ase_ga.standard_comparators  # noqa: F401
    import ase_ga.standardmutations  # noqa: F401
except ImportError:
    pass


def _import_ase_ga():
    try:
        import ase_ga  # noqa: F401
    except ImportError as exc:
        raise ImportError("the 'ga' method needs the package ase-ga: "
                          "pip install 'ase_mlgen[ga]'") from exc


def _catch_up(da, recorder) -> None:
    """Record relaxations that reached the GA database but not the run's (interrupted between
    the two writes), without relaxing them again."""
    if recorder.storage is None:
        return
    recorded = {int(row.data["ga_confid"]) for row in recorder.storage.minima_rows()
                if row.data and "ga_confid" in row.data}
    for a in sorted(da.get_all_relaxed_candidates(), key=lambda a: a.info["confid"]):
        if a.info["confid"] not in recorded:
            recorder.record(a, a.get_potential_energy(), generator="ga",
                            state={"ga_confid": int(a.info["confid"])}, raise_at_budget=False)


def run_genetic_algorithm(problem) -> None:
    """Run the cluster GA until the recorder's budget is used."""
    _import_ase_ga()
    from ase import Atoms
    from ase_ga.cutandsplicepairing import CutAndSplicePairing
    from ase_ga.data import DataConnection, PrepareDB
    from ase_ga.offspring_creator import OperationSelector
    from ase_ga.population import Population
    from ase_ga.standard_comparators import InteratomicDistanceComparator
    from ase_ga.standardmutations import MirrorMutation, PermutationMutation, RattleMutation

    template = problem.template
    numbers = template.numbers.tolist()
    n_top = len(numbers)
    bond = float(template.info.get("bond_length", 2.5))
    pop_size = option(problem.options, "population_size", min(10, max(2, problem.budget // 3)),
                      int)
    p_mutation = option(problem.options, "mutation_probability", 0.3, float)
    rattle = option(problem.options, "rattle_strength", 0.3 * bond, float)
    rng = np.random.RandomState(problem.seed)

    # a non-periodic cell much larger than the cluster (ase_ga works in a cell)
    side = bond * (n_top / 0.3) ** (1 / 3) * 0.8
    cell_side = 3 * side + 4 * bond
    slab = Atoms(cell=[cell_side] * 3, pbc=False)
    elements = sorted(set(numbers))
    extra_starts = 0

    def start(k: int) -> Atoms:
        """Start ``k``: the same compact random start as the other methods get (random, bh and
        mh start from start 0), centred in the cell, in the template's atom order as ase_ga
        expects."""
        atoms = problem.start_structure(k)
        pools = {z: list(np.flatnonzero(atoms.numbers == z)) for z in elements}
        order = [pools[z].pop(0) for z in numbers]
        atoms = Atoms(atoms.numbers[order], atoms.positions[order], cell=slab.cell, pbc=False)
        atoms.positions += slab.cell.diagonal() / 2 - atoms.positions.mean(axis=0)
        return atoms
    blmin = {(a, b): 0.7 * bond for a in elements for b in elements}

    recorder = problem.recorder
    scratch = None
    db_file = option(problem.options, "ga_db", None, str)
    run_db = getattr(recorder.storage, "path", None)
    if db_file is None and run_db is not None:
        stem, _ = os.path.splitext(run_db)
        db_file = f"{stem}.ga-{problem.seed}.db"
    if db_file is None:
        scratch = tempfile.TemporaryDirectory(prefix="ase_mlgen_ga_")
        db_file = os.path.join(scratch.name, "ga.db")
    try:
        fresh = not os.path.exists(db_file)
        if fresh:
            prep = PrepareDB(db_file, simulation_cell=slab, stoichiometry=numbers)
            for k in range(pop_size):
                prep.add_unrelaxed_candidate(start(k))
        da = DataConnection(db_file)
        if not fresh:
            _catch_up(da, recorder)
            rng = np.random.RandomState([problem.seed, recorder.relaxations])

        def relax_and_add(a):
            a.calc = problem.calc
            opt_steps = problem.relax(a)
            energy = a.get_potential_energy()
            a.info.setdefault("key_value_pairs", {})["raw_score"] = -energy
            done = frozen(a, energy)
            done.info = a.info
            da.add_relaxed_step(done)
            recorder.record(a, energy, generator="ga", opt_steps=opt_steps,
                            state={"ga_confid": int(a.info["confid"])})

        while da.get_number_of_unrelaxed_candidates() > 0:
            relax_and_add(da.get_an_unrelaxed_candidate())

        comparator = InteratomicDistanceComparator(n_top=n_top, pair_cor_cum_diff=0.015,
                                                   pair_cor_max=0.7 * bond,
                                                   dE=recorder.minima.energy_tol, mic=False)
        pairing = CutAndSplicePairing(slab, n_top, blmin, rng=rng)
        operators = [RattleMutation(blmin, n_top, rattle_strength=rattle, rng=rng)]
        if option(problem.options, "mirror", False, bool):
            operators.append(MirrorMutation(blmin, n_top, rng=rng))
        if len(elements) > 1:
            operators.append(PermutationMutation(n_top, rng=rng))
        mutations = OperationSelector([1.0] * len(operators), operators, rng=rng)
        population = Population(data_connection=da, population_size=pop_size,
                                comparator=comparator, rng=rng)
        failures = 0
        while True:
            recorder.check_budget()
            parents = population.get_two_candidates()
            if parents is None:
                # fewer than two distinct structures (all starts relaxed to one minimum):
                # add a fresh random start to the population instead
                extra_starts += 1
                fresh = start(pop_size + recorder.relaxations + extra_starts)
                fresh.info["key_value_pairs"] = {"generation": da.get_generation_number()}
                fresh.info["data"] = {"parents": []}
                da.add_unrelaxed_candidate(fresh, description="start: random")
                relax_and_add(da.get_an_unrelaxed_candidate())
                population.update()
                continue
            a1, a2 = parents
            child, desc = pairing.get_new_individual([a1, a2])
            if child is None:
                failures += 1
                if failures > 1000:
                    raise RuntimeError("the GA could not make a valid child in 1000 tries")
                continue
            da.add_unrelaxed_candidate(child, description=desc)
            if rng.random_sample() < p_mutation:
                mutant, desc = mutations.get_new_individual([child])
                if mutant is not None:
                    da.add_unrelaxed_step(mutant, description=desc)
                    child = mutant
            relax_and_add(child)
            population.update()
    finally:
        if scratch is not None:
            scratch.cleanup()
