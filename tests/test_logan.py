"""LoGAN: networks, generation in the box/cell, rotation invariance, training, save/load, jobs,
CLI, the search generator, the representatives filter and molecule identity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from ase_mlgen.generators.logan.nets import Critic, Generator
from ase_mlgen.structures.molecules import (C5H12O_ISOMERS, bond_graph, classify_c5h12o,
                                            is_valid_molecule, same_molecule, unique_molecules)

TINY = dict(epochs=4, rattle=2, batch_size=4, n_critic=2, n_penalty=2, r_cut=4.0, n_max=3,
            max_neighbours=8, generator_layers=(32, 16), critic_layers=(16, 8), log_every=1,
            checkpoint_every=2, device="cpu")


def _descriptor_available() -> bool:
    try:
        from ase_mlgen.descriptors import SphericalBessel  # noqa: F401
    except ImportError:
        return False
    return True


needs_descriptor = pytest.mark.skipif(not _descriptor_available(),
                                      reason="ase_mlgen.descriptors.SphericalBessel is missing")


def training_molecules():
    return [molecule("CH3CH2OH"), molecule("CH3OCH3")]


def alpha_quartz() -> Atoms:
    """alpha-quartz, Si3O6 (a = 4.916 Å, c = 5.405 Å)."""
    return Atoms("Si3O6", cell=[[4.916, 0, 0], [-2.458, 4.257, 0], [0, 0, 5.405]], pbc=True,
                 scaled_positions=[[0.4697, 0, 0], [0, 0.4697, 2 / 3], [0.5303, 0.5303, 1 / 3],
                                   [0.4135, 0.2669, 0.1191], [0.2669, 0.4135, 0.5476],
                                   [0.7331, 0.1466, 0.7857], [0.5865, 0.8534, 0.2143],
                                   [0.8534, 0.5865, 0.4524], [0.1466, 0.7331, 0.8809]])


@pytest.fixture(scope="module")
def fitted():
    from ase_mlgen.generators.logan import LoGAN

    if not _descriptor_available():
        pytest.skip("ase_mlgen.descriptors.SphericalBessel is missing")
    return LoGAN(random_state=0, **TINY).fit(training_molecules(), composition="C3H8O")


# -- networks ---------------------------------------------------------------------------------
def test_generator_and_critic_shapes():
    g = Generator(n_atoms=18)
    z = torch.randn(7, 20)
    x = g(z)
    assert x.shape == (7, 18, 3)
    assert float(x.detach().min()) > 0 and float(x.detach().max()) < 1
    assert [m.out_features for m in g.net if isinstance(m, torch.nn.Linear)] == \
        [512, 256, 128, 64, 32, 54]
    c = Critic(n_features=30)
    assert c(torch.randn(7, 18, 30)).shape == (7, 18)
    assert [m.out_features for m in c.net if isinstance(m, torch.nn.Linear)] == \
        [256, 128, 64, 32, 1]


def test_critic_input_gradient_equals_autograd():
    torch.manual_seed(1)
    critic = Critic(17, hidden=(32, 16, 8), negative_slope=0.2).double()
    x = torch.randn(4, 6, 17, dtype=torch.float64)
    mid = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(critic(mid).sum(), mid, create_graph=True)
    analytic = critic.input_gradient(x)
    torch.testing.assert_close(analytic, reference)
    # the penalty's gradient with respect to the weights is the same, too
    params = list(critic.parameters())
    ref_grads = torch.autograd.grad(((reference.norm(dim=-1) - 1) ** 2).mean(), params,
                                    allow_unused=True)
    new_grads = torch.autograd.grad(((analytic.norm(dim=-1) - 1) ** 2).mean(), params,
                                    allow_unused=True)
    for p, a, b in zip(params, ref_grads, new_grads):
        # biases do not enter the input gradient: zero (autograd) or unused (analytic)
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b)


def test_parameters_are_checked():
    from ase_mlgen.generators.logan import LoGAN

    with pytest.raises(ValueError, match="unknown LoGAN parameter"):
        LoGAN(n_crit=5)
    with pytest.raises(ValueError, match="radial"):
        LoGAN(radial="cosine")
    with pytest.raises(RuntimeError, match="not fitted"):
        LoGAN().generate(2)


def test_parse_composition():
    from ase_mlgen.generators.logan import parse_composition

    assert parse_composition("C5H12O") == [6] * 5 + [1] * 12 + [8]
    assert parse_composition({"Si": 2, "O": 4}) == [14, 14, 8, 8, 8, 8]
    assert parse_composition(molecule("H2O")) == [8, 1, 1]


# -- fitted model -----------------------------------------------------------------------------
@needs_descriptor
def test_generate_molecules_inside_box(fitted):
    images = fitted.generate(50, random_state=1)
    assert len(images) == 50
    box = np.diag(fitted.cell)
    for atoms in images:
        assert atoms.get_chemical_formula() == "C3H8O"
        assert atoms.info["generator"] == "logan"
        assert not atoms.pbc.any()
        assert np.all(atoms.positions >= 0) and np.all(atoms.positions <= box)
    # reproducible with a seed, different without
    a = fitted.generate_positions(3, random_state=5)
    b = fitted.generate_positions(3, random_state=5)
    assert np.allclose(a, b)


@needs_descriptor
def test_generate_crystal_inside_cell():
    from ase_mlgen.generators.logan import LoGAN

    train = [bulk("NaCl", "rocksalt", a=5.64, cubic=True),
             bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((1, 1, 2))]
    cell = np.array([[5.6, 0.3, 0.0], [0.0, 5.7, 0.0], [0.2, 0.0, 5.5]])
    model = LoGAN(random_state=0, **TINY).fit(train, composition="Na4Cl4", cell=cell)
    assert model.periodic
    for atoms in model.generate(20, random_state=2):
        assert atoms.pbc.all()
        assert np.allclose(atoms.cell.array, cell)
        frac = atoms.get_scaled_positions(wrap=False)
        assert np.all(frac >= -1e-9) and np.all(frac < 1 + 1e-9)


def test_generator_span_and_crystal_margin():
    """A wider span stretches the sigmoid; crystals use it (cell_margin) and are wrapped, so
    atoms reach the cell faces without saturating the sigmoid; molecules keep (0, 1)."""
    from ase_mlgen.generators.logan import LoGAN

    torch.manual_seed(0)
    g = Generator(n_atoms=4, hidden=(8,), span=(-0.5, 1.5))
    x = g(torch.randn(500, 20) * 30).detach()          # saturates at both ends
    assert -0.5 <= float(x.min()) < -0.2 and 1.2 < float(x.max()) <= 1.5
    with pytest.raises(ValueError, match="span"):
        Generator(n_atoms=4, span=(1.0, 0.0))
    with pytest.raises(ValueError, match="cell_margin"):
        LoGAN(cell_margin=-0.1)
    train = [bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    crystal = LoGAN(random_state=0, **TINY).fit(train, composition="Na4Cl4")
    assert crystal.generator.span == (-0.5, 1.5)
    frac = crystal.generate_positions(50, random_state=1) @ np.linalg.inv(crystal.cell)
    assert frac.min() >= -1e-6 and frac.max() < 1 + 1e-6          # wrapped into the cell
    paper = LoGAN(random_state=0, cell_margin=0.0, **TINY).fit(train, composition="Na4Cl4")
    assert paper.generator.span == (0.0, 1.0)
    molecules = LoGAN(random_state=0, **TINY).fit(training_molecules(), composition="C2H6O")
    assert molecules.generator.span == (0.0, 1.0)


def test_old_crystal_model_files_keep_the_paper_span(tmp_path):
    """A model file from before cell_margin existed loads with the (0, 1) span it was trained
    with, so its generated structures do not change."""
    from ase_mlgen.generators.logan import LoGAN

    train = [bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    model = LoGAN(random_state=0, cell_margin=0.0, **TINY).fit(train, composition="Na4Cl4")
    state = model.state_dict()
    del state["params"]["cell_margin"]
    torch.save(state, tmp_path / "old.pt")
    loaded = LoGAN.load(tmp_path / "old.pt", device="cpu")
    assert loaded.generator.span == (0.0, 1.0)
    assert np.allclose(loaded.generate_positions(5, random_state=3),
                       model.generate_positions(5, random_state=3), atol=1e-5)


def test_coordination_counts_periodic_images():
    """Quartz: every Si has 4 O and every O 2 Si within 2 Å; a small cell where an O bonds to
    two images of one Si counts both; bad input is refused."""
    from ase_mlgen.structures.coordination import (coordination_defects, coordination_numbers,
                                                   coordination_summary,
                                                   has_ideal_coordination)

    quartz = alpha_quartz()
    cutoffs = {("Si", "O"): 2.0}
    assert coordination_numbers(quartz, cutoffs).tolist() == [4, 4, 4, 2, 2, 2, 2, 2, 2]
    assert coordination_defects(quartz, {"Si": 4, "O": 2}, cutoffs) == 0
    assert has_ideal_coordination()(quartz)
    # a chain Si-O-Si-O... along a 3.2 Å axis: one Si, one O per cell; the O bonds to the Si of
    # its own cell and to that of the next (an image of the same atom): coordination 2
    chain = Atoms("SiO", cell=[3.2, 8, 8], pbc=True, positions=[[0, 0, 0], [1.6, 0, 0]])
    assert coordination_numbers(chain, cutoffs).tolist() == [2, 2]
    assert chain.get_all_distances(mic=True)[0, 1] == pytest.approx(1.6)
    summary = coordination_summary(chain, {"Si": 4, "O": 2}, cutoffs)
    assert summary == {"Si": [0, 1], "O": [1, 1], "defects": 2, "all_ideal": False}
    broken = quartz.copy()
    broken.positions[3] += [0.0, 0.0, 1.5]                           # pull one O off its Si
    assert coordination_defects(broken, {"Si": 4, "O": 2}, cutoffs) > 0
    assert not has_ideal_coordination()(broken)
    with pytest.raises(ValueError, match="element"):
        coordination_numbers(quartz, {("Si", "Xx"): 2.0})
    with pytest.raises(ValueError, match="empty"):
        coordination_numbers(quartz, {})


def test_borderline_contacts_count_as_defects_with_a_margin():
    """A Si–O contact at 1.97 Å is a bond for a 2.0 Å cutoff; with a 0.1 Å margin its two atoms
    count as defects (borderline bonds break on relaxation), clean contacts do not."""
    from ase_mlgen.structures.coordination import coordination_defects, near_cutoff

    cutoffs = {("Si", "O"): 2.0}
    ideal = {"Si": 4, "O": 2}
    quartz = alpha_quartz()
    assert not near_cutoff(quartz, cutoffs, 0.1).any()
    assert coordination_defects(quartz, ideal, cutoffs, margin=0.1) == 0
    chain = Atoms("SiO", cell=[3.6, 8, 8], pbc=True, positions=[[0, 0, 0], [1.63, 0, 0]])
    # O–Si 1.63 Å in the cell and 1.97 Å to the next cell's Si: both bonds under 2.0 Å
    assert near_cutoff(chain, cutoffs, 0.1).tolist() == [True, True]
    assert near_cutoff(chain, cutoffs, 0.02).tolist() == [False, False]
    plain = coordination_defects(chain, ideal, cutoffs)
    assert coordination_defects(chain, ideal, cutoffs, margin=0.1) == plain + 2
    assert coordination_defects(chain, ideal, cutoffs, margin=0.0) == plain
    with pytest.raises(ValueError, match="margin"):
        near_cutoff(chain, cutoffs, -0.1)


@needs_descriptor
def test_critic_invariant_to_rotation(fitted):
    atoms = fitted.generate(1, random_state=3)[0]
    rotated = atoms.copy()
    rotated.rotate(73, (1, 2, 3), center="COP")
    rotated.rotate(31, "z", center="COP")
    moved = atoms.copy()
    moved.translate((1.3, -0.4, 2.0))
    s = fitted.critic_scores([atoms, rotated, moved])
    assert np.allclose(s[0], s[1], atol=1e-4)
    assert np.allclose(s[0], s[2], atol=1e-4)


@needs_descriptor
def test_tiny_fit_reduces_wasserstein():
    from ase_mlgen.generators.logan import LoGAN

    params = {**TINY, "epochs": 60, "log_every": 10, "lr_generator": 1e-3, "lr_critic": 1e-3,
              "generator_layers": (64, 32)}
    model = LoGAN(random_state=0, **params).fit(training_molecules(), composition="C3H8O")
    w = [r["wasserstein"] for r in model.history]
    assert len(w) == 6 and np.all(np.isfinite(w))
    assert model.fit_seconds > 0
    # the same generator before training (same seed, one step): the trained critic finds it
    # farther from the training environments than the trained generator
    start = LoGAN(random_state=0, **{**params, "epochs": 1}).fit(training_molecules(),
                                                                 composition="C3H8O")
    w_trained = model.wasserstein_estimate(training_molecules(), n=300)
    w_start = model.wasserstein_estimate(training_molecules(), n=300, generator=start)
    assert w_trained < w_start


@needs_descriptor
def test_save_load_roundtrip(fitted, tmp_path):
    from ase_mlgen.generators.logan import LoGAN

    path = fitted.save(tmp_path / "model.pt")
    loaded = LoGAN.load(path, device="cpu")
    assert loaded.formula == fitted.formula == "C3H8O"
    assert np.allclose(loaded.generate_positions(4, random_state=9),
                       fitted.generate_positions(4, random_state=9), atol=1e-6)
    atoms = fitted.generate(2, random_state=4)
    assert np.allclose(loaded.critic_scores(atoms), fitted.critic_scores(atoms), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        LoGAN.load(tmp_path / "missing.pt")


@needs_descriptor
def test_training_job_ensemble_and_resume(tmp_path):
    from ase_mlgen.generators.logan import LoGAN, LoGANEnsemble, train_ensemble
    from ase_mlgen.jobs import RunDirectory

    run = tmp_path / "run"
    job = train_ensemble(training_molecules(), "C3H8O", None, run_dir=run, n_models=2,
                         **TINY)
    ens = job.result()
    assert isinstance(ens, LoGANEnsemble) and len(ens) == 2
    assert ens.models[0].params["r_cut"] != ens.models[1].params["r_cut"]
    images = ens.generate(6, random_state=0)
    assert len(images) == 6 and {a.info["model"] for a in images} == {0, 1}
    assert RunDirectory(run / "member_00").last_checkpoint.exists()
    # a finished run is refused without resume; with resume the finished members are kept
    with pytest.raises(ValueError, match="already holds a run"):
        train_ensemble(training_molecules(), "C3H8O", None, run_dir=run, n_models=2, **TINY)
    job = train_ensemble(training_molecules(), "C3H8O", None, run_dir=run, n_models=2,
                         resume=True, **TINY)
    assert isinstance(job.result(), LoGANEnsemble)
    one = LoGAN.train(training_molecules(), "C3H8O", run_dir=tmp_path / "one", **TINY)
    assert isinstance(one.result(), LoGAN)


@needs_descriptor
def test_resume_with_more_epochs_extends_finished_members(tmp_path):
    from ase_mlgen.generators.logan import train
    from ase_mlgen.jobs import RunDirectory

    run = tmp_path / "run"
    first = train(training_molecules(), "C3H8O", run_dir=run, **{**TINY, "epochs": 2}).result()
    assert first.history[-1]["epoch"] == 2
    longer = train(training_molecules(), "C3H8O", run_dir=run, resume=True,
                   **{**TINY, "epochs": 4}).result()
    assert longer.history[-1]["epoch"] == 4
    assert [r["epoch"] for r in RunDirectory(run / "member_00").records()] == [1, 2, 3, 4]
    # asking for no more epochs than trained keeps the member as it is
    same = train(training_molecules(), "C3H8O", run_dir=run, resume=True,
                 **{**TINY, "epochs": 3}).result()
    assert same.history[-1]["epoch"] == 4 and same.fit_seconds == longer.fit_seconds


@needs_descriptor
def test_resume_from_checkpoint_continues(tmp_path):
    from ase_mlgen.generators.logan import LoGAN
    from ase_mlgen.jobs import RunDirectory

    rd = RunDirectory(tmp_path / "m")
    LoGAN(random_state=0, **{**TINY, "epochs": 2}).fit(training_molecules(), "C3H8O",
                                                         run_dir=rd)
    model = LoGAN(random_state=0, **{**TINY, "epochs": 4}).fit(training_molecules(), "C3H8O",
                                                               run_dir=rd, resume=True)
    epochs = [r["epoch"] for r in rd.records()]
    assert epochs == [1, 2, 3, 4]
    assert model.history[-1]["epoch"] == 4


@needs_descriptor
def test_cli_train_and_generate(tmp_path, capsys):
    from ase.io import read, write

    from ase_mlgen.cli.main import main

    data = tmp_path / "train.extxyz"
    write(data, training_molecules())
    run = tmp_path / "run"
    assert main(["logan", "train", str(data), "--composition", "C3H8O", "--out", str(run),
                 "--epochs", "2", "--n-max", "3", "--r-cut", "4", "--device", "cpu"]) == 0
    out = tmp_path / "gen.extxyz"
    assert main(["logan", "generate", str(run), "-n", "40", "-o", str(out),
                 "--select", "5", "--min-distance", "0"]) == 0
    images = read(out, ":")
    assert 1 <= len(images) <= 5
    assert all(a.get_chemical_formula() == "C3H8O" for a in images)
    # --molecules: the bond-graph filter on the same pool (the CLI's seed 0)
    from ase_mlgen.generators.logan.training import load_model
    from ase_mlgen.select import molecule_representatives

    expected = molecule_representatives(load_model(run, device="cpu").generate(
        40, random_state=0), 3)
    capsys.readouterr()
    rc = main(["logan", "generate", str(run), "-n", "40", "-o", str(out), "--select", "3",
               "--molecules"])
    if expected:
        assert rc == 0
        assert [a.info["tier"] for a in read(out, ":")] == [a.info["tier"] for a in expected]
    else:                              # two epochs: often not one plausible molecule
        assert rc == 1 and "plausible molecule" in capsys.readouterr().err
    assert main(["logan", "generate", str(run), "-n", "5", "-o", str(out), "--molecules"]) == 2
    assert main(["logan", "generate", str(run), "-n", "5", "-o", str(out), "--select", "2",
                 "--rebuild-hydrogens"]) == 2
    rebuilt = molecule_representatives(load_model(run, device="cpu").generate(
        40, random_state=0), 3, rebuild=True)
    rc = main(["logan", "generate", str(run), "-n", "40", "-o", str(out), "--select", "3",
               "--molecules", "--rebuild-hydrogens"])
    assert rc == (0 if rebuilt else 1)
    if rebuilt:
        got = read(out, ":")
        assert [a.info["tier"] for a in got] == [a.info["tier"] for a in rebuilt]
        assert [len(a) for a in got] == [len(a) for a in rebuilt]
        assert ([bool(a.info.get("hydrogens_rebuilt")) for a in got]
                == [bool(a.info.get("hydrogens_rebuilt")) for a in rebuilt])
        assert not any(a.info.get("hydrogens_rebuilt") for a in got
                       if a.info["tier"] != "skeleton")
    assert main(["logan", "generate", str(run), "-n", "5", "-o", str(out), "--select", "2",
                 "--molecules", "--min-distance", "1"]) == 2


@needs_descriptor
def test_cli_crystal_with_cell_margin_and_coordination_filter(tmp_path, capsys):
    from ase.io import read, write

    from ase_mlgen.cli.main import main
    from ase_mlgen.generators.logan.training import load_model
    from ase_mlgen.structures.coordination import coordination_defects

    quartz = alpha_quartz()
    data = tmp_path / "quartz.extxyz"
    write(data, [quartz])
    run = tmp_path / "run"
    assert main(["logan", "train", str(data), "--out", str(run), "--epochs", "2", "--n-max",
                 "3", "--r-cut", "4", "--device", "cpu", "--cell-margin", "0.25",
                 "--repulsion", "5", "--repulsion-scale", "0.8"]) == 0
    model = load_model(run, device="cpu")
    assert model.params["cell_margin"] == 0.25 and model.generator.span == (-0.25, 1.25)
    assert model.params["repulsion"] == 5 and model.params["repulsion_scale"] == 0.8
    assert "contact_penalty" in model.history[-1]
    out = tmp_path / "gen.extxyz"
    assert main(["logan", "generate", str(run), "-n", "60", "-o", str(out), "--select", "3",
                 "--min-distance", "0", "--coordination", "Si=4,O=2", "--bonds",
                 "Si-O=2.0"]) == 0
    images = read(out, ":")
    assert 1 <= len(images) <= 3 and all(a.pbc.all() for a in images)
    # the picks are among the least defective of what the model generated
    pool = model.generate(60, random_state=0)              # the CLI's seed 0: the same pool
    best = min(coordination_defects(a, {"Si": 4, "O": 2}, {("Si", "O"): 2.0}) for a in pool)
    assert min(coordination_defects(a, {"Si": 4, "O": 2}, {("Si", "O"): 2.0})
               for a in images) == best
    # with a bond margin the ranking counts borderline contacts as defects too
    assert main(["logan", "generate", str(run), "-n", "60", "-o", str(out), "--select", "3",
                 "--min-distance", "0", "--coordination", "Si=4,O=2", "--bonds",
                 "Si-O=2.0", "--bond-margin", "0.1"]) == 0
    strict = [coordination_defects(a, {"Si": 4, "O": 2}, {("Si", "O"): 2.0}, margin=0.1)
              for a in pool]
    assert min(coordination_defects(a, {"Si": 4, "O": 2}, {("Si", "O"): 2.0}, margin=0.1)
               for a in read(out, ":")) == min(strict)
    capsys.readouterr()
    assert main(["logan", "generate", str(run), "-n", "5", "-o", str(out), "--select", "2",
                 "--coordination", "Si=4,O=2"]) == 2
    assert "--bonds" in capsys.readouterr().err
    assert main(["logan", "generate", str(run), "-n", "5", "-o", str(out), "--select", "2",
                 "--coordination", "Si=4,O=2", "--bonds", "SiO=2"]) == 2


def test_read_variations_accepts_json_and_files_and_refuses_bad_settings(tmp_path):
    from ase_mlgen.generators.logan.training import member_settings, read_variations

    text = '[{"random_state": 2, "epochs": 20}, {"repulsion": 0.0}]'
    recipe = tmp_path / "members.json"
    recipe.write_text(text)
    assert read_variations(text) == read_variations(f"@{recipe}")
    members = member_settings(2, 0, read_variations(text), epochs=50, repulsion=10.0)
    assert members[0] == {"random_state": 2, "params": {"epochs": 20, "repulsion": 10.0}}
    assert members[1] == {"random_state": 1, "params": {"epochs": 50, "repulsion": 0.0}}
    for bad, says in (("[]", "non-empty"), ('{"epochs": 2}', "list"), ("[{]", "valid JSON"),
                      ('[{"epoch": 2}]', "epoch")):
        with pytest.raises(ValueError, match=says):
            read_variations(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_variations(f"@{tmp_path / 'missing.json'}")


@needs_descriptor
def test_cli_trains_an_ensemble_from_member_settings(tmp_path, capsys):
    import json

    from ase.io import write

    from ase_mlgen.cli.main import main
    from ase_mlgen.generators.logan.training import load_model, trained_epochs

    data = tmp_path / "quartz.extxyz"
    write(data, [alpha_quartz()])
    members = tmp_path / "members.json"
    members.write_text(json.dumps([{"random_state": 5, "epochs": 1}, {"r_cut": 3.5}]))
    run = tmp_path / "run"
    assert main(["logan", "train", str(data), "--out", str(run), "--epochs", "2", "--n-max",
                 "3", "--r-cut", "4", "--rattle", "2", "--device", "cpu",
                 "--members", f"@{members}"]) == 0
    ensemble = load_model(run, device="cpu")
    assert len(ensemble) == 2
    first, second = ensemble.models
    assert first.random_state == 5 and trained_epochs(first) == 1
    assert first.params["r_cut"] == 4 and second.params["r_cut"] == 3.5
    assert first.params["rattle"] == second.params["rattle"] == 2
    assert second.random_state == 1 and trained_epochs(second) == 2
    capsys.readouterr()
    assert main(["logan", "train", str(data), "--out", str(tmp_path / "bad"), "--members",
                 '[{"cutoff": 4}]']) == 2
    assert "cutoff" in capsys.readouterr().err


@needs_descriptor
def test_search_generator_protocol(fitted, tmp_path):
    from ase_mlgen.generators.logan import make_search_generator

    path = fitted.save(tmp_path / "m.pt")
    template = Atoms("C3H8O")
    gen = make_search_generator(template, 0, {"model": str(path)})
    images = gen.generate(3)
    assert len(images) == 3
    for atoms in images:
        assert atoms.info["generator"] == "logan"
        assert not atoms.pbc.any() and np.allclose(atoms.positions.mean(axis=0), 0, atol=1e-9)
    again = make_search_generator(template, 0, {"model": str(path)}).generate(3)
    assert np.allclose(images[0].positions, again[0].positions)
    with pytest.raises(ValueError, match="template"):
        make_search_generator(Atoms("C2H6O"), 0, {"model": str(path)})
    with pytest.raises(ValueError, match="model"):
        make_search_generator(template, 0, {})


# -- representatives --------------------------------------------------------------------------
@needs_descriptor
def test_representatives_distinct_and_drop_overlaps():
    from ase_mlgen.select import representatives, too_close

    rng = np.random.default_rng(0)
    base = molecule("CH3CH2OH")
    images = []
    for i in range(30):
        a = base.copy()
        a.positions += rng.normal(0, 0.15, a.positions.shape)
        images.append(a)
    bad = []
    for i in range(5):
        a = base.copy()
        a.positions[1] = a.positions[0] + [0.1, 0, 0]  # two carbons 0.1 Å apart
        images.append(a)
        bad.append(len(images) - 1)
    images.append(images[0].copy())  # an exact duplicate
    assert too_close(images[bad[0]]) and not too_close(images[0])
    picked, info = representatives(images, 8, return_info=True)
    assert len(picked) == 8
    sources = [a.info["source_index"] for a in picked]
    assert len(set(sources)) == 8
    assert not set(sources) & set(bad)
    assert info["n_dropped"] == 5
    assert info["pca"].shape[1] == 2
    # more clusters than distinct structures: all of them, once
    few = representatives(images[:3] + [images[0].copy()], 10)
    assert len(few) == 3


@needs_descriptor
def test_representatives_any_generator_and_crystals():
    from ase_mlgen.select import representatives

    rng = np.random.default_rng(1)
    images = []
    for i in range(12):
        a = bulk("Si", "diamond", a=5.43, cubic=True)
        a.rattle(0.1, seed=int(rng.integers(1000)))
        a.info["generator"] = "random"
        images.append(a)
    picked = representatives(images, 4, min_distance=1.5)
    assert len(picked) == 4 and all(a.info["generator"] == "random" for a in picked)


@needs_descriptor
def test_representatives_accept_and_group():
    from ase_mlgen.select import representatives

    rng = np.random.default_rng(2)
    images = []
    for base in (molecule("CH3CH2OH"), molecule("CH3OCH3")):
        for i in range(10):
            a = base.copy()
            a.positions += rng.normal(0, 0.05, a.positions.shape)
            a.info["kind"] = base.get_chemical_formula() + ("_oh" if len(images) < 10 else "_ome")
            images.append(a)
    broken = molecule("CH3CH2OH")
    broken.positions[0] += [3.0, 0, 0]  # a carbon torn off: not one molecule
    images.append(broken)
    picked = representatives(images, 6, accept=is_valid_molecule)
    assert all(a.info.get("kind") for a in picked)
    # at most one structure per group: two groups give two picks however large k is
    picked = representatives(images, 6, group=lambda a: a.info.get("kind"))
    kinds = [a.info["kind"] for a in picked if "kind" in a.info]
    assert sorted(kinds) == ["C2H6O_oh", "C2H6O_ome"]  # the torn one has no group: no clash
    assert len(picked) <= 3


def test_representatives_prefer_takes_the_least_bad_level_that_leaves_k():
    from ase_mlgen.select import representatives

    rng = np.random.default_rng(5)
    images = []
    for badness in (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2):
        a = molecule("CH3CH2OH")
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.info["badness"] = badness
        images.append(a)
    score = lambda a: a.info["badness"]  # noqa: E731
    picked, info = representatives(images, 3, prefer=score, return_info=True)
    assert sorted(a.info["badness"] for a in picked) == [0, 0, 0]
    assert info["prefer_limit"] == 0
    picked, info = representatives(images, 5, prefer=score, return_info=True)
    assert len(picked) == 5 and max(a.info["badness"] for a in picked) == 1
    assert info["prefer_limit"] == 1
    picked = representatives(images, 50, prefer=score)   # fewer than k in all: take every level
    assert len(picked) == len(images)


def test_representatives_group_fill_covers_every_group():
    from ase_mlgen.select import representatives

    # group "a" fills two tight clumps; group "b" is one outlier at the edge of the first clump:
    # both k-means clusters offer an "a" first, the fill still adds "b"
    xs = [0.0, 0.01, 0.02, 0.03, 10.0, 10.01, 10.02, 10.03, 0.9]
    images = []
    for i, x in enumerate(xs):
        a = molecule("CH4")
        a.rattle(0.01, seed=i)                 # distinct structures (exact copies count once)
        a.info["kind"] = "b" if x == 0.9 else "a"
        images.append(a)
    features = np.array(xs)[:, None]
    picked = representatives(images, 2, features=features, group=lambda a: a.info["kind"],
                             random_state=0)
    assert sorted(a.info["kind"] for a in picked) == ["a", "b"]


def test_bks_forces_match_energy_and_quartz_is_stable():
    from ase.optimize import BFGS

    from ase_mlgen.generators.logan.bks import BKS

    quartz = alpha_quartz()
    a = quartz.copy()
    a.rattle(0.05, seed=3)
    a.calc = BKS()
    f = a.get_forces()
    h = 1e-4
    for k in range(3):
        b = a.copy()
        b.calc = BKS()
        b.positions[2, k] += h
        ep = b.get_potential_energy()
        b.positions[2, k] -= 2 * h
        em = b.get_potential_energy()
        assert abs(-(ep - em) / (2 * h) - f[2, k]) < 1e-4
    BFGS(a, logfile=None).run(fmax=0.05, steps=200)
    d = a.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    assert 1.5 < d.min() < 1.7  # Si-O bonds of corner-sharing tetrahedra
    assert (np.sum(d[:3, 3:] < 2.0, axis=1) == 4).all()
    assert a.get_potential_energy() / len(a) < -18.5
    rng = np.random.default_rng(0)
    while True:  # random atoms at least 1.4 Å apart, as the benchmark's baseline
        random = Atoms("Si3O6", cell=quartz.cell, pbc=True, scaled_positions=rng.random((9, 3)))
        d = random.get_all_distances(mic=True)
        if d[np.triu_indices(9, 1)].min() > 1.4:
            break
    random.calc = BKS()
    BFGS(random, logfile=None).run(fmax=0.05, steps=200)
    assert random.get_potential_energy() > a.get_potential_energy()


def test_member_settings_mix_short_and_long_members_with_their_own_seeds():
    from ase_mlgen.generators.logan.training import member_settings

    short = {"epochs": 20, "repulsion": 0.0, "random_state": 7}
    members = member_settings(3, random_state=0, variations=[short, {}, {}], epochs=100,
                              repulsion=10.0)
    assert [m["random_state"] for m in members] == [7, 1, 2]
    assert [m["params"]["epochs"] for m in members] == [20, 100, 100]
    assert [m["params"]["repulsion"] for m in members] == [0.0, 10.0, 10.0]
    assert all("random_state" not in m["params"] for m in members)
    with pytest.raises(ValueError, match="unknown LoGAN parameter"):
        member_settings(1, variations=[{"epoch": 3}])


def test_bks_short_range_force_is_continuous_at_its_cutoff():
    """A force step at the Buckingham cutoff stalls quasi-Newton relaxations: energy and force
    of the short-range term must both reach zero at ``short_cutoff``."""
    from ase_mlgen.generators.logan.bks import BKS

    calc = BKS()
    for pair in ((8, 8), (8, 14)):
        from ase_mlgen.generators.logan.bks import BUCKINGHAM

        params = BUCKINGHAM[pair]
        r = np.array([calc.rs - 1e-6, calc.rs - 0.5])
        e, de = calc._short(r, *params)
        assert abs(e[0]) < 1e-9 and abs(de[0]) < 1e-6
        uncut_e, uncut_de = calc._buckingham(r, *params)
        assert abs(uncut_de[0]) > 1e-3          # the uncut term does have a slope there
        h = 1e-5                                 # and the cut one stays consistent
        ep, _ = calc._short(r + h, *params)
        em, _ = calc._short(r - h, *params)
        assert np.allclose((ep - em) / (2 * h), de, atol=1e-7)


@needs_descriptor
def test_snapshots_are_kept_and_sampled():
    from ase_mlgen.generators.logan import LoGAN

    model = LoGAN(random_state=0, **{**TINY, "epochs": 6, "snapshot_every": 2,
                                     "snapshot_start": 4}).fit(training_molecules(),
                                                               composition="C2H6O")
    assert [s["epoch"] for s in model.snapshots] == [4, 6]
    images = model.generate(10, random_state=0, snapshots=True)
    assert len(images) == 10 and {a.info["snapshot"] for a in images} == {4, 6}


# -- molecule identity ------------------------------------------------------------------------
def _add_methyl(atoms: Atoms, h_index: int) -> Atoms:
    """Replace hydrogen ``h_index`` by a CH3 group (tetrahedral, C–C 1.53 Å, C–H 1.09 Å)."""
    d = atoms.get_distances(h_index, range(len(atoms)))
    d[h_index] = np.inf
    parent = int(np.argmin(d))
    u = atoms.positions[h_index] - atoms.positions[parent]
    u /= np.linalg.norm(u)
    c = atoms.positions[parent] + 1.53 * u
    p = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    p /= np.linalg.norm(p)
    q = np.cross(u, p)
    hs = []
    for k in range(3):
        phi = 2 * np.pi * k / 3
        direction = u * np.cos(np.radians(70.5)) + np.sin(np.radians(70.5)) * (
            np.cos(phi) * p + np.sin(phi) * q)
        hs.append(c + 1.09 * direction)
    keep = [i for i in range(len(atoms)) if i != h_index]
    symbols = [atoms.get_chemical_symbols()[i] for i in keep] + ["C", "H", "H", "H"]
    return Atoms(symbols, positions=np.vstack([atoms.positions[keep], [c], hs]))


def _h_on(atoms: Atoms, heavy: int) -> list[int]:
    graph = bond_graph(atoms)
    return [j for j in graph.neighbors(heavy) if atoms[j].symbol == "H"]


def test_bond_graph_identity_of_isomers():
    ethanol, ether = molecule("CH3CH2OH"), molecule("CH3OCH3")
    assert is_valid_molecule(ethanol) and is_valid_molecule(ether)
    assert not same_molecule(ethanol, ether)
    moved = ethanol.copy()
    moved.rotate(40, "x")
    moved.positions += 3.0
    assert same_molecule(ethanol, moved)
    shuffled = ethanol[np.random.default_rng(0).permutation(len(ethanol))]
    assert same_molecule(ethanol, shuffled)
    assert unique_molecules([ethanol, ether, moved, shuffled]) == [[0, 2, 3], [1]]
    broken = ethanol.copy()
    broken.positions[0] += [4.0, 0, 0]  # a carbon pulled away: fragments
    assert not is_valid_molecule(broken)


def _grow(base: Atoms, heavy_sequence: list[int]) -> Atoms:
    atoms = base.copy()
    for heavy in heavy_sequence:
        atoms = _add_methyl(atoms, _h_on(atoms, heavy)[0])
    return atoms


def test_c5h12o_isomers_are_distinguished():
    assert len(C5H12O_ISOMERS) == 14
    assert sum(v["kind"] == "alcohol" for v in C5H12O_ISOMERS.values()) == 8
    ethanol = molecule("CH3CH2OH")
    symbols = ethanol.get_chemical_symbols()
    o = symbols.index("O")
    c_oh = [i for i in bond_graph(ethanol).neighbors(o) if symbols[i] == "C"][0]
    c_me = [i for i, s in enumerate(symbols) if s == "C" and i != c_oh][0]
    # grow a carbon chain from the methyl end: ethanol -> propan-1-ol -> ... -> pentan-1-ol
    atoms = ethanol.copy()
    tip = c_me
    for _ in range(3):
        atoms = _add_methyl(atoms, _h_on(atoms, tip)[0])
        tip = len(atoms) - 4  # the new carbon
    assert classify_c5h12o(atoms) == "pentan-1-ol"
    # three methyls on the carbinol carbon's neighbour: 2,2-dimethylpropan-1-ol
    atoms = ethanol.copy()
    for _ in range(3):
        atoms = _add_methyl(atoms, _h_on(atoms, c_me)[0])
    assert classify_c5h12o(atoms) == "2,2-dimethylpropan-1-ol"
    # methyl ether + three methyls on one carbon: MTBE
    ether = molecule("CH3OCH3")
    c0 = [i for i, s in enumerate(ether.get_chemical_symbols()) if s == "C"][0]
    atoms = ether.copy()
    for _ in range(3):
        atoms = _add_methyl(atoms, _h_on(atoms, c0)[0])
    assert classify_c5h12o(atoms) == "2-methoxy-2-methylpropane"
    assert not same_molecule(atoms, _grow(ethanol, [c_me, c_me, c_me]))
    # wrong formula or broken molecule: None
    assert classify_c5h12o(ethanol) is None
    atoms.positions[0] += [5.0, 0, 0]
    assert classify_c5h12o(atoms) is None


@needs_descriptor
def test_crystal_identity():
    from ase_mlgen.structures.crystals import same_crystal, space_group, unique_crystals

    si = bulk("Si", "diamond", a=5.43)
    cubic = bulk("Si", "diamond", a=5.43, cubic=True)
    rotated = cubic.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    fcc = bulk("Si", "fcc", a=3.9)
    assert space_group(si).endswith("(227)")
    assert same_crystal(si, cubic) and same_crystal(cubic, rotated)
    assert not same_crystal(si, fcc)
    assert unique_crystals([si, fcc, cubic]) == [[0, 2], [1]]
