"""MeGen: placement rules and penalty, equivariance of the actor-critic, exact direction
sampling on the grid, PPO updates with checkpoint/resume, seeded and iterative generation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.cluster import Icosahedron
from e3nn import o3

from ase_mlgen.generators.megen import (BatchGrowthEnv, DuplicateFilter, MeGen, MeGenPolicy,
                                        PlacementRules, dimer, make_search_generator, unique)
from ase_mlgen.generators.megen.duplicates import same_by_distances_and_angles

torch.set_num_threads(1)


def _cluster(n=12, element="Ga", seed=0):
    atoms = Icosahedron(element, 2, latticeconstant=3.9 if element == "Ga" else None)[:n]
    atoms.rattle(0.05, seed=seed)
    return atoms


class _PairCalc:
    """A tiny calculator with the batched ``predict`` of DART: −1 eV per pair closer than 3.2 Å."""

    def __init__(self):
        self.calls = 0

    def predict(self, images):
        self.calls += 1
        return np.array([-(np.triu(a.get_all_distances() < 3.2, 1)).sum() for a in images],
                        dtype=float)


# -- environment ---------------------------------------------------------------------------
def test_placement_rules_ga_windows():
    rules = PlacementRules.ga()
    canvas = np.array([[[0.0, 0, 0], [2.7, 0, 0], [99, 99, 99]]])
    mask = np.array([[True, True, False]])
    apex = np.array([[1.35, 2.7 * math.sqrt(3) / 2, 0.0]])        # 2.7 Å from both
    too_close = np.array([[1.35, 0.5, 0.0]])
    only_one = np.array([[-2.7, 0.0, 0.0]])                        # 2nd neighbour at 5.4 Å
    assert rules.valid(apex, canvas, mask).all()
    assert not rules.valid(too_close, canvas, mask).any()
    assert not rules.valid(only_one, canvas, mask).any()
    # a single-atom canvas applies the first-neighbour window only
    one = np.array([[[0.0, 0, 0]]])
    assert rules.valid(np.array([[0, 0, 2.5]]), one, np.ones((1, 1), bool)).all()
    assert not rules.valid(np.array([[0, 0, 3.5]]), one, np.ones((1, 1), bool)).any()


def test_rules_from_structures_follow_the_data():
    rules = PlacementRules.from_structures([_cluster(13, "Cu")])
    lo, hi = rules.windows[0]
    assert lo < 2.55 < hi and hi - lo < 1.0


def test_env_penalty_and_reward():
    calc = _PairCalc()
    env = BatchGrowthEnv(calc)
    seeds = [dimer(), dimer()]
    env.reset(seeds, [["Ga"], ["Ga"]])
    up = np.array([[math.sqrt(3) / 2, 0.0, 0.5], [0.0, 0.0, 1.0]])  # apex; along the axis
    rewards, done, valid = env.step(np.array([0, 1]), np.array([2.7, 2.7]), up)
    assert valid.tolist() == [True, False]
    assert rewards[1] == PlacementRules.ga().penalty
    assert rewards[0] == pytest.approx(2.0)                         # two new pairs, −ΔE
    assert done.all() and len(env.episodes[0].canvas) == 3 and len(env.episodes[1].canvas) == 2
    assert calc.calls == 2                                          # seeds, then one batch


# -- policy --------------------------------------------------------------------------------
@pytest.mark.parametrize("focal", ["random", "learned"])
def test_rotation_covariance(focal):
    torch.manual_seed(0)
    policy = MeGenPolicy(focal=focal, n_directions=512).eval()
    a = _cluster(11)
    R = o3.rand_matrix()
    b = a.copy()
    b.positions = a.positions @ R.numpy().T + np.array([1.0, -2.0, 0.5])
    with torch.no_grad():
        ga, gb = policy.make_batch([a], [["Ga"]]), policy.make_batch([b], [["Ga"]])
        oa = policy(ga)
        ob = policy(gb, focal=oa["focal"], distance=oa["distance"], dir_index=oa["dir_index"])
        assert torch.allclose(oa["value"], ob["value"], atol=1e-5)
        assert torch.allclose(oa["log_prob_distance"], ob["log_prob_distance"], atol=1e-5)
        assert torch.allclose(oa["log_prob_focal"], ob["log_prob_focal"], atol=1e-5)
        ha, _ = policy.encode(ga)
        hb, _ = policy.encode(gb)
        f, d = int(oa["focal"]), oa["distance"]
        ca = policy.direction_coefficients(ha[f:f + 1], d)
        cb = policy.direction_coefficients(hb[f:f + 1], d)
        x = torch.randn(200, 3)
        x = x / x.norm(dim=1, keepdim=True)
        la = policy.direction_logits(ca, x)
        lb = policy.direction_logits(cb, x @ R.T)              # rotated directions, rotated canvas
        assert torch.allclose(la, lb, atol=1e-4)
        assert la.std() > 1e-3                                  # the distribution is not flat
        # the coefficients rotate with the Wigner matrices of the irreps
        D = policy.irreps_dir.D_from_matrix(R)
        assert torch.allclose(cb, ca @ D.T, atol=1e-4)


def test_direction_sampling_is_normalised_on_the_grid():
    torch.manual_seed(1)
    policy = MeGenPolicy(n_directions=1024).eval()
    g = policy.make_batch([_cluster(9), _cluster(5)], [["Ga"], ["Ga"]])
    with torch.no_grad():
        h, ctx = policy.encode(g)
        out = policy(g)
        h_f = h[g.offsets + out["focal"]]
        logits = policy.direction_logits(policy.direction_coefficients(h_f, out["distance"]))
        logp = torch.log_softmax(logits, -1)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2), atol=1e-5)
    # the sampled direction's log-probability is exactly the grid log-probability
    assert torch.allclose(out["log_prob_direction"],
                          logp.gather(1, out["dir_index"][:, None]).squeeze(1), atol=1e-5)
    assert torch.allclose(out["direction"], policy.grid[out["dir_index"]])
    # as a density per steradian it integrates to one (equal-area grid)
    density = (logp + policy.log_density_offset()).exp()
    assert torch.allclose(density.mean(-1) * 4 * math.pi, torch.ones(2), atol=1e-4)
    # the distance mixture integrates to one over d
    d = torch.linspace(0.0, 8.0, 4001)
    with torch.no_grad():
        logw, means, sigma = policy.distance_mixture(h_f[:1].expand(len(d), -1),
                                                     ctx[:1].expand(len(d), -1))
        p = policy.mixture_log_prob(d, logw, means, sigma).exp()
    assert float(torch.trapezoid(p, d)) == pytest.approx(1.0, abs=1e-3)


# -- training ------------------------------------------------------------------------------
def test_ppo_updates_checkpoint_and_resume(tmp_path):
    seeds = [Icosahedron("Cu", 2)[:k] for k in (6, 9)]
    megen = MeGen(element="Cu", random_state=0, policy_kwargs={"n_directions": 256})
    run = tmp_path / "run"
    megen.train(run, seeds=seeds, calculator="emt", iterations=2, episodes=8, minibatch=8,
                ppo_epochs=1, max_atoms=12)
    assert (run / "checkpoint_last.pt").exists() and (run / "curve.png").exists()
    megen.train(run, calculator="emt", iterations=3, episodes=8, minibatch=8, ppo_epochs=1,
                max_atoms=12, resume=True)
    records = [line for line in (run / "log.jsonl").read_text().splitlines() if line]
    assert len(records) == 3                                     # 2 + 1 more, nothing repeated
    loaded = MeGen.load(run / "checkpoint_last.pt")
    assert loaded.element == "Cu"
    from ase_mlgen.jobs import RunDirectory

    assert RunDirectory(run).summary()["state"] == "done"


# -- generation ----------------------------------------------------------------------------
def test_generate_returns_n_atom_clusters_that_obey_the_rules(tmp_path):
    seeds = [_cluster(7, seed=s) for s in range(3)]
    megen = MeGen(seeds=seeds, random_state=0)
    out = megen.generate(10)
    assert len(out) == 10 and all(len(a) == 8 for a in out)
    assert all(a.info["generator"] == "megen" for a in out)
    rules = megen.rules
    for a in out:
        d = np.sort(np.linalg.norm(a.positions[:-1] - a.positions[-1], axis=1))
        assert rules.windows[0][0] <= d[0] <= rules.windows[0][1]
    # save / load round trip and refusal of foreign files
    path = megen.save(tmp_path / "megen.pt")
    assert len(MeGen.load(path, seeds=seeds).generate(2)) == 2
    torch.save({"foo": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a MeGen"):
        MeGen.load(tmp_path / "bad.pt")


def test_oversample_screens_with_a_batched_predict():
    megen = MeGen(seeds=[_cluster(7)], calculator=_PairCalc(), oversample=4, random_state=0)
    out = megen.generate(5)
    assert len(out) == 5 and all("predicted_energy" in a.info for a in out)
    megen.predicted_tol = 1e-6      # lowest distinct predicted levels first
    e = [a.info["predicted_energy"] for a in megen.generate(6)]
    levels = sorted(set(e))
    assert e[:len(levels)] == levels


def test_iterative_growth_from_scratch():
    from ase.calculators.emt import EMT

    megen = MeGen(element="Cu", random_state=0, policy_kwargs={"n_directions": 256})
    result = megen.iterate(5, relax_calculator=EMT(), per_size=4, keep=2, fmax=0.1, steps=100)
    assert sorted(result) == [3, 4, 5]
    assert all(len(m) == 5 for m in result[5])
    energies = [m.info["energy"] for m in result[5]]
    assert energies == sorted(energies)


def test_search_generator_factory():
    gen = make_search_generator(Atoms("Ga8"), 0, {})
    out = gen.generate(3, rng=np.random.default_rng(0))
    assert [len(a) for a in out] == [8, 8, 8]
    gen.observe(out[0], -10.0)
    assert len(gen.generate(2)) == 2
    with pytest.raises(ValueError, match="mono-elemental"):
        make_search_generator(Atoms("GaCu"), 0, {})


def test_search_generator_screens_lowest_first_and_reseeds_from_minima():
    from ase_mlgen.generators.megen import SearchMeGen

    calc = _PairCalc()
    seeds = [_cluster(7, seed=s) for s in range(2)]
    megen = MeGen(calculator=calc, random_state=0, policy_kwargs={"n_directions": 256})
    gen = SearchMeGen(megen, 8, seeds=seeds, screen=24, reseed="both", random_state=0,
                      site_tol=0.15)
    first = gen.generate(3)
    energies = [a.info["predicted_energy"] for a in first]
    assert energies == sorted(energies) and megen.n_reward_calls >= 3
    assert energies[0] == min(calc.predict(gen._queue + first))   # nothing better left queued
    served = first + gen.generate(3)
    assert len(unique(served, energy_tol=None)) == 6            # never the same candidate twice
    levels = SearchMeGen(megen, 8, seeds=seeds, screen=24, predicted_tol=1e-6, random_state=0)
    picked = [a.info["predicted_energy"] for a in levels.generate(4)]
    assert len(set(picked)) == len(picked)                      # one per predicted level
    gen.observe(_cluster(8, seed=5), -10.0)                     # a minimum: relocation seeds too
    assert len(gen._seed_pool(None)) > len(seeds)
    with pytest.raises(ValueError, match="reward calculator"):
        SearchMeGen(MeGen(random_state=0), 8, seeds=seeds, screen=4)


def test_search_generator_regrows_larger_patches_while_stalled():
    """regrow=K: after ``patience`` relaxations without a new lowest energy the relocation seeds
    lose a patch of 2, …, K atoms of which the policy regrows all but one; a new lowest energy
    brings the move back to one atom."""
    from ase_mlgen.generators.megen import SearchMeGen

    minimum = _cluster(10, seed=3)
    gen = SearchMeGen(MeGen(random_state=0), 10, regrow=3, patience=2, random_state=0)
    gen.observe(minimum, -20.0)
    assert gen.patch_size == 1
    kept = [len(_matching_atoms(s, minimum)) for s in gen._seed_pool(None)]
    assert kept and set(kept) == {9}                      # one atom removed, none added
    other = minimum.copy()
    for k in range(2):                                    # two relaxations, no better energy
        other.positions[0] += 0.7
        gen.observe(other, -10.0 - k)              # far above the window: not in the pool
    assert gen.patch_size == 2
    seeds = gen._seed_pool(None)
    assert {len(s) for s in seeds} == {9}
    assert {len(_matching_atoms(s, minimum)) for s in seeds} == {8}   # patch of 2, one regrown
    for k in range(2):
        other.positions[1] += 0.7
        gen.observe(other, -10.5 - k)
    assert gen.patch_size == 3
    assert {len(_matching_atoms(s, minimum)) for s in gen._seed_pool(None)} == {7}
    gen.observe(minimum.copy(), -20.5)                    # a new lowest energy
    assert gen.patch_size == 1
    with pytest.raises(ValueError, match="regrow"):
        SearchMeGen(MeGen(random_state=0), 10, regrow=9)


def test_search_generator_temperature_orders_screened_candidates_by_boltzmann_weight():
    from ase_mlgen.generators.megen import SearchMeGen

    energies = np.array([0.3, 0.0, 0.1, 0.2])
    greedy = SearchMeGen(MeGen(random_state=0), 8, random_state=0)
    assert greedy._screen_order(energies, None).tolist() == [1, 2, 3, 0]
    warm = SearchMeGen(MeGen(random_state=0), 8, temperature=0.1, random_state=0)
    firsts = np.array([warm._screen_order(energies, None)[0] for _ in range(4000)])
    share = np.bincount(firsts, minlength=4) / len(firsts)
    weights = np.exp(-energies / 0.1) / np.exp(-energies / 0.1).sum()
    assert np.allclose(share, weights, atol=0.03)     # first pick ~ exp(-E/T)
    assert sorted(warm._screen_order(energies, None).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="temperature"):
        SearchMeGen(MeGen(random_state=0), 8, temperature=-1.0)


def _matching_atoms(seed, minimum, tol=1e-6):
    """Indices of ``seed`` atoms that sit on an atom of ``minimum`` after the best translation
    (growth re-centres a cluster; Å)."""
    best = np.array([], dtype=int)
    for shift in (minimum.positions[:, None] - seed.positions[None]).reshape(-1, 3):
        d = np.linalg.norm(seed.positions[:, None] + shift - minimum.positions[None], axis=-1)
        hits = np.nonzero(d.min(axis=1) < tol)[0]
        if len(hits) > len(best):
            best = hits
    return best


def test_search_generator_pool_merges_one_basin_split_by_the_angle_cutoff():
    """One basin relaxed twice, a bond on either side of the 3.1 Å angle cut-off: the paper's
    criterion calls the two distinct, the seed pool keeps one of them."""
    from ase_mlgen.generators.megen import SearchMeGen
    from ase_mlgen.generators.megen.duplicates import NEIGHBOUR_CUTOFF

    a = _cluster(13)
    d = a.get_all_distances()
    i, j = np.unravel_index(np.argmin(np.abs(d - NEIGHBOUR_CUTOFF) + np.eye(13) * 9), d.shape)
    a.positions *= (NEIGHBOUR_CUTOFF - 0.005) / d[i, j]           # bond i-j just inside
    b = a.copy()
    b.positions[j] += 0.01 * (a.positions[j] - a.positions[i]) / (NEIGHBOUR_CUTOFF - 0.005)
    assert not same_by_distances_and_angles(a, b)                 # split by the cut-off
    gen = SearchMeGen(MeGen(random_state=0), 13, seeds=[a[:12]], reseed="both")
    gen.observe(a, -10.0)
    gen.observe(b, -10.005)
    assert len(gen.minima) == 1
    c = a.copy()
    c.positions[0] += [0.6, 0.0, 0.0]                              # another basin
    gen.observe(c, -10.01)
    assert len(gen.minima) == 2


# -- duplicates ----------------------------------------------------------------------------
def test_duplicates_paper_and_fingerprint():
    a = _cluster(13)
    b = a.copy()
    b.rotate(40, "x")
    b.translate([1, 2, 3])
    b = b[np.random.default_rng(0).permutation(len(b))]
    c = a.copy()
    c.positions[0] += [0.6, 0.0, 0.0]
    assert same_by_distances_and_angles(a, b) and not same_by_distances_and_angles(a, c)
    for method in ("paper", "fingerprint"):
        assert len(unique([a, b, c], method=method, energy_tol=None)) == 2
    filt = DuplicateFilter("paper", energy_tol=0.01)
    a.info["energy"], b.info["energy"] = -1.0, -1.5
    assert filt.add(a) and filt.add(b)                          # energies differ: distinct


def test_site_filter_merges_nearby_and_symmetric_placements():
    from ase_mlgen.generators.megen import SiteFilter

    seed = Icosahedron("Ga", 2, latticeconstant=3.9)            # 13 atoms, Ih symmetric
    top = seed.positions[1] * 1.9                                 # on top of a surface atom
    filt = SiteFilter(0.15)
    grow = lambda p: seed + Atoms("Ga", positions=[p])            # noqa: E731
    assert filt.add(grow(top))
    assert not filt.add(grow(top + [0.1, 0.0, 0.0]))              # 0.1 Å away: same site
    moved = grow(seed.positions[2] * 1.9)                         # a symmetry-equivalent site
    moved.rotate(30, "z")
    moved.translate([1.0, 2.0, 3.0])
    assert not filt.add(moved)
    assert filt.add(grow(seed.positions[1] * 1.9 + seed.positions[2] * 1.9))  # elsewhere
    other = seed.copy()
    other.positions[0] += 0.3                                     # a different seed
    assert filt.add(other + Atoms("Ga", positions=[top]))


def test_cli_train_megen_and_status(tmp_path, capsys):
    from ase_mlgen.cli.main import main

    run = tmp_path / "cli"
    assert main(["train", "megen", "--calc", "emt", "--element", "Cu", "--out", str(run),
                 "--iterations", "1", "--episodes", "4", "--max-atoms", "5",
                 "--threads", "1"]) == 0
    assert main(["status", str(run)]) == 0
    assert "done" in capsys.readouterr().out


def test_placement_mask_keeps_sampled_directions_valid():
    """With the placement windows as a mask, every sampled placement at a distance inside the
    first window obeys the rules (an untrained policy would break them often)."""
    import torch
    from ase.cluster import Icosahedron

    from ase_mlgen.generators.megen.env import PlacementRules
    from ase_mlgen.generators.megen.policy import MeGenPolicy

    rules = PlacementRules.ga()
    canvas = Icosahedron("Ga", 2, latticeconstant=4.0)   # 13 atoms, bonds ~2.8 Å
    canvases = [canvas] * 48
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    results = {}
    probe = MeGenPolicy(species=["Ga"], bond_length=rules.bond_length, windows=rules.windows)
    for masked in (False, True):
        policy = MeGenPolicy(species=["Ga"], bond_length=rules.bond_length,
                             windows=rules.windows if masked else None).eval()
        with torch.no_grad():
            g = policy.make_batch(canvases, [["Ga"]] * 48)
            act = policy(g, generator=gen)
        pos = canvas.positions
        new = pos[act["focal"].numpy()] + act["distance"].numpy()[:, None] * \
            act["direction"].numpy()
        ok = rules.valid(new, np.repeat(pos[None], 48, 0), np.ones((48, len(pos)), bool))
        d = act["distance"].numpy()
        # samples for which some grid direction obeys the rules (none does at the centre atom)
        with torch.no_grad():
            m = probe.placement_mask(g, act["focal"], act["distance"], fallback=False)
        reachable = m.any(-1).numpy()
        inside = reachable
        assert inside.sum() >= 10 and d.std() > 0
        results[masked] = ok[inside].mean()
        assert np.isfinite(act["log_prob"].numpy()).all()
        assert np.isfinite(act["entropy"].numpy()).all()
    assert results[True] == 1.0
    assert results[False] < 0.9


def test_hollow_sites_sit_at_the_radius_from_three_atoms():
    from ase_mlgen.generators.megen.hollow import hollow_sites

    tri = np.array([[0.0, 0, 0], [2.7, 0, 0], [1.35, 2.7 * math.sqrt(3) / 2, 0]])
    sites = hollow_sites(tri, 2.8)
    assert len(sites) == 2                                  # above and below the triangle
    for s in sites:
        np.testing.assert_allclose(np.linalg.norm(tri - s, axis=1), 2.8, atol=1e-9)
    assert hollow_sites(tri, 1.2) == []                     # smaller than the circumradius
    assert hollow_sites(tri, 2.8, edge_max=2.0) == []       # not a triangle of neighbours


def test_hollow_relocations_move_every_atom_or_the_weakest_bound():
    """Default: each atom of the minimum in turn is moved (the rest stays in place, the new atom
    last, three neighbours at the radius); ``n_remove=k``: only the k lowest-coordinated."""
    from ase_mlgen.generators.megen import PlacementRules
    from ase_mlgen.generators.megen.hollow import hollow_relocations

    minimum, rules = _cluster(10, seed=3), PlacementRules.ga()
    every = hollow_relocations(minimum, rules, 2.75)
    removed = {a.info["removed"] for a in every}
    assert len(removed) > 6                                  # more than the old "six weakest"
    for a in every:
        rest = [k for k in range(10) if k != a.info["removed"]]
        np.testing.assert_allclose(a.positions[:-1], minimum.positions[rest])
        d = np.sort(np.linalg.norm(a.positions[:-1] - a.positions[-1], axis=1))
        np.testing.assert_allclose(d[:3], 2.75, atol=1e-6)
    coordination = (minimum.get_all_distances() < rules.windows[0][1]).sum(1) - 1
    weakest = set(np.argsort(coordination, kind="stable")[:2].tolist())
    two = hollow_relocations(minimum, rules, 2.75, n_remove=2)
    assert two and {a.info["removed"] for a in two} <= weakest
    assert len(two) < len(every)
    with pytest.raises(ValueError, match="radius"):
        hollow_relocations(minimum, rules, 0.0)


def test_search_generator_keeps_the_lowest_copy_of_a_basin():
    """A relaxed copy of a known basin that is lower by more than BETTER_COPY_TOL replaces the
    kept copy (moves start from the better-converged one); higher or equal copies do not."""
    from ase_mlgen.generators.megen import SearchMeGen
    from ase_mlgen.generators.megen.generator import BETTER_COPY_TOL

    megen = MeGen(calculator=_PairCalc(), random_state=0)
    gen = SearchMeGen(megen, 10, screen=16, random_state=0)
    first = _cluster(10, seed=3)
    gen.observe(first, -20.0)
    worse, better, barely = first.copy(), first.copy(), first.copy()
    for k, a in enumerate((worse, better, barely)):
        a.rattle(0.002, seed=k)
    gen.observe(worse, -19.99)
    assert len(gen.minima) == 1 and gen.minima[0][0] == -20.0
    gen.observe(better, -20.005)
    assert len(gen.minima) == 1 and gen.minima[0][0] == -20.005
    np.testing.assert_allclose(gen.minima[0][1].positions, better.positions)
    gen.observe(barely, -20.005 - BETTER_COPY_TOL / 2)
    np.testing.assert_allclose(gen.minima[0][1].positions, better.positions)
    other = _cluster(10, seed=3)
    other.positions[0] += [0.0, 0.0, 1.5]                     # another basin: kept beside it
    gen.observe(other, -19.0)
    assert [e for e, _ in gen.minima] == [-20.005, -19.0]


def test_hollow_candidates_are_shifts_by_changed_prediction_then_relocations_lowest_first():
    """Shifts (new site < HOLLOW_SHIFT Å from the moved atom's place) come first, the largest
    change of predicted energy against the minimum's first, and are not thinned by predicted
    level; then relocations elsewhere, lowest predicted energy first."""
    from ase_mlgen.generators.megen import SearchMeGen
    from ase_mlgen.generators.megen.generator import HOLLOW_SHIFT

    calc = _PairCalc()
    minimum = _cluster(10, seed=3)
    megen = MeGen(calculator=calc, random_state=0, policy_kwargs={"n_directions": 256})
    gen = SearchMeGen(megen, 10, screen=16, hollow=2.75, patience=400, random_state=0)
    order = gen._hollow_order(minimum, np.random.default_rng(0))
    shift = [a.info["displacement"] < HOLLOW_SHIFT for a in order]
    assert any(shift) and not all(shift)
    assert shift == sorted(shift, reverse=True)               # every shift before any relocation
    own = calc.predict([minimum])[0]
    change = [abs(a.info["predicted_energy"] - own) for a, s in zip(order, shift) if s]
    assert change == sorted(change, reverse=True)
    levels = [a.info["predicted_energy"] for a, s in zip(order, shift) if s]
    assert len(set(levels)) < len(levels)                     # same level kept more than once
    far = [a.info["predicted_energy"] for a, s in zip(order, shift) if not s]
    assert far == sorted(far)


def test_search_generator_tries_hollow_relocations_of_the_lowest_minimum_when_stalled():
    """hollow=r: after ``patience`` relaxations without progress the lowest minimum is refined
    once, then the next candidates are the refined minimum with one atom moved onto a hollow
    site (each basin once)."""
    from ase_mlgen.generators.megen import SearchMeGen
    from ase_mlgen.generators.megen.generator import HOLLOW_CANDIDATES, REFINE_FMAX

    calc = _PairCalc()
    minimum = _cluster(10, seed=3)
    megen = MeGen(calculator=calc, random_state=0, policy_kwargs={"n_directions": 256})
    gen = SearchMeGen(megen, 10, screen=16, hollow=2.7, patience=2, random_state=0)
    gen.observe(minimum, -20.0)
    assert all(a.info.get("move") != "hollow" for a in gen.generate(2))   # not stalled yet
    for k in range(2):
        gen.observe(_cluster(10, seed=10 + k), -10.0 - k)
    first = gen.generate(2)        # stalled: the minimum itself, to be relaxed tightly, first
    assert first[0].info["move"] == "refine" and first[0].info["relax_fmax"] == REFINE_FMAX
    np.testing.assert_allclose(first[0].positions, minimum.positions)
    assert first[1].info.get("move") != "hollow"
    refined = minimum.copy()
    refined.rattle(0.002, seed=7)
    gen.observe(refined, -20.005)           # the refined copy replaces the kept one
    minimum = refined
    out = gen.generate(HOLLOW_CANDIDATES)
    assert [a.info.get("move") for a in out] == ["hollow"] * HOLLOW_CANDIDATES
    for a in out:
        assert len(_matching_atoms(a, minimum)) == 9        # one atom of the minimum moved
        d = np.sort(np.linalg.norm(a.positions[:-1] - a.positions[-1], axis=1))
        np.testing.assert_allclose(d[:3], 2.7, atol=1e-6)  # on a three-fold hollow site
    rest = gen.generate(10)
    assert not any(a.info.get("move") == "hollow" for a in rest)   # HOLLOW_CANDIDATES per basin
    better = minimum.copy()
    better.rattle(0.002, seed=5)
    gen.observe(better, -20.009)                     # a lower copy of the same basin replaces it
    assert gen.minima[0][1].positions.tolist() == better.positions.tolist()
    assert not any(a.info.get("move") == "hollow" for a in gen.generate(4))   # once per basin
    with pytest.raises(ValueError, match="screen"):
        SearchMeGen(MeGen(calculator=calc, random_state=0), 10, hollow=2.7)
