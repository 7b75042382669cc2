"""Fingerprint inversion: reconstruction, matching, cVAE, generator, data loader, CLI (fast)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from ase_mlgen.inversion.compare import cluster_rmsd, periodic_rmsd
from ase_mlgen.inversion.inverter import ACSFInverter, parse_numbers
from tests.conftest import small_acsf



def test_parse_numbers():
    assert list(parse_numbers("78x3")) == [78, 78, 78]
    assert list(parse_numbers("8,1,1")) == [8, 1, 1]
    assert list(parse_numbers("H2O")) == [1, 1, 8]
    assert list(parse_numbers(["O", 1])) == [8, 1]


def test_rmsd_is_invariant_to_rotation_reflection_permutation():
    a = molecule("CH3CH2OH")
    b = a.copy()
    b.rotate(37, (1, 2, 3))
    b.positions[:, 0] *= -1  # mirror image
    b.translate((1.0, -2.0, 0.5))
    b = b[np.random.default_rng(0).permutation(len(b))]
    assert cluster_rmsd(a, b) < 1e-6
    c = a.copy()
    c.positions[0] += (0.3, 0, 0)
    assert cluster_rmsd(a, c) > 0.01


def test_periodic_rmsd_translation_and_permutation():
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    b = a.copy()
    b.translate((0.7, 0.2, -0.4))
    b.wrap()
    b = b[[3, 1, 6, 0, 2, 5, 7, 4]]
    assert periodic_rmsd(a, b) < 1e-6


@pytest.mark.parametrize("pooling", [None, ("max", "min")])
def test_reconstruct_molecule(pooling):
    atoms = molecule("NH3")
    inv = ACSFInverter(small_acsf(["H", "N"]), n_init=6, n_hops=3, steps=150, lr=0.1,
                       pooling=pooling, random_state=0)
    rec = inv.reconstruct_from(atoms)
    assert isinstance(rec, Atoms)
    assert "reconstruction_loss" in rec.info
    assert list(sorted(rec.numbers)) == list(sorted(atoms.numbers))
    assert cluster_rmsd(atoms, rec) < 0.1


def test_grown_initial_clusters_are_connected_at_bonding_distances():
    from ase.data import covalent_radii

    inv = ACSFInverter(small_acsf(["Pt"]), random_state=3)
    assert inv.init == "grow"
    assert ACSFInverter(small_acsf(["Pt"]), pooling=("max", "min")).init == "box"
    pos = inv._initial_positions(np.array([78] * 10), None, 4)
    assert pos.shape == (4, 10, 3)
    bond = 2 * covalent_radii[78]
    for p in pos:
        d = np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(10) * 99
        assert d.min() >= 0.85 * bond - 1e-9       # no overlapping atoms
        assert np.all(d.min(axis=1) <= 1.1 * bond + 1e-9)  # every atom bonded to another


def test_compact_initial_clusters_and_surface_sites():
    from ase.data import covalent_radii

    inv = ACSFInverter(small_acsf(["Pt"]), init="compact", random_state=0)
    bond = 2 * covalent_radii[78]
    grown = ACSFInverter(small_acsf(["Pt"]), init="grow", random_state=0)

    def coordination(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(len(p)) * 99
        return d, (d <= 1.25 * bond).sum(1)

    pos = inv._initial_positions(np.array([78] * 30), None, 3)
    loose = grown._initial_positions(np.array([78] * 30), None, 3)
    for p, q in zip(pos, loose):
        d, cn = coordination(p)
        assert d.min() >= 0.85 * bond - 1e-6
        assert cn.mean() > coordination(q)[1].mean() + 1.5  # compact, not an open aggregate
    # a free site on the surface: bonded to several atoms, overlapping none
    site = inv._site(pos[0], np.arange(29), np.array([78] * 30), 29)
    d = np.linalg.norm(pos[0][:29] - site, axis=1)
    assert d.min() >= 0.85 * bond - 1e-6 and (d <= 1.25 * bond).sum() >= 3
    with pytest.raises(ValueError, match="relocate_to"):
        ACSFInverter(small_acsf(["Pt"]), relocate_to="nowhere")


def test_polish_reaches_the_exact_minimum():
    atoms = molecule("CH4")
    desc = small_acsf(["H", "C"])
    # without the symmetric search, which would solve the tetrahedron before either polish
    rough = ACSFInverter(desc, n_init=4, n_hops=0, steps=150, polish=0, symmetric_starts=0,
                         random_state=0)
    fine = ACSFInverter(desc, n_init=4, n_hops=0, steps=150, symmetric_starts=0,
                        random_state=0)
    a, b = rough.reconstruct_from(atoms), fine.reconstruct_from(atoms)
    assert b.info["relative_loss"] < 1e-5
    assert b.info["relative_loss"] < 0.1 * a.info["relative_loss"]
    assert cluster_rmsd(atoms, b) < 0.01


def test_crossover_children_keep_composition_and_replace_the_worst():
    from ase.cluster import Icosahedron

    desc = small_acsf(["C", "H", "O"])
    inv = ACSFInverter(desc, n_init=6, crossover=0.5, random_state=0)
    rng = np.random.default_rng(0)
    base = Icosahedron("Cu", 2).positions * 1.0        # 13 atoms, 2.5 Å apart
    numbers = np.array([6] * 5 + [8] * 2 + [1] * 6)
    best = np.stack([base[rng.permutation(13)] + rng.normal(scale=0.05, size=(13, 3))
                     for _ in range(6)])
    loss = np.array([0.1, 0.5, 0.2, 0.9, 0.3, 0.8])
    hopped = best + 0.01
    start = inv._crossover(best, loss, hopped, numbers)
    assert np.allclose(start[[0, 2, 4]], hopped[[0, 2, 4]])  # the better half hops as before
    d_parent = np.linalg.norm(base[:, None] - base[None], axis=-1)
    nn = np.sort(d_parent, axis=1)[:, 1].min()
    for slot in (3, 5, 1):                                     # the three highest losses
        assert not np.allclose(start[slot], hopped[slot])
        d = np.linalg.norm(start[slot][:, None] - start[slot][None], axis=-1)
        assert d[np.triu_indices(13, 1)].min() >= 0.75 * nn    # no atoms on top of each other
        # a child is two rigid pieces of compact parents: each atom has a neighbour at bonding
        # distance (no atom thrown far away)
        assert (np.sort(d, axis=1)[:, 1] < 1.3 * nn).all()
    mol = molecule("CH3OH")
    rec = ACSFInverter(desc, n_init=6, n_hops=2, steps=150, crossover=0.5,
                       random_state=1).reconstruct_from(mol)
    assert np.isfinite(rec.info["reconstruction_loss"])
    with pytest.raises(ValueError, match="crossover"):
        ACSFInverter(desc, crossover=1.0)



def test_reconstruction_acsf_is_the_benchmarks():
    from ase_mlgen.inversion import reconstruction_acsf

    one, two = reconstruction_acsf(["Pt"]), reconstruction_acsf(["Na", "Cl"], r_cut=5.0)
    assert one.n_features == 1 + 16 + 6 and one.r_cut == 6.0     # G1 + G2 + G5, one element
    assert two.r_cut == 5.0 and two.n_features > one.n_features  # per element (pair)
    fp = one.compute(Atoms("Pt2", positions=[[0, 0, 0], [0, 0, 2.7]]))
    assert fp.shape == (2, 23) and np.allclose(fp[0], fp[1])


def test_refine_restarts_the_worst_near_the_best():
    from ase_mlgen.inversion.inverter import REFINE_LR

    desc = small_acsf(["Pt"])
    assert ACSFInverter(desc, pooling=("max", "min")).refine == 0.25  # pooled default
    assert ACSFInverter(desc).refine == 0.0                            # per-atom: off
    inv = ACSFInverter(desc, n_init=8, refine=0.5, refine_size=0.1, lr=0.1,
                       pooling=("max", "min"), random_state=0)
    rng = np.random.default_rng(1)
    best = rng.normal(size=(8, 6, 3))
    loss = np.array([0.5, 0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.4])
    hopped = best + 1.0
    start, lr0 = inv._refine_starts(best, loss, hopped)
    worst = [2, 4, 6, 0]                                 # the four highest losses
    kept = [1, 3, 5, 7]
    assert np.allclose(start[kept], hopped[kept]) and np.allclose(lr0[kept], 0.1)
    assert np.allclose(lr0[worst], REFINE_LR * 0.1)
    assert np.allclose(start[2], best[1])                # one copy of the best, undisplaced
    shifts = start[[4, 6, 0]] - best[1]
    assert 0.05 < shifts.std() < 0.2                     # the others 0.1 Å around it
    # refine=0 leaves the hop starts alone
    off = ACSFInverter(desc, n_init=8, refine=0.0, pooling=("max", "min"))
    assert off.refine == 0.0
    for bad in (dict(refine=1.0), dict(refine=-0.1), dict(refine_size=0.0)):
        with pytest.raises(ValueError, match="refine"):
            ACSFInverter(desc, pooling=("max", "min"), **bad)


@pytest.mark.parametrize("pooling", [None, ("max", "min")])
def test_float32_search_keeps_float64_accuracy(pooling):
    import torch

    atoms = molecule("CH4")
    inv = ACSFInverter(small_acsf(["H", "C"]), n_init=4, n_hops=1, steps=150, pooling=pooling,
                       random_state=0, search_dtype=torch.float32)
    rec = inv.reconstruct_from(atoms)
    assert inv.search_dtype == torch.float32 and inv.dtype == torch.float64
    # the returned loss is the float64 loss of the returned structure
    fp = inv.fingerprint(rec)
    target = inv.fingerprint(atoms)
    if pooling is None:  # rows in the optimal order: compare sorted per-element multisets
        fp, target = np.sort(fp, axis=0), np.sort(target, axis=0)
    assert cluster_rmsd(atoms, rec) < 0.05
    assert rec.info["reconstruction_loss"] < 1e-3 * np.abs(target).mean()
    if pooling is not None:
        assert np.isclose(rec.info["reconstruction_loss"], np.abs(fp - target).mean(),
                          rtol=1e-6, atol=1e-12)


def test_reconstruct_periodic():
    atoms = bulk("NaCl", "rocksalt", a=5.64)  # 2-atom primitive cell
    inv = ACSFInverter(small_acsf(["Na", "Cl"], r_cut=5.0), n_init=4, n_hops=2, steps=100,
                       lr=0.1, random_state=1)
    rec = inv.reconstruct_from(atoms)
    assert rec.pbc.all() and np.allclose(rec.cell, atoms.cell)
    assert periodic_rmsd(atoms, rec) < 0.1


def test_invalid_fingerprint_has_high_loss():
    atoms = molecule("H2O")
    desc = small_acsf(["H", "O"])
    inv = ACSFInverter(desc, n_init=4, n_hops=1, steps=100, random_state=0)
    good = inv.reconstruct_from(atoms)
    fp = inv.fingerprint(atoms)
    bad_fp = fp.copy()
    bad_fp[0] *= 3.0  # an environment no 3-atom structure can have together with the others
    bad = inv.reconstruct(bad_fp, atoms.numbers)
    assert bad.info["reconstruction_loss"] > 10 * good.info["reconstruction_loss"]
    assert bad.info["relative_loss"] > 0.01


def test_reconstruct_rejects_bad_shapes():
    inv = ACSFInverter(small_acsf(["H"]), n_init=1, steps=1)
    with pytest.raises(ValueError):
        inv.reconstruct(np.zeros(5), [1, 1])
    with pytest.raises(ValueError):
        ACSFInverter(small_acsf(["H"]), pooling=("median",))


def _toy_data(n=40, f=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    x = np.abs(np.outer(y, np.ones(f)) + 0.1 * rng.normal(size=(n, f))) + 1.0
    return x, y


def test_cvae_tiny_training_and_resume(tmp_path):
    from ase_mlgen.inversion.cvae import FingerprintGenerator

    x, y = _toy_data()
    run = tmp_path / "run"
    job = FingerprintGenerator.train(x, y, run, epochs=3, checkpoint_every=1, latent=4,
                                     hidden=[16, 16, 16], surrogate_hidden=[16] * 5)
    gen = job.result()
    fps = gen.generate(5, 0.5, seed=0)
    assert fps.shape == (5, 6) and np.isfinite(fps).all()
    assert gen.predict(fps).shape == (5,)
    # resume to more epochs continues from the checkpoint
    job2 = FingerprintGenerator.train(None, None, run, resume=True, epochs=5, latent=4,
                                      hidden=[16, 16, 16], surrogate_hidden=[16] * 5)
    assert job2.run_dir.read_result()["epochs"] == 5
    assert [r["epoch"] for r in job2.run_dir.records()] == [1, 2, 3, 4, 5]
    gen.save(tmp_path / "gen.pt")
    again = FingerprintGenerator.load(tmp_path / "gen.pt")
    assert np.allclose(again.generate(3, 0.0, seed=1), gen.generate(3, 0.0, seed=1))


def test_cvae_recipe_options(tmp_path):
    import torch

    from ase_mlgen.inversion.cvae import CVAE, FingerprintGenerator, _balance_weights

    x, y = _toy_data()
    w = _balance_weights(np.r_[np.zeros(30), np.ones(10)], bins=2).numpy()
    assert np.isclose(w[:30].sum(), w[30:].sum())  # each bin drawn equally often
    gen = FingerprintGenerator.fit(x, y, tmp_path / "run", epochs=3, latent=4, hidden=[16] * 3,
                                   surrogate_hidden=[16] * 5, balance=True, kl_warmup=2,
                                   free_bits=0.1)
    assert np.isfinite(gen.generate(4, 0.0, seed=0)).all()
    mu, logvar = torch.zeros(8, 4), torch.zeros(8, 4)  # posterior = prior: KL 0
    loss, rec, kl = CVAE.loss(torch.ones(8, 3), torch.ones(8, 3), mu, logvar, 0.75, 0.1)
    assert float(kl) == 0.0 and np.isclose(float(loss), 0.75 * 0.4)  # free bits count
    with pytest.raises(ValueError, match="unknown training settings"):
        FingerprintGenerator.train(x, y, tmp_path / "r2", kl_anneal=3)


def test_cvae_lr_schedule_and_screened_sampling(tmp_path):
    import json

    from ase_mlgen.inversion.cvae import FingerprintGenerator

    x, y = _toy_data()
    gen = FingerprintGenerator.fit(x, y, tmp_path / "run", epochs=4, latent=4, hidden=[16] * 3,
                                   surrogate_hidden=[16] * 5, lr_final=0.2, weight_decay=1e-3)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in log if "lr" in r]
    assert np.isclose(lrs[0], 1e-3) and np.isclose(lrs[-1], 1e-3 * 0.2 ** 0.75)  # exponential
    pool = gen.generate(160, 0.5, seed=3)  # the same latent draws as screen=8 of 20
    screened = gen.generate(20, 0.5, seed=3, screen=8)
    assert screened.shape == (20, x.shape[1])
    err = np.abs(gen.predict(pool) - 0.5)
    assert np.allclose(screened, pool[np.sort(np.argsort(err, kind="stable")[:20])])
    assert np.abs(gen.predict(screened) - 0.5).max() <= np.sort(err)[19] + 1e-9
    with pytest.raises(ValueError, match="screen must be"):
        gen.generate(2, 0.5, screen=0)


def test_atomic_surrogate_learns_a_sum_of_atom_terms_in_any_atom_order(tmp_path):
    from ase_mlgen.inversion.cvae import FingerprintGenerator
    from ase_mlgen.inversion.surrogate import AtomicSurrogate, SurrogateModel

    rng = np.random.default_rng(0)
    rows = rng.random((120, 6, 4))                     # 120 structures, 6 atoms, 4 features
    y = np.tanh(rows @ np.array([1.0, -0.5, 0.3, 0.8])).mean(axis=1)  # a per-atom property
    x = rows.reshape(len(rows), -1)
    gen = FingerprintGenerator.fit(x[:100], y[:100], tmp_path / "run", epochs=150, latent=4,
                                   hidden=[16] * 3, surrogate_hidden=[32, 32],
                                   surrogate="atomic", atom_features=4, device="cpu")
    assert isinstance(gen.surrogate, AtomicSurrogate)
    shuffled = rows[:, rng.permutation(6)].reshape(len(rows), -1)
    assert np.allclose(gen.predict(x), gen.predict(shuffled), atol=1e-5)
    held_out = np.abs(gen.predict(x[100:]) - y[100:]).mean()
    assert held_out < 0.3 * np.abs(y[100:] - y[:100].mean()).mean()
    gen.save(tmp_path / "g.pt")
    again = FingerprintGenerator.load(tmp_path / "g.pt")
    assert isinstance(again.surrogate, AtomicSurrogate)
    assert np.allclose(again.predict(x), gen.predict(x))
    state = SurrogateModel(8, (4,)).state()  # the paper's surrogate still loads as before
    assert type(SurrogateModel.from_state(state)) is SurrogateModel
    with pytest.raises(ValueError, match="needs atom_features"):
        FingerprintGenerator.train(x, y, tmp_path / "r2", surrogate="atomic")
    with pytest.raises(ValueError, match="multiple of atom_features"):
        FingerprintGenerator.train(x, y, tmp_path / "r3", surrogate="atomic", atom_features=5)
    with pytest.raises(ValueError, match="unknown surrogate"):
        FingerprintGenerator.train(x, y, tmp_path / "r4", surrogate="gp")


def test_cvae_posterior_latent_sampling(tmp_path):
    import torch

    from ase_mlgen.inversion.cvae import FingerprintGenerator

    x, y = _toy_data()
    gen = FingerprintGenerator.fit(x, y, tmp_path / "run", epochs=2, latent=4, hidden=[16] * 3,
                                   surrogate_hidden=[16] * 5)
    bank = gen.latent_bank
    assert bank["mu"].shape == (len(x), 4) and np.allclose(bank["y"], y)
    target = float(y[7]) + 1e-6  # nearest training point: 7
    got = gen.generate(3, target, seed=0, latent="posterior", neighbours=1, temperature=0.0)
    with torch.no_grad():
        yc = torch.full((3, 1), (target - gen.y_mean) / gen.y_std)
        want = gen.cvae.decode(torch.as_tensor(bank["mu"][[7] * 3]), yc).numpy()
    assert np.allclose(got, np.maximum(gen.x_scaler.inverse(want), 0.0), atol=1e-5)
    a = gen.generate(5, 0.3, seed=4, latent="posterior")
    assert np.allclose(a, gen.generate(5, 0.3, seed=4, latent="posterior"))
    gen.save(tmp_path / "g.pt")
    assert FingerprintGenerator.load(tmp_path / "g.pt").latent_bank is not None
    gen.latent_bank = None  # a model file from before the posteriors were stored
    with pytest.raises(ValueError, match="needs the training posteriors"):
        gen.generate(2, 0.3, latent="posterior")
    with pytest.raises(ValueError, match="latent must be"):
        gen.generate(2, 0.3, latent="aggregate")


def test_generator_emits_atoms(tmp_path):
    from ase_mlgen.inversion.cvae import FingerprintGenerator
    from ase_mlgen.inversion.generator import InversionGenerator, make_search_generator

    desc = small_acsf(["Pt"], r_cut=5.0)
    rng = np.random.default_rng(0)
    images = []
    for _ in range(12):
        pos = rng.normal(size=(3, 3)) * 0.3 + np.array([[0, 0, 0], [2.6, 0, 0], [1.3, 2.2, 0]])
        images.append(Atoms("Pt3", positions=pos))
    fps = desc.pooled_many(images)
    y = np.array([np.linalg.norm(a.positions[0] - a.positions[1]) for a in images])
    gen = FingerprintGenerator.fit(fps, y, tmp_path / "run", epochs=2, latent=4,
                                   hidden=[16] * 3, surrogate_hidden=[16] * 5,
                                   descriptor=desc.todict(), pooling=["max", "min"],
                                   numbers=[78] * 3)
    g = InversionGenerator(gen, target=2.6, random_state=0, n_init=2, n_hops=0, steps=20)
    out = g.generate(2)
    assert len(out) == 2
    for a in out:
        assert isinstance(a, Atoms) and a.info["generator"] == "invert"
        assert "reconstruction_loss" in a.info and "predicted_energy" in a.info
    sg = make_search_generator(Atoms("Pt3"), 0, {"model": str(tmp_path / "run"),
                                                 "steps": "10", "n_init": "2", "n_hops": "0",
                                                 "latent": "posterior"})
    assert sg.latent == "posterior"
    assert sg.generate(1, rng=1)[0].info["generator"] == "invert"
    with pytest.raises(ValueError, match="latent must be"):
        InversionGenerator(gen, target=2.6, latent="mean")


def test_cli_invert(tmp_path):
    from ase.io import read

    from ase_mlgen.cli.main import main

    desc = small_acsf(["H", "O"])
    atoms = molecule("H2O")
    np.save(tmp_path / "fp.npy", desc.compute(atoms))
    (tmp_path / "acsf.json").write_text(json.dumps({"kind": "ACSF", **desc.todict()}))
    out = tmp_path / "out.xyz"
    code = main(["invert", str(tmp_path / "fp.npy"), "--numbers", "8,1,1", "--descriptor",
                 str(tmp_path / "acsf.json"), "--pooling", "none", "-o", str(out),
                 "--n-init", "4", "--n-hops", "1", "--steps", "100"])
    assert code == 0
    rec = read(out)
    assert cluster_rmsd(atoms, rec) < 0.1


def test_cli_invert_pooled_recipe_options(tmp_path):
    """The pooled recipe of the benchmark (feature weights, init, float32 search, time limit)
    reaches the inverter from the command line and rebuilds a pooled H2O."""
    from ase.io import read

    from ase_mlgen.cli.main import main

    desc = small_acsf(["H", "O"])
    atoms = molecule("H2O")
    inv = ACSFInverter(desc, pooling=("max", "min"))
    np.save(tmp_path / "fp.npy", inv.fingerprint(atoms))
    (tmp_path / "acsf.json").write_text(json.dumps({"kind": "ACSF", **desc.todict()}))
    out = tmp_path / "out.xyz"
    code = main(["invert", str(tmp_path / "fp.npy"), "--numbers", "8,1,1", "--descriptor",
                 str(tmp_path / "acsf.json"), "--pooling", "max,min", "-o", str(out),
                 "--n-init", "8", "--n-hops", "2", "--steps", "300", "--weights", "auto",
                 "--init", "box", "--search-dtype", "float32", "--time-limit", "60",
                 "--patience", "100", "--polish", "500", "--tol", "1e-4", "--refine", "0.25"])
    assert code == 0
    rec = read(out)
    assert cluster_rmsd(atoms, rec) < 0.1
    with pytest.raises(SystemExit):
        main(["invert", str(tmp_path / "fp.npy"), "--numbers", "8,1,1", "-o", str(out),
              "--weights", "bogus"])


def test_cli_train_fingerprint_with_atomic_surrogate(tmp_path):
    from ase_mlgen.cli.main import main
    from ase_mlgen.inversion.cvae import FingerprintGenerator
    from ase_mlgen.inversion.surrogate import AtomicSurrogate

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 12)), y=rng.random(20))
    code = main(["train", "fingerprint", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run"),
                 "--epochs", "2", "--surrogate", "atomic", "--atom-features", "3",
                 "--device", "cpu"])
    assert code == 0
    gen = FingerprintGenerator.load(tmp_path / "run")
    assert isinstance(gen.surrogate, AtomicSurrogate) and gen.surrogate.atom_features == 3


def test_dft_pt10_loader(tmp_path):
    from ase_mlgen.data.pt10 import load_dft_pt10

    with pytest.raises(FileNotFoundError, match="pt10_acsf_300.csv"):
        load_dft_pt10(tmp_path)
    from tests.conftest import shared_file

    folder = shared_file("pt10/pt10_acsf_300.csv").parent
    x, y = load_dft_pt10(folder)
    assert x.shape == (300, 380) and y.shape == (300,)


def test_pt10_acsf_matches_shared_layout():
    from ase_mlgen.data.pt10 import pt10_acsf

    assert pt10_acsf().n_features == 190


def test_emt_pt10_builder_and_fps():
    from ase_mlgen.data.pt10 import build_emt_pt10, farthest_point_sampling

    frames = build_emt_pt10(1, seed=0, max_steps=15, every=5)
    assert frames[-1].info["minimum"] and len(frames) >= 2
    assert all(np.isfinite(a.info["formation_energy"]) for a in frames)
    x = np.random.default_rng(0).normal(size=(50, 3))
    idx = farthest_point_sampling(x, 10)
    assert len(set(idx)) == 10
    assert list(farthest_point_sampling(x, 5)) == list(idx[:5])


def test_per_atom_vectors_are_permutation_invariant_and_checked():
    from ase_mlgen.inversion.per_atom import canonical_order, per_atom_vectors

    desc = small_acsf(["O", "Pt"], r_cut=5.0)
    rng = np.random.default_rng(3)
    base = Atoms("Pt3O2", positions=rng.uniform(0, 4, size=(5, 3)))
    shuffled = base[[4, 1, 0, 3, 2]]
    x, numbers = per_atom_vectors([base, shuffled], desc)
    assert x.shape == (2, 5 * desc.n_features)
    assert np.allclose(x[0], x[1])           # the atom order of the input does not matter
    assert numbers.tolist() == [8, 8, 78, 78, 78]
    fp = desc.compute(base)
    order = canonical_order(fp, base.numbers)
    sums = fp[order].sum(1)
    assert base.numbers[order].tolist() == [8, 8, 78, 78, 78]
    assert sums[0] >= sums[1] and sums[2] >= sums[3] >= sums[4]
    with pytest.raises(ValueError, match="another composition"):
        per_atom_vectors([base, Atoms("Pt4O", positions=base.positions)], desc)
    with pytest.raises(ValueError, match="per-atom fingerprint"):
        canonical_order(fp.reshape(-1), base.numbers)


def test_generator_inverts_per_atom_model_vectors(tmp_path):
    from ase_mlgen.inversion.cvae import FingerprintGenerator
    from ase_mlgen.inversion.generator import InversionGenerator
    from ase_mlgen.inversion.per_atom import per_atom_vectors

    desc = small_acsf(["Pt"], r_cut=5.0)
    rng = np.random.default_rng(0)
    images = [Atoms("Pt3", positions=rng.normal(size=(3, 3)) * 0.2
                    + np.array([[0, 0, 0], [2.6, 0, 0], [1.3, 2.2, 0]])) for _ in range(12)]
    x, numbers = per_atom_vectors(images, desc)
    y = np.array([a.get_distance(0, 1) for a in images])
    gen = FingerprintGenerator.fit(x, y, tmp_path / "run", epochs=2, latent=4,
                                   hidden=[16] * 3, surrogate_hidden=[16] * 5,
                                   descriptor=desc.todict(), pooling=None,
                                   numbers=numbers.tolist())
    g = InversionGenerator(gen, target=2.6, random_state=0, n_init=2, n_hops=0, steps=20)
    assert g.inverter.pooling is None
    out = g.generate(2)
    assert len(out) == 2 and all(len(a) == 3 and "reconstruction_loss" in a.info for a in out)
    # the filter after inversion: 2 x n reconstructions, the n nearest the target by the
    # surrogate on their own fingerprints
    g2 = InversionGenerator(gen, target=2.6, random_state=0, n_init=2, n_hops=0, steps=20,
                            rescreen=2)
    kept = g2.generate(2)
    values = [a.info["reconstruction_property"] for a in kept]
    assert len(kept) == 2 and all(np.isfinite(values))
    with pytest.raises(ValueError, match="rescreen must be"):
        InversionGenerator(gen, target=2.6, rescreen=0)
    # a model of pooled vectors of another length is refused with a clear error
    wrong = InversionGenerator(gen, target=2.6, numbers=[78] * 4, random_state=0, n_init=2,
                               n_hops=0, steps=5)
    with pytest.raises(ValueError, match="not a per-atom fingerprint of 4 atoms"):
        wrong.generate(1)
