"""Search machinery: generators, duplicates, call counting, GeneratorSearch (restart from its
database), relax_many, baselines and the search/compare CLI. LJ clusters and EMT keep it fast."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from ase import Atoms
from ase.cluster import Icosahedron
from ase.db import connect
from ase.optimize import BFGS, FIRE

from ase_mlgen.calculators.counting import CountingCalculator
from ase_mlgen.calculators.lennard_jones import FullLennardJones
from ase_mlgen.generators.base import StructureGenerator, as_rng, option, tag
from ase_mlgen.generators.random import RandomClusters, RandomCrystals
from ase_mlgen.search.generator_search import GeneratorSearch
from ase_mlgen.search.methods import MethodUnavailableError, load_method, register_method
from ase_mlgen.structures.similarity import KnownMinima, same_structure
from ase_mlgen.systems import LJ_BOND, LJ_MINIMA, parse_system

# ---------------------------------------------------------------- generators


def test_random_clusters_respect_distances_and_connectivity():
    gen = RandomClusters("Ga13", random_state=0)
    assert isinstance(gen, StructureGenerator)
    images = gen.generate(10)
    bond = 2 * 1.22
    for atoms in images:
        assert atoms.info["generator"] == "random" and not atoms.pbc.any()
        d = atoms.get_all_distances()
        np.fill_diagonal(d, np.inf)
        assert d.min() >= 0.7 * bond - 1e-9
        assert np.all(d.min(axis=1) <= 1.3 * bond + 1e-9)      # every atom has a neighbour
        assert np.allclose(atoms.positions.mean(axis=0), 0.0)
    # repeatable with a seed, different from call to call
    again = RandomClusters("Ga13", random_state=0).generate(10)
    assert np.allclose(images[3].positions, again[3].positions)
    assert not np.allclose(images[0].positions, images[1].positions)
    a, b = gen.generate(1, rng=5)[0], gen.generate(1, rng=np.random.default_rng(5))[0]
    assert np.allclose(a.positions, b.positions)


def test_random_crystals_fixed_cell_and_density():
    cell = np.eye(3) * 4.0
    for atoms in RandomCrystals("Cu4", cell=cell, random_state=1).generate(3):
        assert atoms.pbc.all() and np.allclose(atoms.cell.array, cell)
        d = atoms.get_all_distances(mic=True)
        np.fill_diagonal(d, np.inf)
        assert d.min() >= 0.7 * 2 * 1.32 - 1e-9
    gen = RandomCrystals("Si2O4", volume_per_atom=20.0, random_state=2)
    for atoms in gen.generate(3):
        assert atoms.get_volume() == pytest.approx(6 * 20.0)
        assert atoms.get_chemical_formula() == "O4Si2"


def test_generator_helpers():
    assert tag(Atoms("H"), "x", predicted_energy=np.float32(1.5)).info == \
        {"generator": "x", "predicted_energy": 1.5}
    assert option({"a": "0.5", "b": "yes"}, "a", 1.0) == 0.5
    assert option({"b": "yes"}, "b", False) is True
    assert option({}, "c", 3) == 3
    with pytest.raises(ValueError, match="boolean"):
        option({"b": "maybe"}, "b", False)
    with pytest.raises(TypeError):
        as_rng("seed")


# ---------------------------------------------------------------- duplicates


def _lj13():
    atoms = Icosahedron("Ar", 2)
    atoms.positions *= LJ_BOND / atoms.get_distance(0, 1)
    atoms.calc = FullLennardJones()
    BFGS(atoms, logfile=None).run(fmax=1e-4)
    return atoms


def test_duplicates_invariant_to_rotation_translation_permutation():
    a = _lj13()
    energy = a.get_potential_energy()
    assert energy == pytest.approx(LJ_MINIMA[13], abs=1e-5)
    b = a.copy()
    b.rotate(37, (1, 2, 3), center="COM")
    b.translate([3, -1, 2])
    b = b[np.random.default_rng(0).permutation(len(b))]
    minima = KnownMinima(energy_tol=0.01)
    assert minima.add(a, energy) == 0
    assert minima.match(b, energy + 0.005) == 0
    assert minima.match(b, energy + 0.05) is None                   # outside the energy window
    assert same_structure(a, b) and same_structure(a, b, "rdf")
    other = a.copy()
    other.positions[0] += [0.6, 0, 0]                              # a different structure
    assert minima.match(other, energy) is None
    index, new = minima.match_or_add(other, energy)
    assert new and index == 1 and len(minima) == 2


def test_periodic_fingerprint():
    from ase.build import bulk

    fcc, bcc = bulk("Cu", "fcc", a=3.6, cubic=True), bulk("Cu", "bcc", a=2.9, cubic=True)
    shifted = fcc.copy()
    shifted.translate([0.3, 0.2, 0.1])
    shifted.wrap()
    assert same_structure(fcc, shifted)
    assert not same_structure(fcc, bcc.repeat((1, 1, 2)))


# ---------------------------------------------------------------- counting


class SelfCountingLJ(FullLennardJones):
    evaluations = 0

    def calculate(self, *args, **kwargs):
        SelfCountingLJ.evaluations += 1
        super().calculate(*args, **kwargs)


@pytest.mark.parametrize("optimizer", [BFGS, FIRE])
def test_counting_agrees_with_ase(optimizer):
    atoms = Icosahedron("Ar", 2)
    atoms.positions *= 1.1 / atoms.get_distance(0, 1)
    atoms.rattle(0.05, seed=3)
    SelfCountingLJ.evaluations = 0
    atoms.calc = CountingCalculator(SelfCountingLJ())
    opt = optimizer(atoms, logfile=None)
    opt.run(fmax=0.01, steps=300)
    counter = atoms.calc.counter
    assert counter.calls == opt.nsteps + 1 == SelfCountingLJ.evaluations
    assert counter.force_calls == counter.energy_calls == counter.calls
    assert counter.seconds > 0
    reference = atoms.copy()
    reference.calc = FullLennardJones()
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy())
    assert np.allclose(atoms.get_forces(), reference.get_forces())
    assert counter.calls == opt.nsteps + 1                         # cached: no new call


# ---------------------------------------------------------------- GeneratorSearch


def _lj_search(n=7, **kwargs):
    atoms = Atoms(f"Ar{n}")
    atoms.calc = FullLennardJones()
    gen = RandomClusters(atoms, bond_length=LJ_BOND)
    return GeneratorSearch(atoms, gen, logfile=None, trajectory=None, name="random", **kwargs)


def test_generator_search_finds_lj7_and_counts_duplicates(tmp_path):
    traj = tmp_path / "lowest.traj"
    search = _lj_search(7, seed=1)
    search._lowest_path = str(traj)
    seen = []
    search.attach(lambda: seen.append(search.nsteps), interval=2)
    search.run(25)
    energy, best = search.get_minimum()
    assert energy == pytest.approx(LJ_MINIMA[7], abs=1e-3)
    assert best.get_chemical_formula() == "Ar7"
    rec = search.recorder
    assert rec.relaxations == 25 and search.nsteps == 25
    assert len(search.minima) + rec.duplicates == 25 and rec.duplicates > 0
    assert len(search.minima) <= 4                                 # LJ7 has 4 minima
    assert seen == list(range(2, 26, 2))
    assert [h["relaxations"] for h in rec.history] == sorted(h["relaxations"]
                                                             for h in rec.history)
    assert rec.history[-1]["energy"] == energy
    assert search.todict()["generator"] == "random"
    from ase.io import read

    assert read(traj, ":")[-1].get_potential_energy() == pytest.approx(energy)


class _ObservingGenerator:
    """Random LJ clusters that remember what the search reports back."""

    def __init__(self, template):
        self.inner = RandomClusters(template, bond_length=LJ_BOND)
        self.seen = []

    def generate(self, n, rng=None):
        return self.inner.generate(n, rng=rng)

    def observe(self, atoms, energy):
        self.seen.append((len(atoms), energy))


def test_generator_search_reports_minima_to_observe():
    atoms = Atoms("Ar6", positions=np.zeros((6, 3)))
    atoms.calc = FullLennardJones()
    gen = _ObservingGenerator(atoms)
    search = GeneratorSearch(atoms, gen, logfile=None, trajectory=None, name="random")
    search.run(4)
    assert [n for n, _ in gen.seen] == [6, 6, 6, 6]
    assert min(e for _, e in gen.seen) == pytest.approx(search.get_minimum()[0])


class _FixedGenerator:
    """Always the same start; ``fmax`` (eV/Å) goes into its info when given."""

    name = "fixed"

    def __init__(self, atoms, fmax=None):
        self.atoms, self.fmax = atoms, fmax

    def generate(self, n, rng=None):
        out = []
        for _ in range(n):
            a = tag(self.atoms.copy(), "fixed")
            if self.fmax is not None:
                a.info["relax_fmax"] = self.fmax
            out.append(a)
        return out


def test_generator_search_relaxes_tighter_when_a_candidate_asks():
    """A candidate's info["relax_fmax"] tighter than the search's is honoured (and counted as one
    relaxation); a looser one is not; a non-positive one is refused."""
    start = Icosahedron("Ar", 2, latticeconstant=1.55)
    start.rattle(0.05, seed=1)

    def max_force(fmax):
        atoms = start.copy()
        atoms.calc = FullLennardJones()
        search = GeneratorSearch(atoms, _FixedGenerator(start, fmax), fmax=0.05, logfile=None,
                                 trajectory=None)
        search.run(1)
        assert search.recorder.relaxations == 1
        return float(np.linalg.norm(search.atoms.get_forces(), axis=1).max())

    loose, tight = max_force(None), max_force(1e-4)
    assert 1e-4 < loose < 0.05 and tight < 1e-4
    assert max_force(1.0) == pytest.approx(loose)
    with pytest.raises(ValueError, match="fmax"):
        max_force(0.0)


def test_generator_search_restarts_from_db(tmp_path):
    db = tmp_path / "search.db"
    full = _lj_search(6, seed=4, db=str(tmp_path / "ref.db"), batch_size=2)
    full.run(7)
    first = _lj_search(6, seed=4, db=str(db), batch_size=2)
    first.run(3)                                                   # "interrupted" mid-batch
    second = _lj_search(6, db=str(db), batch_size=2)               # seed adopted from the db
    assert second.seed == 4 and second.nsteps == 3 and second.recorder.relaxations == 3
    second.run(4)
    ref_rows = list(connect(tmp_path / "ref.db").select(relaxed=1, sort="step"))
    rows = list(connect(db).select(relaxed=1, sort="step"))
    assert [r.step for r in rows] == list(range(7))                # none lost, none repeated
    assert np.allclose([r.energy for r in rows], [r.energy for r in ref_rows])
    assert second.recorder.calls == full.recorder.calls
    assert len(second.minima) == len(full.minima)
    assert second.get_minimum()[0] == pytest.approx(full.get_minimum()[0])
    candidates = list(connect(db).select(relaxed=0))
    assert len(candidates) == 7
    for row in rows:
        assert {"search", "generator", "seed", "step", "relaxed", "duplicate_of"} <= \
            set(row.key_value_pairs)
        assert row.duplicate_of == 0 or connect(db).get(id=row.duplicate_of).duplicate_of == 0


def test_generator_search_rejects_bad_input():
    atoms = Atoms("Ar5")
    with pytest.raises(ValueError, match="calculator"):
        GeneratorSearch(atoms, RandomClusters("Ar5"))
    atoms.calc = FullLennardJones()
    with pytest.raises(TypeError, match="generate"):
        GeneratorSearch(atoms, object())
    search = GeneratorSearch(atoms, RandomClusters("Ar6"), logfile=None, trajectory=None)
    with pytest.raises(ValueError, match="6 atoms"):
        search.run(1)


# ---------------------------------------------------------------- relax_many


def test_relax_many_stores_and_skips_done(tmp_path):
    from ase_mlgen.search.relax import image_key, relax_many

    images = RandomClusters("Cu5", random_state=0).generate(4)
    db = str(tmp_path / "relax.db")
    with ThreadPoolExecutor(2) as pool:
        part = relax_many(images[:2], "emt", fmax=0.05, steps=300, db=db, executor=pool,
                          progress=False)
    assert all(a.info["converged"] for a in part)
    with ThreadPoolExecutor(2) as pool:
        relaxed = relax_many(images, "emt", fmax=0.05, steps=300, db=db, executor=pool,
                             progress=False)
    rows = list(connect(db).select(relaxed=1))
    assert len(rows) == 4                                          # the first two not redone
    assert {r.relax_key for r in rows} == {image_key(a) for a in images}
    for a, b in zip(part, relaxed[:2]):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy())
    assert np.abs(relaxed[3].get_forces()).max() < 0.06


def test_relax_many_process_pool():
    from ase_mlgen.search.relax import relax_many

    images = RandomClusters("Cu4", random_state=1).generate(2)
    relaxed = relax_many(images, "emt", fmax=0.05, steps=200, max_workers=2, progress=False)
    assert len(relaxed) == 2 and all(a.info["calls"] >= 1 for a in relaxed)


# ---------------------------------------------------------------- methods, baselines, CLI


def test_unavailable_method_names_what_to_install():
    register_method("nothing_here", "ase_mlgen.not_a_module:make_search_generator")
    with pytest.raises(MethodUnavailableError, match="cannot import"):
        load_method("nothing_here")
    with pytest.raises(ValueError, match="unknown search method"):
        load_method("nope")
    assert load_method("random").kind == "generator"


def test_systems():
    lj = parse_system("LJ13")
    assert lj.known_minimum == LJ_MINIMA[13] and lj.default_calculator == "lj"
    ga = parse_system("Ga13")
    assert len(ga.template) == 13 and ga.template.info["bond_length"] > 2
    with pytest.raises(ValueError, match="cannot understand"):
        parse_system("not a system")


@pytest.mark.parametrize("method", ["random", "bh", "mh", "ga"])
def test_every_method_counts_the_same_way(method, tmp_path):
    if method == "ga":
        pytest.importorskip("ase_ga", reason="the GA needs ase-ga (extra 'ga')")
    from ase_mlgen.search.runner import run_search

    db = str(tmp_path / "out.db")
    SelfCountingLJ.evaluations = 0
    report = run_search(method, "LJ5", SelfCountingLJ(), budget=3, seed=0, db=db)
    assert report["relaxations"] == 3
    # the wrapper's calls are the wrapped calculator's own evaluations, MD steps included (mh)
    assert report["calls"] == SelfCountingLJ.evaluations > 3
    assert report["seconds"] > report["calculator_seconds"] > 0
    assert report["best_energy"] == pytest.approx(report["history"][-1]["energy"])
    assert report["best_energy"] <= -8.9                          # LJ5 minimum -9.103852
    rows = list(connect(db).select(relaxed=1, search=method))
    assert len(rows) == 3 and sum(r.duplicate_of == 0 for r in rows) == report["n_minima"]
    assert rows[-1].total_calls == report["calls"]
    assert sum(r.calls for r in rows) <= report["calls"]          # mh: MD calls between rows
    if method != "mh":                                            # one FIRE run per row:
        assert all(r.calls == r.opt_steps + 1 for r in rows)      # FIRE's steps + 1


class _Interrupt(Exception):
    pass


def _interrupt_after(k):
    def observer(recorder, record):
        if recorder.relaxations == k:
            raise _Interrupt(f"stopped after {k} relaxations")
    return observer


@pytest.mark.parametrize("method", ["random", "bh", "ga"])
def test_interrupted_run_resumes_from_db(method, tmp_path):
    if method == "ga":
        pytest.importorskip("ase_ga", reason="the GA needs ase-ga (extra 'ga')")
    from ase_mlgen.search.runner import run_search

    budget, k = 9, 4
    full = run_search(method, "LJ7", "lj", budget=budget, seed=3, db=str(tmp_path / "ref.db"))
    db = str(tmp_path / "run.db")
    with pytest.raises(_Interrupt):
        run_search(method, "LJ7", "lj", budget=budget, seed=3, db=db,
                   observers=[_interrupt_after(k)])
    assert len(list(connect(db).select(relaxed=1))) == k
    resumed = run_search(method, "LJ7", "lj", budget=budget, seed=3, db=db)
    assert resumed["relaxations"] == budget
    rows = list(connect(db).select(relaxed=1, sort="step"))
    assert [r.step for r in rows] == list(range(budget))           # none lost, none repeated
    assert [r.total_calls for r in rows] == list(np.cumsum([r.calls for r in rows]))
    assert resumed["calls"] == rows[-1].total_calls
    if method == "ga":                                             # GA state next to our db
        assert (tmp_path / "run.ga-3.db").exists()
        assert len({r.data["ga_confid"] for r in rows}) == budget
        return
    # random and bh continue exactly: the same relaxations as an uninterrupted run
    ref = list(connect(tmp_path / "ref.db").select(relaxed=1, sort="step"))
    assert np.allclose([r.energy for r in rows], [r.energy for r in ref])
    assert [r.calls for r in rows] == [r.calls for r in ref]
    assert resumed["calls"] == full["calls"]
    assert resumed["best_energy"] == pytest.approx(full["best_energy"])
    assert [(h["relaxations"], h["calls"]) for h in resumed["history"]] == \
        [(h["relaxations"], h["calls"]) for h in full["history"]]
    assert [h["energy"] for h in resumed["history"]] == \
        pytest.approx([h["energy"] for h in full["history"]])


def test_cli_search_and_compare(tmp_path, capsys):
    from ase_mlgen.cli.main import main

    outs = []
    for method in ("random", "bh"):
        out = tmp_path / f"{method}.json"
        assert main(["search", method, "--system", "LJ7", "--budget", "3", "--seed", "0",
                     "--json", str(out), "--db", str(tmp_path / "out.db"),
                     "--option", "packing=0.3"]) == 0
        outs.append(str(out))
        report = json.loads(out.read_text())
        for key in ("best_energy", "n_minima", "relaxations", "calls", "seconds", "history",
                    "method", "system", "seed", "settings", "machine"):
            assert key in report
        assert set(report["history"][0]) >= {"relaxations", "calls", "seconds", "energy"}
    png = tmp_path / "curves.png"
    assert main(["compare", *outs, "--png", str(png)]) == 0
    assert png.stat().st_size > 0
    assert "random" in capsys.readouterr().out
    assert main(["search", "random", "--system", "LJ7", "--option", "oops"]) == 2


# ---------------------------------------------------------------- DFT


@pytest.mark.gpaw
def test_gpaw_relaxes_na2():
    pytest.importorskip("gpaw", reason="needs GPAW (extra 'dft')")
    from ase_mlgen.calculators.dft import gpaw_cluster_calculator

    atoms = Atoms("Na2", positions=[[0, 0, 0], [0, 0, 3.35]])       # no cell: boxed for GPAW
    atoms.calc = CountingCalculator(gpaw_cluster_calculator(vacuum=3.0, h=0.3,
                                                            basis="sz(dzp)"))
    opt = BFGS(atoms, logfile=None)
    assert opt.run(fmax=0.05, steps=15)
    assert 2.9 < atoms.get_distance(0, 1) < 3.3                     # Na2 bond ≈ 3.08 Å (PBE)
    assert atoms.calc.counter.calls == opt.nsteps + 1
    assert atoms.cell.rank == 0                                    # caller's atoms untouched
