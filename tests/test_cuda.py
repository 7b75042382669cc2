"""CUDA paths, skipped without a GPU: each trainer runs on CUDA (in this process and as a
background job), the model files it writes load on the CPU, and for the same weights the CPU
and the GPU give the same numbers (float32 rounding apart)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.cluster import Icosahedron

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available() is False)")

SMALL_DART = {"embedding_dims": (3, 16, 16), "interaction_dims": (16, 16, 8, 1)}


def _on_cuda(module: torch.nn.Module) -> bool:
    return all(p.is_cuda for p in module.parameters())


@pytest.fixture(scope="module")
def cu_images(tmp_path_factory):
    from ase_mlgen.data import build_cluster_dataset, load_dataset

    db = tmp_path_factory.mktemp("cuda_data") / "cu.db"
    build_cluster_dataset("Cu", "6-7", 3, "emt", db, frames=2, steps=15, seed=1, progress=False)
    return load_dataset(db)


# -- DART ------------------------------------------------------------------------------------
def test_dart_trains_on_cuda_and_cpu_predictions_agree(cu_images, tmp_path):
    from ase_mlgen.calculators.dart import DART

    run = tmp_path / "dart"
    calc = DART.train(cu_images, device="cuda", run_dir=run, max_epochs=3, **SMALL_DART)
    assert calc.device.type == "cuda" and _on_cuda(calc.model)
    cpu = DART.load(run / "model.pt", device="cpu")
    gpu = DART.load(run / "model.pt", device="cuda")
    assert _on_cuda(gpu.model) and not _on_cuda(cpu.model)
    many = cu_images * 40                                     # large enough for the fast path
    for fast in (True, False):
        cpu.fast = gpu.fast = fast
        np.testing.assert_allclose(gpu.predict(many), cpu.predict(many), rtol=1e-5, atol=1e-4)
    atoms = cu_images[0].copy()
    atoms.calc = gpu
    e_gpu, ei_gpu = atoms.get_potential_energy(), atoms.get_potential_energies()
    atoms.calc = cpu
    assert e_gpu == pytest.approx(atoms.get_potential_energy(), rel=1e-5, abs=1e-4)
    np.testing.assert_allclose(ei_gpu, atoms.get_potential_energies(), rtol=1e-5, atol=1e-4)


def test_dart_smooth_tad_forces_on_cuda_match_cpu(cu_images, tmp_path):
    from ase_mlgen.calculators.dart import DART

    DART.train(cu_images, device="cuda", run_dir=tmp_path / "smooth", max_epochs=2, width=0.2,
               **SMALL_DART)
    forces = []
    for device in ("cuda", "cpu"):
        calc = DART.load(tmp_path / "smooth" / "model.pt", device=device)
        atoms = cu_images[1].copy()
        atoms.calc = calc
        forces.append(atoms.get_forces())
    assert np.abs(forces[0]).max() > 0
    np.testing.assert_allclose(forces[0], forces[1], rtol=1e-4, atol=1e-5)


def test_dart_background_job_on_cuda_resumes(cu_images, tmp_path):
    from ase_mlgen.calculators.dart import DART
    from ase_mlgen.cli.main import main

    run = tmp_path / "bg"
    job = DART.train(cu_images, device="cuda", run_dir=run, max_epochs=2, background=True,
                     **SMALL_DART)
    calc = job.result(timeout=600)
    assert isinstance(calc, DART) and job.status()["epoch"] == 2
    assert main(["train", "dart", "--out", str(run), "--resume", "--max-epochs", "3",
                 "--device", "cuda"]) == 0
    assert job.status()["epoch"] == 3


# -- MeGen -----------------------------------------------------------------------------------
def test_megen_ppo_on_cuda_and_policy_agrees_with_cpu(tmp_path):
    from ase_mlgen.generators.megen import MeGen

    seeds = [Icosahedron("Cu", 2)[:k] for k in (6, 9)]
    megen = MeGen(element="Cu", random_state=0, device="cuda",
                  policy_kwargs={"n_directions": 256})
    run = tmp_path / "megen"
    megen.train(run, seeds=seeds, calculator="emt", iterations=2, episodes=8, minibatch=8,
                ppo_epochs=1, max_atoms=12)
    assert _on_cuda(megen.policy)
    out = megen.generate(16, seeds=seeds)
    assert len(out) == 16 and all(len(a) in (7, 10) for a in out)
    gpu = MeGen.load(run / "checkpoint_last.pt", device="cuda").policy.eval()
    cpu = MeGen.load(run / "checkpoint_last.pt", device="cpu").policy.eval()
    canvas = Icosahedron("Cu", 2)[:10]
    canvas.rattle(0.05, seed=2)
    with torch.no_grad():
        oc = cpu(cpu.make_batch([canvas], [["Cu"]]))
        og = gpu(gpu.make_batch([canvas], [["Cu"]]), focal=oc["focal"].cuda(),
                 distance=oc["distance"].cuda(), dir_index=oc["dir_index"].cuda())
    for key in ("value", "log_prob_distance", "log_prob"):
        torch.testing.assert_close(og[key].cpu(), oc[key], rtol=1e-4, atol=1e-4)


# -- LoGAN -----------------------------------------------------------------------------------
LOGAN_TINY = dict(epochs=4, rattle=2, batch_size=4, n_critic=2, n_penalty=2, r_cut=4.0,
                  n_max=3, max_neighbours=8, generator_layers=(32, 16), critic_layers=(16, 8),
                  log_every=1, checkpoint_every=2)


@pytest.mark.parametrize("periodic", [False, True])
def test_logan_fits_on_cuda_and_generates_as_on_cpu(periodic, tmp_path):
    from ase_mlgen.generators.logan import LoGAN

    if periodic:
        train = [bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
        kwargs = {"composition": "Na4Cl4", "cell": train[0].cell.array}
    else:
        train = [molecule("CH3CH2OH"), molecule("CH3OCH3")]
        kwargs = {"composition": "C3H8O"}
    model = LoGAN(random_state=0, device="cuda", **LOGAN_TINY).fit(train, **kwargs)
    assert _on_cuda(model.generator) and _on_cuda(model.critic)
    path = model.save(tmp_path / "logan.pt")
    cpu = LoGAN.load(path, device="cpu")
    np.testing.assert_allclose(model.generate_positions(32, random_state=5),
                               cpu.generate_positions(32, random_state=5), atol=1e-4)
    images = model.generate(8, random_state=1)
    assert len(images) == 8 and all(a.pbc.all() == periodic for a in images)
    np.testing.assert_allclose(model.critic_scores(images[:3]), cpu.critic_scores(images[:3]),
                               rtol=1e-4, atol=1e-4)


def test_logan_contact_prior_on_cuda_matches_cpu():
    """The short-contact prior (every periodic image, skewed cell) gives the CPU's penalty and
    gradient on CUDA, and a LoGAN with it trains there."""
    from ase_mlgen.generators.logan import LoGAN
    from ase_mlgen.generators.logan.contacts import contact_penalty, floor_matrix

    cell = torch.tensor([[5.0, 0.0, 0.0], [4.6, 1.2, 0.0], [0.3, 0.4, 4.0]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(4)
    pos = (torch.rand(3, 6, 3, generator=gen, dtype=torch.float64) @ cell)
    floors = floor_matrix([14, 14, 8, 8, 8, 8], {(8, 14): 1.6, (8, 8): 2.4, (14, 14): 2.9},
                          1.0).double()
    results = []
    for device in ("cpu", "cuda"):
        x = pos.detach().clone().to(device).requires_grad_(True)
        pen = contact_penalty(x, floors.to(device), cell.to(device))
        pen.sum().backward()
        results.append((pen.detach().cpu(), x.grad.cpu()))
    assert results[0][0].sum() > 0
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])
    model = LoGAN(random_state=0, device="cuda", repulsion=10.0, **LOGAN_TINY).fit(
        [bulk("NaCl", "rocksalt", a=5.64, cubic=True)], composition="Na4Cl4")
    assert all(np.isfinite(r["contact_penalty"]) for r in model.history)


def test_logan_background_job_on_cuda(tmp_path):
    from ase_mlgen.generators.logan.training import train

    job = train([molecule("CH3CH2OH"), molecule("CH3OCH3")], composition="C3H8O",
                run_dir=tmp_path / "run", background=True, random_state=0, device="cuda",
                **LOGAN_TINY)
    model = job.result(timeout=600)
    assert len(model.generate(4, random_state=0)) == 4


# -- fingerprint inversion -------------------------------------------------------------------
def _small_acsf(species, r_cut=5.0):
    from ase_mlgen.descriptors.acsf import ACSF

    g2 = [[eta, rs] for eta in (0.5, 2.0) for rs in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)]
    g5 = [[0.005, z, lam] for z in (1, 4) for lam in (-1, 1)]
    return ACSF(species, r_cut=r_cut, g2_params=g2, g5_params=g5)


@pytest.mark.parametrize("case", ["molecule", "pooled", "crystal"])
def test_inverter_reconstructs_on_cuda(case):
    from ase_mlgen.inversion.compare import cluster_rmsd, periodic_rmsd
    from ase_mlgen.inversion.inverter import ACSFInverter

    if case == "crystal":
        atoms = bulk("NaCl", "rocksalt", a=5.64)
        inv = ACSFInverter(_small_acsf(["Na", "Cl"]), n_init=4, n_hops=2, steps=100, lr=0.1,
                           random_state=1, device="cuda")
    else:
        atoms = molecule("NH3")
        inv = ACSFInverter(_small_acsf(["H", "N"]), n_init=6, n_hops=3, steps=150, lr=0.1,
                           pooling=("max", "min") if case == "pooled" else None,
                           random_state=0, device="cuda")
    rec = inv.reconstruct_from(atoms)
    assert isinstance(rec, Atoms) and np.isfinite(rec.info["reconstruction_loss"])
    rmsd = periodic_rmsd(atoms, rec) if case == "crystal" else cluster_rmsd(atoms, rec)
    assert rmsd < 0.1


def test_cvae_trains_on_cuda_and_loads_on_cpu(tmp_path):
    from ase_mlgen.inversion.cvae import FingerprintGenerator

    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    x = np.abs(np.outer(y, np.ones(6)) + 0.1 * rng.normal(size=(40, 6))) + 1.0
    gen = FingerprintGenerator.fit(x, y, tmp_path / "run", epochs=3, latent=4, hidden=[16] * 3,
                                   surrogate_hidden=[16] * 5, device="cuda")
    fps = gen.generate(5, 0.5, seed=0)
    assert fps.shape == (5, 6) and np.isfinite(fps).all()
    gen.save(tmp_path / "gen.pt")
    cpu = FingerprintGenerator.load(tmp_path / "gen.pt")
    assert not _on_cuda(cpu.cvae)
    np.testing.assert_allclose(cpu.generate(5, 0.5, seed=0), fps, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cpu.predict(fps), gen.predict(fps), rtol=1e-4, atol=1e-4)


# -- DING ------------------------------------------------------------------------------------
def test_ding_trains_on_cuda_and_loads_on_cpu(tmp_path):
    from ase_mlgen.data.oqmd import OQMDTable, split
    from ase_mlgen.ding.model import DING

    rng = np.random.default_rng(0)
    els = ["Li", "O", "Fe", "Ni", "Al", "Cu"]
    comps, seen = [], set()
    while len(comps) < 160:
        chosen = rng.choice(els, size=int(rng.integers(2, 4)), replace=False)
        d = {str(s): int(rng.integers(1, 4)) for s in chosen}
        key = tuple(sorted(d.items()))
        if key not in seen:
            seen.add(key)
            comps.append(d)
    de = [-0.3 * d.get("O", 0) / sum(d.values()) for d in comps]
    table = OQMDTable.from_compositions(comps, delta_e=de, energy_pa=[-4 + x for x in de],
                                        volume_pa=[12.0 + x for x in de])
    train, val, test = split(table, seed=0)
    tiny = dict(epochs=3, batch_size=16, encoder_layers=(64, 32), latent_dim=8,
                decoder_layers=(32, 64), predictor_layers=(32, 16), predictor_dropout=(0.1, 0.0),
                predictor_epochs=2, finetune_epochs=1, predictor_batch_size=32)
    model = DING(random_state=0, device="cuda", **tiny).train(train, val,
                                                               run_dir=tmp_path / "run")
    assert _on_cuda(model.generator_)
    cpu = DING.load(model.save(tmp_path / "ding.pt"), device="cpu")
    assert not _on_cuda(cpu.generator_)
    p_gpu, p_cpu = model.predict(test), cpu.predict(test)
    for key in p_gpu:
        np.testing.assert_allclose(p_gpu[key], p_cpu[key], rtol=1e-4, atol=1e-4)
    assert len(model.generate(5, delta_e=-0.1, energy_pa=-4.1, volume_pa=12,
                              random_state=3)) > 0
