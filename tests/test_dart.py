"""DART: dataset builder, network, calculator, training jobs, CLI, energy bins, HDNN baseline."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.db import connect

from ase_mlgen.calculators.dart import DART
from ase_mlgen.data import build_cluster_dataset, load_dataset, parse_sizes
from ase_mlgen.nn.dart import DARTNet

SMALL = {"embedding_dims": (3, 16, 16), "interaction_dims": (16, 16, 8, 1)}


@pytest.fixture(scope="module")
def cu_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("data") / "cu.db"
    build_cluster_dataset("Cu", "6-7", 3, "emt", db, frames=2, steps=15, seed=1, progress=False)
    return db


@pytest.fixture(scope="module")
def cu_images(cu_db):
    return load_dataset(cu_db)


def test_parse_sizes():
    assert parse_sizes("31-33,40") == [31, 32, 33, 40]
    assert parse_sizes(13) == [13]
    with pytest.raises(ValueError, match="sizes"):
        parse_sizes("a-b")


def test_dataset_rows_and_resume(cu_db, tmp_path):
    con = connect(cu_db)
    rows = list(con.select())
    assert len(rows) >= 6 * 2
    row = rows[0]
    for key in ("relaxed", "final", "frame", "teacher", "seed"):
        assert key in row.key_value_pairs
    assert row.teacher == "emt" and row.natoms in (6, 7)
    assert row.get("energy") is not None and row.get("forces") is not None
    finals = list(con.select(final=1))
    assert 1 <= len(finals) <= 6
    # rerunning completes nothing new; a larger per_size adds only the new starts
    n = con.count()
    again = build_cluster_dataset("Cu", "6-7", 3, "emt", cu_db, frames=2, steps=15, seed=1,
                                  progress=False)
    assert again["relaxations"] == 0 and connect(cu_db).count() == n
    more = build_cluster_dataset("Cu", "6-7", 4, "emt", cu_db, frames=2, steps=15, seed=1,
                                 progress=False)
    assert more["relaxations"] == 2 and connect(cu_db).count() > n
    # a second writer is refused while the database is being built
    from ase_mlgen.utils.io import exclusive_lock

    with exclusive_lock(cu_db):
        with pytest.raises(RuntimeError, match="another process"):
            build_cluster_dataset("Cu", "6-7", 5, "emt", cu_db, frames=2, steps=15, seed=1,
                                  progress=False)


def test_frames_from_the_late_part_of_the_path(cu_db):
    from ase_mlgen.data.clusters import choose_frames

    path = [100.0, 40.0, 12.0, 6.0, 3.0, 1.0, 0.5, 0.0]   # eV along a relaxation, last = final
    assert choose_frames(path, 3, None, 10) == [0, 2, 4]    # whole path, the start first
    assert choose_frames(path, 3, 0.6, 10) == [3, 4, 5]     # only frames within 6 eV of the end
    assert choose_frames(path, 9, 0.6, 10) == [3, 4, 5, 6]  # at most every frame once
    assert choose_frames(path, 3, 0.001, 10) == []           # nothing in the window
    con = connect(cu_db)
    assert con.metadata["frame_window"] == 0.1
    for row in con.select(final=0):
        assert 0 <= row.e_above_final <= 0.1 * row.natoms
    with pytest.raises(ValueError, match="frame_window"):
        build_cluster_dataset("Cu", "6-7", 4, "emt", cu_db, frames=2, steps=15, seed=1,
                              frame_window=None, progress=False)


def test_duplicate_minima_removed(tmp_path):
    db = tmp_path / "dup.db"
    # Cu4 relaxes to the same tetrahedron from every start
    out = build_cluster_dataset("Cu", 4, 4, "emt", db, frames=0, steps=300, fmax=0.01,
                                progress=False)
    assert out["duplicate_minima"] >= 1
    assert connect(db).count() == 4 - out["duplicate_minima"]


def test_network_invariance_and_padding():
    torch.manual_seed(0)
    net = DARTNet(**SMALL).double().requires_grad_(False)
    rng = np.random.default_rng(0)
    pos = torch.as_tensor(rng.uniform(0, 8, (1, 12, 3)))
    e = net(pos).sum()
    rot = torch.as_tensor(__import__("scipy").spatial.transform.Rotation.random(
        random_state=1).as_matrix())
    assert float(net(pos @ rot.T + 3.0).sum()) == pytest.approx(float(e), rel=1e-10)
    perm = torch.randperm(12)
    assert float(net(pos[:, perm]).sum()) == pytest.approx(float(e), rel=1e-10)
    padded = torch.cat([pos, torch.zeros(1, 3, 3, dtype=pos.dtype)], dim=1)
    mask = torch.zeros(1, 15, dtype=torch.bool)
    mask[0, :12] = True
    ep = net(padded, mask)
    assert float(ep.sum()) == pytest.approx(float(e), rel=1e-10)
    assert torch.all(ep[0, 12:] == 0)


def test_default_network_is_the_papers():
    net = DARTNet()
    dims = [m.out_features for m in net.interaction if isinstance(m, torch.nn.Linear)]
    assert dims == [256, 128, 32, 1]
    for mlp_ in (net.mlp_f, net.mlp_j, net.mlp_k, net.mlp_l):
        assert [m.out_features for m in mlp_ if isinstance(m, torch.nn.Linear)] == [128, 128]
    assert any(isinstance(m, torch.nn.CELU) for m in net.interaction)


@pytest.mark.parametrize("shells", [(3.49, 6.3, 15.0), (3.49, 6.3), (2.5, 4.0, 6.0)])
def test_tabulated_fast_path_matches_the_network(shells):
    """The tabulated, folded inference path gives the plain network's energies (float32)."""
    from ase_mlgen.generators.random import RandomClusters
    from ase_mlgen.nn.dart_fast import TabulatedDART, macs_per_atom

    torch.manual_seed(0)
    net = DARTNet(shells=shells).eval()       # the paper's sizes, float32 as trained
    with torch.no_grad():                     # scales as after fit_reference
        net.tad_scale.copy_(torch.tensor([6.0, 20.0, 12.0]))
        net.energy_reference.fill_(-2.6)
        net.energy_scale.fill_(0.05)
    images = RandomClusters("Ga30", min_distance=0.85, random_state=3).generate(40)
    pos = torch.as_tensor(np.stack([a.positions for a in images]), dtype=torch.float32)
    with torch.inference_mode():
        plain = net(pos)
    fast = TabulatedDART(net, chunk_atoms=210, threads=1)(pos)   # several chunks, the last one partial
    assert fast.shape == plain.shape
    assert torch.allclose(fast, plain, atol=2e-5, rtol=0)
    assert torch.equal(TabulatedDART(net, chunk_atoms=210, threads=2)(pos), fast)   # chunks in 2 threads
    assert torch.allclose(fast.sum(-1), plain.sum(-1), atol=2e-4, rtol=0)
    # through the calculator: fast (default) and plain agree
    fast_calc, plain_calc = DART(net, chunk_atoms=60), DART(net, fast=False)
    assert np.allclose(fast_calc.predict(images[:5]), plain_calc.predict(images[:5]), atol=2e-4)
    atoms = images[0].copy()
    atoms.calc = fast_calc
    assert atoms.get_potential_energy() == pytest.approx(float(plain[0].sum()), abs=2e-4)
    assert macs_per_atom(50) < macs_per_atom(50, fast=False)
    with pytest.raises(ValueError, match="integer TAD"):
        TabulatedDART(DARTNet(width=0.1))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_fast_celu_equals_torch_celu_to_rounding(alpha):
    """The NumPy-expm1 CELU of the fast path gives torch's CELU to an ulp, in place."""
    from ase_mlgen.nn.dart_fast import celu_

    torch.manual_seed(1)
    h = torch.randn(300, 256) * 30          # large negative values too (exp underflows)
    expected = torch.nn.functional.celu(h, alpha)
    out = celu_(h, alpha)
    assert out.data_ptr() == h.data_ptr()
    assert torch.allclose(out, expected, rtol=2e-7, atol=2e-7)
    assert torch.equal(out[expected > 0], expected[expected > 0])
    g = torch.randn(4, 8, requires_grad=True)  # autograd input: torch's own kernel
    assert torch.allclose(celu_(g.clone(), alpha), torch.nn.functional.celu(g, alpha))


@pytest.fixture(scope="module")
def trained(cu_images, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "dart"
    return DART.train(cu_images, device="cpu", run_dir=run, max_epochs=4, **SMALL), run


def test_calculator_energy_energies_predict(trained, cu_images):
    calc, run = trained
    atoms = cu_images[0].copy()
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert np.isfinite(e)
    assert atoms.get_potential_energies().sum() == pytest.approx(e, rel=1e-5)
    pred = calc.predict(cu_images[:5])
    assert pred[0] == pytest.approx(e, rel=1e-5, abs=1e-4)
    with pytest.raises(PropertyNotImplementedError, match="integer TAD"):
        atoms.get_forces()
    for name in ("log.jsonl", "checkpoint_last.pt", "checkpoint_best.pt", "curve.png",
                 "model.pt"):
        assert (run / name).exists()


def test_save_load_and_refusals(trained, cu_images, tmp_path):
    calc, _ = trained
    path = calc.save(tmp_path / "m.pt")
    back = DART.load(path)
    np.testing.assert_allclose(back.predict(cu_images[:4]), calc.predict(cu_images[:4]))
    assert back.species == ["Cu"]
    data = torch.load(path, weights_only=False)
    for key in ("format", "version", "species", "shells", "width", "hyper",
                "energy_reference_eV_per_atom"):
        assert key in data
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an ase_mlgen model"):
        DART.load(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a DART model"):
        DART.load(tmp_path / "text.pt")
    with pytest.raises(ValueError, match="Ga"):
        calc.predict([Atoms("Ga3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]])])


def test_smooth_tad_gives_forces(cu_images, tmp_path):
    calc = DART.train(cu_images, device="cpu", run_dir=tmp_path / "smooth", max_epochs=2,
                      width=0.2, **SMALL)
    calc.model.double()
    atoms = cu_images[0].copy()
    atoms.calc = calc
    f = atoms.get_forces()
    h = 1e-4
    pos = atoms.positions.copy()
    for i, x in ((0, 0), (3, 2)):
        p = pos.copy(); p[i, x] += h
        m = pos.copy(); m[i, x] -= h
        atoms.positions = p
        ep = atoms.get_potential_energy()
        atoms.positions = m
        em = atoms.get_potential_energy()
        assert -(ep - em) / (2 * h) == pytest.approx(f[i, x], rel=1e-4, abs=1e-6)


def test_background_training_and_resume(cu_images, tmp_path):
    run = tmp_path / "bg"
    job = DART.train(cu_images, device="cpu", run_dir=run, max_epochs=3, background=True,
                     **SMALL)
    assert job.pid is not None
    calc = job.result(timeout=300)
    assert isinstance(calc, DART)
    assert job.status()["epoch"] == 3
    # a finished run continues to more epochs with resume
    from ase_mlgen.cli.main import main

    assert main(["train", "dart", "--out", str(run), "--resume", "--max-epochs", "5"]) == 0
    assert job.status()["epoch"] == 5


def test_cli_train_and_predict(cu_db, tmp_path, capsys):
    from ase.io import write

    from ase_mlgen.cli.main import main

    out = tmp_path / "cli_run"
    assert main(["train", "dart", str(cu_db), "--select", "natoms>=6", "--out", str(out),
                 "--device", "cpu", "--max-epochs", "2"]) == 0
    xyz = tmp_path / "s.xyz"
    write(xyz, load_dataset(cu_db)[:3])
    capsys.readouterr()
    assert main(["predict", str(out / "model.pt"), str(xyz)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert main(["predict", str(out), str(xyz), "--db", str(tmp_path / "p.db")]) == 0
    assert connect(tmp_path / "p.db").count() == 3


def test_train_hooks_missing_is_skipped_other_errors_surface(tmp_path, monkeypatch):
    from ase_mlgen.cli import train

    assert train._import_hook("ase_mlgen.no_such_model.cli_hooks") is None
    (tmp_path / "broken_hook_for_test.py").write_text("import a_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_missing"):
        train._import_hook("broken_hook_for_test")


def test_energy_bins(trained, cu_images):
    from ase_mlgen.select import energy_bins

    calc, _ = trained
    picks = energy_bins(cu_images, calc, 4)
    assert 1 <= len(picks) <= 4
    bins = [a.info["energy_bin"] for a in picks]
    assert bins == sorted(set(bins))
    e = np.arange(10.0)
    imgs = [Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]]) for _ in range(10)]
    picks = energy_bins(imgs, None, 5, per_atom=False, energies=e)
    assert [a.info["source_index"] for a in picks] == [0, 2, 4, 6, 8]


def test_hdnn_baseline_trains(cu_images, tmp_path):
    from ase_mlgen.nn.hdnn import HDNNNet
    from ase_mlgen.nn.training import EnergyTrainer, predict_features

    model = HDNNNet(species=["Cu"], r_cut=5.0, hidden=(8,))
    EnergyTrainer(max_epochs=2, device="cpu").fit(model, cu_images[:20], cu_images[20:])
    pred = predict_features(model, model.featurize_images(cu_images[:3]))
    assert pred.shape == (3,) and torch.isfinite(pred).all()


def test_cli_dataset_clusters(tmp_path, capsys):
    from ase_mlgen.cli.main import main

    db = tmp_path / "lj.db"
    assert main(["dataset", "clusters", "--element", "Cu", "--sizes", "4-5", "--per-size", "1",
                 "--teacher", "emt", "--db", str(db), "--steps", "5", "--frames", "1",
                 "--quiet"]) == 0
    assert '"relaxations": 2' in capsys.readouterr().out
    assert connect(db).count() >= 2
    assert main(["dataset", "clusters", "--element", "Cu", "--sizes", "4", "--per-size", "1",
                 "--teacher", "nonsense", "--db", str(db)]) == 2


def test_fast_path_flushes_subnormals_only_inside_and_keeps_energies():
    """The fast path flushes subnormal floats (CELU of very negative pre-activations) only
    while it runs, restores the caller's mode, and still gives the plain network's energies."""
    from ase_mlgen.generators.random import RandomClusters
    from ase_mlgen.nn.dart_fast import TabulatedDART, _flush_denormal_on, flushed_denormals

    torch.manual_seed(1)
    net = DARTNet().eval()          # unscaled TAD: pre-activations reach -100 and below
    images = RandomClusters("Ga20", random_state=1).generate(30)
    pos = torch.as_tensor(np.stack([a.positions for a in images]), dtype=torch.float32)
    with torch.inference_mode():
        plain = net(pos)
    assert not _flush_denormal_on()
    fast = TabulatedDART(net, chunk_atoms=100, threads=1)(pos)
    assert not _flush_denormal_on()                 # restored
    scale = float(plain.abs().max())
    assert torch.allclose(fast, plain, atol=2e-6 * scale, rtol=0)
    if torch.set_flush_denormal(True):              # the caller's own setting survives
        try:
            with flushed_denormals():
                assert _flush_denormal_on()
            assert _flush_denormal_on()
        finally:
            torch.set_flush_denormal(False)
