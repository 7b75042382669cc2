"""DING: composition vectors, the OQMD loader, training (loss, resume, background), save/load,
generation, latent walks and the CLI. Small synthetic data keep it fast; tests that read the
shared OQMD file skip when it is absent."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.formula import Formula

from ase_mlgen.data.oqmd import OQMDTable, load_oqmd, split, split_indices
from ase_mlgen.ding import composition as comp
from ase_mlgen.ding.composition import CompositionError
from ase_mlgen.ding.model import DING, Candidate
from tests.conftest import shared_file

# a few elements with made-up "properties" linear in the composition
_ELS = ["Li", "O", "Fe", "Ni", "Al", "Cu"]
_W_DE = {"Li": -0.5, "O": -2.0, "Fe": 0.3, "Ni": 0.1, "Al": -0.4, "Cu": 0.2}
_W_VOL = {"Li": 20.0, "O": 8.0, "Fe": 11.0, "Ni": 10.0, "Al": 16.0, "Cu": 12.0}

# tiny hyper-parameters (small networks, few epochs) so that the tests run in seconds
TINY = dict(epochs=20, batch_size=16, lr=3e-3, encoder_layers=(128, 64), latent_dim=8,
            decoder_layers=(64, 128), predictor_layers=(64, 32), predictor_dropout=(0.1, 0.0),
            predictor_epochs=3, finetune_epochs=3, predictor_batch_size=32, threads=1,
            device="cpu")


def synthetic_table(n: int = 240, seed: int = 0) -> OQMDTable:
    rng = np.random.default_rng(seed)
    comps, de, e, v = [], [], [], []
    seen = set()
    while len(comps) < n:
        k = rng.integers(2, 4)
        els = rng.choice(_ELS, size=k, replace=False)
        d = {str(s): int(rng.integers(1, 4)) for s in els}
        key = tuple(sorted(d.items()))
        if key in seen:
            continue
        seen.add(key)
        tot = sum(d.values())
        comps.append(d)
        de.append(sum(_W_DE[s] * c for s, c in d.items()) / tot)
        v.append(sum(_W_VOL[s] * c for s, c in d.items()) / tot)
        e.append(-4.0 + 1.5 * de[-1])
    return OQMDTable.from_compositions(comps, delta_e=de, energy_pa=e, volume_pa=v)


@pytest.fixture(scope="module")
def data():
    table = synthetic_table()
    return split(table, seed=0)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train, val, _ = data
    run = tmp_path_factory.mktemp("ding") / "run"
    model = DING(random_state=0, **TINY).train(train, val, run_dir=run)
    return model, run


# -- representation ------------------------------------------------------------------------
def test_element_list_and_sizes():
    assert len(comp.ELEMENTS) == 89 and len(set(comp.ELEMENTS)) == 89
    assert comp.VECTOR_SIZE == 979
    assert comp.ELEMENTS[0] == "H" and comp.ELEMENTS[-1] == "Pu"
    assert "Xe" in comp.ELEMENTS and "Po" not in comp.ELEMENTS


def test_round_trip_random():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 11, size=(200, 89)) * (rng.random((200, 89)) < 0.05)
    counts[:, 0] = np.maximum(counts[:, 0], 1)  # no empty composition
    vec = comp.counts_to_vector(counts)
    assert vec.shape == (200, 979)
    assert np.all(vec.reshape(200, 89, 11).sum(axis=2) == 1)
    assert np.array_equal(comp.vector_to_counts(vec), counts)
    for c in counts[:20]:
        f = comp.counts_to_formula(c)
        assert np.array_equal(comp.to_counts(f), c)
        assert np.array_equal(comp.to_counts(comp.oqmd_string(f)), c)


def test_parsing_inputs_agree():
    ref = comp.encode("Ba1Pt1U1")
    for x in ("BaPtU", "UPtBa", Formula("Ba1Pt1U1"), {"Ba": 1, "Pt": 1, "U": 1},
              Atoms("BaPtU")):
        assert np.array_equal(comp.encode(x), ref)
    assert comp.parse("Fe2O3") == {"Fe": 2, "O": 3}
    assert comp.oqmd_string("O3Fe2") == "Fe2O3"
    assert str(comp.decode(comp.encode("Nd2Pb1Re1"))) == "Nd2PbRe"
    assert comp.encode_many(["Fe2O3", "NaCl"]).shape == (2, 979)


@pytest.mark.parametrize("bad, words", [
    ("Fe11O", "at most 10"), ("Po1O1", "not one of the 89"), ("Xx2", "Unknown"),
    ("", "empty"), ({"Fe": -1}, "negative"), ({"Fe": 1.5}, "whole number"),
    ({"Fe": 0}, "no atoms"), (3.5, "cannot read"), ("Fe2(O", "cannot parse"),
])
def test_bad_compositions_rejected(bad, words):
    with pytest.raises(CompositionError, match=words if words != "Unknown" else "Xx"):
        comp.encode(bad)


def test_decode_rejects_zero_vector():
    zero = comp.counts_to_vector(np.zeros(89, dtype=int))
    with pytest.raises(CompositionError, match="zero atoms"):
        comp.decode(zero)
    assert comp.decode_many(np.stack([zero, comp.encode("NaCl")])) == [None, Formula("ClNa")]


def test_shared_oqmd_round_trip():
    path = shared_file("oqmd/oqmd_27k.csv")
    table = load_oqmd(path)
    assert len(table) + len(table.skipped) == 27207
    assert np.array_equal(comp.vector_to_counts(table.vectors()[:2000]), table.counts[:2000])
    assert [comp.oqmd_string(f) for f in table.formulas[:500]] == table.formulas[:500]


# -- data ----------------------------------------------------------------------------------
def test_load_csv_skips_and_split(tmp_path):
    csv = tmp_path / "o.csv"
    csv.write_text("comp,energy_pa,volume_pa,magmom_pa,bandgap,delta_e,stability\n"
                   "Ba1Pt1U1,-6.1,31.9,1.1,0.0,0.25,0.7\n"
                   "Fe2O3,-7.0,10.0,None,1.0,-1.6,None\n"
                   "Fe11O1,-7.0,10.0,None,1.0,-1.6,None\n"
                   "Po1O1,-4.0,20.0,None,1.0,-0.5,None\n"
                   "Na1Cl1,-3.4,22.0,0,5.0,None,0.0\n")
    table = load_oqmd(csv)
    assert table.formulas == ["Ba1Pt1U1", "Fe2O3"]
    assert len(table.skipped) == 3
    reasons = " ".join(r for _, r in table.skipped)
    assert "at most 10" in reasons and "Po" in reasons and "missing delta_e" in reasons
    loose = load_oqmd(csv, require=["energy_pa"])
    assert len(loose) == 3 and np.isnan(loose.properties["delta_e"][-1])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_oqmd(tmp_path / "absent.csv")
    tr, va, te = split_indices(1000, seed=3)
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    assert len(set(tr) | set(va) | set(te)) == 1000
    assert np.array_equal(split_indices(1000, seed=3)[0], tr)
    assert not np.array_equal(split_indices(1000, seed=4)[0], tr)


# -- training ------------------------------------------------------------------------------
def test_glorot_initialisation():
    """Every linear layer starts like the paper's Keras layers: Glorot-uniform weights (bound
    sqrt(6 / (fan_in + fan_out))), zero biases -- not PyTorch's smaller default, under which the
    eight-layer VAE only learns the marginal count distribution for many epochs."""
    from ase_mlgen.ding.nets import CompositionVAE, PropertyPredictor

    torch.manual_seed(0)
    for net in (CompositionVAE(3), CompositionVAE(0), PropertyPredictor()):
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        assert linears
        for lin in linears:
            fan_out, fan_in = lin.weight.shape
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            w = lin.weight.detach()
            assert float(w.abs().max()) <= bound + 1e-6
            # uniform on [-b, b]: standard deviation b / sqrt(3)
            if w.numel() >= 1000:
                assert abs(float(w.std()) - bound / 3 ** 0.5) < 0.1 * bound / 3 ** 0.5
            assert float(lin.bias.detach().abs().max()) == 0.0


def test_training_reduces_loss_and_learns(trained, data):
    model, run = trained
    gen = [r for r in model.history_ if r["stage"] == "generator"]
    assert len(gen) == TINY["epochs"]
    assert gen[-1]["train_loss"] < 0.5 * gen[0]["train_loss"]
    stages = {r["stage"] for r in model.history_}
    assert {"delta_e", "delta_e_finetune", "volume_pa_finetune"} <= stages
    assert (run / "model.pt").is_file() and (run / "result.json").is_file()
    _, _, test = data
    assert 0.0 <= model.reconstruction_accuracy(data[0]) <= 1.0
    pred = model.predict(test)
    assert set(pred) == {"delta_e", "energy_pa", "volume_pa"} and len(pred["delta_e"]) == len(test)


def test_save_load_identical(trained, data, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "ding.pt")
    again = DING.load(path)
    assert again.get_params() == model.get_params()
    for (k, a), (k2, b) in zip(model.generator_.state_dict().items(),
                               again.generator_.state_dict().items()):
        assert k == k2 and torch.equal(a.cpu(), b.cpu())
    test = data[2]
    p1, p2 = model.predict(test), again.predict(test)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    np.testing.assert_array_equal(model.scaler_mean_, again.scaler_mean_)
    np.testing.assert_array_equal(model.train_properties_, again.train_properties_)
    g1 = model.generate(5, delta_e=-1, energy_pa=-5.5, volume_pa=12, random_state=3)
    g2 = again.generate(5, delta_e=-1, energy_pa=-5.5, volume_pa=12, random_state=3)
    assert g1.formulas() == g2.formulas()


def test_load_refuses_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DING model"):
        DING.load(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a DING model"):
        DING.load(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError):
        DING.load(tmp_path / "missing.pt")


def test_generate_unique_valid(trained):
    model, _ = trained
    cands = model.generate(15, delta_e=-1.0, energy_pa=-5.5, volume_pa=12.0, random_state=0)
    assert 0 < len(cands) <= 15
    keys = [tuple(comp.to_counts(c)) for c in cands]
    assert len(set(keys)) == len(keys)
    for c in cands:
        assert isinstance(c, Candidate) and isinstance(c, Formula)
        assert sum(c.count().values()) > 0
        assert set(c.properties) == {"delta_e", "energy_pa", "volume_pa"}
        assert isinstance(c.novel, bool)
    assert cands.predictions().shape == (len(cands), 3)
    # filtering: by tolerance while generating and by ranges afterwards
    tol = model.generate(5, delta_e=-1.0, energy_pa=-5.5, volume_pa=12.0, random_state=0,
                         tolerance={"delta_e": 0.5}, max_samples=4000)
    assert all(abs(c.properties["delta_e"] + 1.0) <= 0.5 for c in tol)
    low = DING.filter(cands, delta_e=(None, -0.5))
    assert all(c.properties["delta_e"] <= -0.5 for c in low)
    with pytest.raises(ValueError, match="targets"):
        model.generate(3)
    with pytest.raises(ValueError, match="missing"):
        model.generate(3, delta_e=-1.0)


def test_vae_loss_is_the_summed_cross_entropy():
    """The fast logsumexp form equals torch's cross-entropy summed over the 89 elements."""
    from ase_mlgen.ding.nets import vae_loss

    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, comp.N_LEVELS, (7, comp.N_ELEMENTS), generator=g)
    x = torch.nn.functional.one_hot(counts, comp.N_LEVELS).float().view(7, -1)
    logits = torch.randn(7, comp.N_ELEMENTS, comp.N_LEVELS, generator=g)
    mu, lv = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    total, rec, kl = vae_loss(logits, x, mu, lv, recon_weight=10.0, kl_weight=0.05)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, comp.N_LEVELS),
                                            counts.reshape(-1), reduction="sum") / 7
    torch.testing.assert_close(rec, 10.0 * ref)
    torch.testing.assert_close(kl, 0.05 * (lv.exp() + mu ** 2 - 1 - lv).sum(1).mean())
    torch.testing.assert_close(total, rec + kl)


def test_generation_latents_and_sampling(trained):
    """Posterior latents sit at the training compositions' encodings; categorical decoding
    draws counts from the softmax (more distinct raw samples than argmax from the same z)."""
    model, _ = trained
    mu, sigma = model.training_latents()
    assert mu.shape == sigma.shape == (len(model.train_counts_), model.latent_dim)
    assert (sigma > 0).all()
    z0 = model.sample_latent(50, "posterior", 0.0, 1)
    assert all(np.isclose(mu, z).all(axis=1).any() for z in z0)   # temperature 0: the means
    zp = model.sample_latent(2000, "prior", 2.0, 1)
    assert abs(float(zp.std()) - 2.0) < 0.1
    z = model.sample_latent(300, "prior", 1.0, 2)
    t = dict(delta_e=-1.0, energy_pa=-5.5, volume_pa=12.0)
    a = model.decode(z, **t)
    np.testing.assert_array_equal(a, model.decode(z, **t, sampling="argmax"))
    c1 = model.decode(z, **t, sampling="categorical", random_state=3)
    np.testing.assert_array_equal(c1, model.decode(z, **t, sampling="categorical",
                                                   random_state=3))
    assert c1.min() >= 0 and c1.max() <= comp.MAX_COUNT
    # a very low decoding temperature is argmax again
    np.testing.assert_array_equal(a, model.decode(z, **t, sampling="categorical",
                                                  decode_temperature=1e-4, random_state=3))
    cands = model.generate(10, **t, random_state=0, latent="posterior", sampling="categorical")
    assert len({c.format() for c in cands}) == len(cands) > 0
    with pytest.raises(ValueError, match="latent"):
        model.generate(3, **t, latent="uniform")
    with pytest.raises(ValueError, match="sampling"):
        model.generate(3, **t, sampling="top-k")
    with pytest.raises(ValueError, match="predictor_schedule"):
        DING(predictor_schedule="linear")


def test_predictor_fraction_inputs(data, tmp_path):
    """``predictor_input="fractions"``: the predictors see atomic fractions, so compositions
    that differ only by a common factor get the same prediction; the setting survives
    save/load."""
    from ase_mlgen.ding.nets import PropertyPredictor, element_fractions

    x = torch.as_tensor(comp.counts_to_vector(np.stack(
        [comp.to_counts("Fe2O3"), comp.to_counts("Fe4O6"), comp.to_counts("FeO")])))
    f = element_fractions(x)
    fe, o = comp.ELEMENTS.index("Fe"), comp.ELEMENTS.index("O")
    torch.testing.assert_close(f[0, [fe, o]], torch.tensor([0.4, 0.6]))
    torch.testing.assert_close(f[0], f[1])
    torch.testing.assert_close(f.sum(dim=1), torch.ones(3))
    net = PropertyPredictor((16, 8), (0.0, 0.0), inputs="fractions").eval()
    y = net(x)
    assert torch.isclose(y[0], y[1]) and not torch.isclose(y[0], y[2])
    assert net.body[0].in_features == comp.N_ELEMENTS
    with pytest.raises(ValueError, match="predictor_input"):
        DING(predictor_input="counts")
    train, val, _ = data
    model = DING(random_state=0, **{**TINY, "epochs": 1, "predictor_epochs": 1,
                                    "finetune_epochs": 1}, predictor_input="fractions")
    model.train(train, val, run_dir=tmp_path / "run")
    pred = model.predict(["Fe2O3", "Fe4O6"])
    assert pred["delta_e"][0] == pytest.approx(pred["delta_e"][1], abs=1e-6)
    model.save(tmp_path / "m.pt")
    back = DING.load(tmp_path / "m.pt")
    assert back.predictor_input == "fractions"
    np.testing.assert_allclose(back.predict(["Fe2O3"])["volume_pa"], pred["volume_pa"][:1],
                               rtol=1e-6)


def test_predictor_ensemble(trained, data, tmp_path):
    """``predictor_input=("onehot", "fractions")``: one predictor per input kind and property,
    ``predict`` returns the members' mean (``return_std``: their spread); the ensemble survives
    save/load; ``warm_start`` keeps the trained generator and one-hot predictors and trains
    only the new members; bad settings are refused."""
    for bad in ("counts", ("onehot", "counts"), (), ("onehot", "onehot"), 3):
        with pytest.raises(ValueError, match="predictor_input"):
            DING(predictor_input=bad)
    base, _ = trained
    train, val, test = data
    model = DING.load(_save(base, tmp_path / "base.pt"))
    model.set_params(predictor_input=["onehot", "fractions"], predictor_epochs=1,
                     finetune_epochs=1)
    assert model.is_ensemble and model.predictor_inputs == ("onehot", "fractions")
    model.train(train, val, run_dir=tmp_path / "ens", warm_start=True)
    stages = {json.loads(line)["stage"]
              for line in (tmp_path / "ens" / "log.jsonl").read_text().splitlines()}
    assert stages == {f"{p}[fractions]{s}" for p in DING.properties for s in ("", "_finetune")}
    members = model.predict_members(test)
    mean, std = model.predict(test, return_std=True)
    ref = base.predict(test)
    for p in DING.properties:
        np.testing.assert_allclose(members[p]["onehot"], ref[p], rtol=1e-6, atol=1e-6)
        stack = np.stack([members[p]["onehot"], members[p]["fractions"]])
        np.testing.assert_allclose(mean[p], stack.mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(std[p], stack.std(axis=0), rtol=1e-5, atol=1e-6)
        assert std[p].max() > 0
    np.testing.assert_allclose(model.generator_.out.weight.detach(),
                               base.generator_.out.weight.detach())
    model.save(tmp_path / "ens.pt")
    back = DING.load(tmp_path / "ens.pt")
    assert back.predictor_input == ("onehot", "fractions")
    again = back.predict(test)
    for p in DING.properties:
        np.testing.assert_allclose(again[p], mean[p], rtol=1e-6)
    # the single-predictor default still reports a zero spread
    _, std1 = base.predict(test, return_std=True)
    assert all(not std1[p].any() for p in DING.properties)
    # warm start refuses another training set
    other = DING.load(tmp_path / "base.pt").set_params(predictor_input=("onehot", "fractions"))
    with pytest.raises(ValueError, match="another training set"):
        other.train(synthetic_table(120, seed=5), run_dir=tmp_path / "bad", warm_start=True)


def _save(model, path):
    model.save(path)
    return path


def test_predictor_early_stopping_is_separate(data, tmp_path):
    """``early_stopping`` ends only the generator stage; ``predictor_early_stopping`` the
    predictor stages."""
    from ase_mlgen.ding.training import _stages

    model = DING(random_state=0, **{**TINY, "epochs": 6, "predictor_epochs": 6,
                                    "finetune_epochs": 6, "lr": 1.0, "predictor_lr": 1.0},
                 early_stopping=1)
    assert [s[0] for s in _stages(model)][:3] == ["generator", "delta_e", "delta_e_finetune"]
    train, val, _ = data
    model.train(train, val, run_dir=tmp_path / "run")
    n = {}
    for r in model.history_:
        n[r["stage"]] = n.get(r["stage"], 0) + 1
    assert all(n[f"{p}{s}"] == 6 for p in DING.properties for s in ("", "_finetune"))
    assert DING(predictor_early_stopping=2).predictor_early_stopping == 2


def test_generate_min_elements(trained):
    """Valid compositions hold at least ``min_elements`` different elements (default 2:
    compounds, since an element has a formation enthalpy of 0 by definition)."""
    from ase_mlgen.ding.model import is_valid

    counts = np.zeros((3, comp.N_ELEMENTS), int)
    counts[1, 7] = 2                      # one element
    counts[2, [2, 7]] = (1, 3)            # two elements
    np.testing.assert_array_equal(is_valid(counts, 1), [False, True, True])
    np.testing.assert_array_equal(is_valid(counts, 2), [False, False, True])
    np.testing.assert_array_equal(is_valid(counts), is_valid(counts, 2))
    model, _ = trained
    t = dict(delta_e=-1.0, energy_pa=-5.5, volume_pa=12.0)
    # a hot decoder produces many unaries; none of them come back by default
    kw = dict(random_state=0, latent="prior", temperature=3.0, decode_temperature=3.0)
    cands = model.generate(20, **t, **kw)
    assert len(cands) > 0 and all(len(c.count()) >= 2 for c in cands)
    three = model.generate(10, **t, **kw, min_elements=3)
    assert len(three) > 0 and all(len(c.count()) >= 3 for c in three)
    z = model.sample_latent(400, "prior", 3.0, 0)
    raw = model.decode(z, **t, sampling="categorical", decode_temperature=3.0, random_state=0)
    assert ((raw > 0).sum(axis=1) == 1).any()   # unaries are decoded, generate drops them
    with pytest.raises(ValueError, match="min_elements"):
        model.generate(3, **t, min_elements=0)


def test_latent_walk(trained, data):
    model, _ = trained
    a, b = data[0].formulas[0], data[0].formulas[1]
    walk = model.walk(a, b, steps=7)
    assert len(walk) <= 7  # steps that decode to no atoms are left out
    steps = [c.info["step"] for c in walk]
    assert steps == sorted(set(steps)) and all(0 <= s < 7 for s in steps)
    for c in walk:
        assert c.info["t"] == pytest.approx(c.info["step"] / 6)
        assert set(c.properties) == {"delta_e", "energy_pa", "volume_pa"}
    # with the true properties of the ends, step 0 is the reconstruction of the start
    ends = data[0].subset([0, 1])
    props = [{p: ends.properties[p][i] for p in ends.properties} for i in (0, 1)]
    walk = model.walk(a, b, steps=3, start_properties=props[0], end_properties=props[1])
    start = model.reconstruct(ends)[0]
    if start.any():
        assert walk[0].info["step"] == 0
        assert np.array_equal(comp.to_counts(walk[0]), start)
    with pytest.raises(ValueError, match="at least 2"):
        model.walk(a, b, steps=1)


def test_vae_baseline(data, tmp_path):
    train, val, _ = data
    vae = DING(conditional=False, predictors=False, random_state=0,
               **{**TINY, "epochs": 3}).train(train, val, run_dir=tmp_path / "vae")
    assert vae.generator_.n_cond == 0
    cands = vae.generate(3, random_state=0, max_samples=2000)
    assert all(c.properties == {} for c in cands)
    with pytest.raises(ValueError, match="unconditioned"):
        vae.generate(3, delta_e=-1, energy_pa=-5, volume_pa=10)


def test_resume_matches_uninterrupted(data, tmp_path, monkeypatch):
    from ase_mlgen.jobs.run_directory import RunDirectory

    train, val, _ = data
    small = {**TINY, "epochs": 4, "predictor_epochs": 2, "finetune_epochs": 1,
             "predictor_schedule": "cosine"}
    full = DING(random_state=1, **small).train(train, val, run_dir=tmp_path / "full")

    original = RunDirectory.log
    calls = {"n": 0}

    def crash_after_5(self, record, plot_every=10):
        original(self, record, plot_every)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(RunDirectory, "log", crash_after_5)
    with pytest.raises(KeyboardInterrupt):
        DING(random_state=1, **small).train(train, val, run_dir=tmp_path / "cut")
    monkeypatch.setattr(RunDirectory, "log", original)
    with pytest.raises(ValueError, match="already holds a run"):
        DING(random_state=1, **small).train(train, val, run_dir=tmp_path / "cut")
    resumed = DING(random_state=1, **small).train(None, run_dir=tmp_path / "cut", resume=True)
    epochs = [r["epoch"] for r in resumed.history_]
    assert epochs == list(range(1, len(full.history_) + 1))
    for a, b in zip(full.generator_.state_dict().values(),
                    resumed.generator_.state_dict().values()):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(full.predict(val)["volume_pa"], resumed.predict(val)["volume_pa"],
                               rtol=1e-5, atol=1e-5)
    # cosine predictor schedule: the learning rate falls within each predictor stage
    lrs = [r["lr"] for r in full.history_ if r["stage"] == "delta_e"]
    assert lrs[-1] < lrs[0] <= TINY.get("predictor_lr", 1e-3)


def test_background_job(data, tmp_path):
    train, val, _ = data
    job = DING(random_state=0, **{**TINY, "epochs": 2, "predictors": False}).train(
        train, val, run_dir=tmp_path / "bg", background=True)
    model = job.result(timeout=300)
    assert isinstance(model, DING) and model.is_trained
    assert job.status()["state"] == "done"


def test_cli_train_and_generate(tmp_path, capsys):
    from ase_mlgen.cli.main import main

    table = synthetic_table(120, seed=5)
    csv = tmp_path / "t.csv"
    lines = ["comp,energy_pa,volume_pa,magmom_pa,bandgap,delta_e,stability"]
    for i, f in enumerate(table.formulas):
        lines.append(f"{f},{table.properties['energy_pa'][i]},{table.properties['volume_pa'][i]},"
                     f"None,0.0,{table.properties['delta_e'][i]},None")
    csv.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["ding", "train", str(csv), "--out", str(run), "--epochs", "2",
                 "--predictor-epochs", "1", "--finetune-epochs", "1", "--threads", "1",
                 "--device", "cpu", "--kl-weight", "0.075"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "done" and out["n_train"] == 96
    assert DING.load(run / "model.pt").kl_weight == 0.075
    assert main(["ding", "generate", str(run), "--delta-e", "-1", "--energy-pa", "-5.5",
                 "--volume-pa", "12", "-n", "5", "--out", str(tmp_path / "g.csv"),
                 "--latent", "posterior", "--sampling", "categorical"]) == 0
    text = (tmp_path / "g.csv").read_text().splitlines()
    assert text[0].startswith("comp,delta_e,energy_pa,volume_pa,novel")
    assert main(["ding", "generate", str(tmp_path / "t.csv"), "--delta-e", "-1",
                 "--energy-pa", "-5", "--volume-pa", "1"]) == 2
    assert "not a DING model" in capsys.readouterr().err
    assert main(["train", "ding", "--out", str(run), "--resume"]) in (0, 2)


# -- element-substitution augmentation (issue #8) ----------------------------------------------
def test_substitute_elements():
    """One present element gives its count to an absent one drawn from the weights; the other
    rows, the counts' multiset and the input tensor stay as they were."""
    from ase_mlgen.ding.nets import substitute_elements

    rng = np.random.default_rng(0)
    counts = np.zeros((500, comp.N_ELEMENTS), dtype=np.int64)
    for row in counts:
        k = rng.integers(1, 5)
        row[rng.choice(20, size=k, replace=False)] = rng.integers(1, 11, size=k)
    c = torch.as_tensor(counts)
    weights = torch.zeros(comp.N_ELEMENTS)
    weights[10:40] = 1.0                      # elements 40+ can never be drawn
    g = torch.Generator().manual_seed(1)
    out = substitute_elements(c, 1.0, weights, g)
    assert torch.equal(c, torch.as_tensor(counts))            # input untouched
    changed = (out != c).any(dim=1)
    # a row changes unless the drawn element was already present (20 of 30 weighted ones
    # can be): most rows change
    assert changed.float().mean() > 0.5
    assert torch.equal((out != c).sum(dim=1)[changed], torch.full((int(changed.sum()),), 2))
    assert torch.equal(out.sort(dim=1).values, c.sort(dim=1).values)
    assert torch.equal((out > 0).sum(dim=1), (c > 0).sum(dim=1))
    gained = (out > 0) & (c == 0)
    assert gained.sum(dim=1).max() == 1 and not gained[:, :10].any() and not gained[:, 40:].any()
    lost = (out == 0) & (c > 0)
    assert torch.equal(out[gained], c[lost])                  # the count moves along
    assert torch.equal(substitute_elements(c, 0.0, weights, g), c)
    half = (substitute_elements(c, 0.5, weights, g) != c).any(dim=1).float().mean()
    assert 0.2 < half < changed.float().mean()
    with pytest.raises(ValueError, match="probability"):
        substitute_elements(c, 1.5, weights)


def test_generator_substitution_and_cosine(data, tmp_path):
    """``substitution`` changes what the generator is trained on, ``schedule="cosine"`` anneals
    its learning rate to ``min_lr``; the defaults are the paper's."""
    assert DING().substitution == 0.0 and DING().schedule == "plateau"
    with pytest.raises(ValueError, match="substitution"):
        DING(substitution=-0.1)
    with pytest.raises(ValueError, match="schedule"):
        DING(schedule="step")
    train, val, _ = data
    opts = {**TINY, "epochs": 5, "predictors": False}
    plain = DING(random_state=0, schedule="cosine", **opts).train(train, val,
                                                                   run_dir=tmp_path / "a")
    aug = DING(random_state=0, schedule="cosine", substitution=0.5, **opts).train(
        train, val, run_dir=tmp_path / "b")
    lrs = [r["lr"] for r in aug.history_]
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] <= 1e-7
    w_plain = plain.generator_.out.weight.detach()
    assert not torch.allclose(w_plain, aug.generator_.out.weight.detach())
    assert [r["train_loss"] for r in plain.history_] != [r["train_loss"] for r in aug.history_]
    again = DING(random_state=0, schedule="cosine", **opts).train(train, val,
                                                                   run_dir=tmp_path / "c")
    assert torch.equal(w_plain, again.generator_.out.weight.detach())
    aug.save(tmp_path / "aug.pt")
    back = DING.load(tmp_path / "aug.pt")
    assert back.substitution == 0.5 and back.schedule == "cosine"


def test_substitution_labels_predicted(data, trained, tmp_path):
    """``substitution_labels="predicted"``: predictors first, then the generator on substituted
    variants conditioned on the predictors' values (the true properties where a substitution
    attempt changed nothing); bad settings are refused."""
    from ase_mlgen.data.oqmd import PROPERTIES
    from ase_mlgen.ding.composition import counts_to_vector
    from ase_mlgen.ding.training import _labelled_substitutions

    assert DING().substitution_labels == "original"
    with pytest.raises(ValueError, match="substitution_labels"):
        DING(substitution_labels="guessed")
    with pytest.raises(ValueError, match="predictors=True"):
        DING(substitution_labels="predicted", predictors=False)
    with pytest.raises(ValueError, match="conditional"):
        DING(False, substitution_labels="predicted")

    model, _ = trained
    train, val, _ = data
    counts = torch.as_tensor(train.counts)
    weights = (counts > 0).sum(dim=0).double()
    y = (train.targets(PROPERTIES) - model.scaler_mean_) / model.scaler_scale_
    pool, labels = _labelled_substitutions(counts, weights, model.predictors_, y, 7, "cpu",
                                           n_variants=3)
    assert pool.shape == (len(counts), 3, counts.shape[1]) and labels.shape == (len(counts), 3, 3)
    same = (pool == counts[:, None, :]).all(dim=2)
    assert 0 < same.float().mean() < 0.5
    assert torch.allclose(labels[same], torch.as_tensor(y, dtype=labels.dtype)[:, None, :]
                          .expand_as(labels)[same])
    i, k = map(int, (~same).nonzero()[0])
    with torch.no_grad():
        x = torch.as_tensor(counts_to_vector(pool[i, k][None].numpy()))
        want = torch.stack([model.predictors_[p](x) for p in PROPERTIES], dim=1)[0]
    assert torch.allclose(labels[i, k], want, atol=1e-5)
    again = _labelled_substitutions(counts, weights, model.predictors_, y, 7, "cpu",
                                    n_variants=3)
    assert torch.equal(pool, again[0])                  # drawn from the seed alone (resume)

    opts = {**TINY, "epochs": 3}
    relabelled = DING(random_state=0, substitution=0.5, substitution_labels="predicted",
                      **opts).train(train, val, run_dir=tmp_path / "r")
    stages = [r["stage"] for r in relabelled.history_]
    assert stages[-1] == "generator" and stages[0] != "generator"
    assert stages.count("generator") == 3
    original = DING(random_state=0, substitution=0.5, **opts).train(train, val,
                                                                     run_dir=tmp_path / "o")
    assert not torch.allclose(original.generator_.out.weight.detach(),
                              relabelled.generator_.out.weight.detach())
    relabelled.save(tmp_path / "r.pt")
    assert DING.load(tmp_path / "r.pt").substitution_labels == "predicted"
    assert len(relabelled.generate(5, delta_e=-1.0, energy_pa=-5.0, volume_pa=15.0,
                                   random_state=0)) > 0


def test_warm_start_predictors_only(data, tmp_path):
    """``warm_start="predictors"``: the predictors of a trained model are kept (every one of
    them, also when they train before the generator) and a new generator of other settings is
    trained from its own seed; an unknown value is refused."""
    train, val, _ = data
    opts = {**TINY, "epochs": 2}
    first = DING(random_state=0, substitution=0.5, substitution_labels="predicted",
                 **opts).train(train, val, run_dir=tmp_path / "a")
    second = DING.load(tmp_path / "a" / "model.pt").set_params(random_state=1, latent_dim=4)
    second.train(train, val, run_dir=tmp_path / "b", warm_start="predictors")
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert {json.loads(line)["stage"] for line in log} == {"generator"}
    assert second.generator_.mu.out_features == 4
    for p in first.predictors_:
        for a, b in zip(first.predictors_[p].parameters(), second.predictors_[p].parameters()):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="warm_start"):
        DING(**opts).train(train, val, run_dir=tmp_path / "c", warm_start="generator")


def test_decoder_conditioning_every_layer(data, tmp_path):
    """``decoder_conditioning="every_layer"``: every decoder layer sees the conditions (changing
    them changes the logits for one latent vector), the model trains, saves and loads; an
    unknown value is refused; the VAE baseline has no conditions to pass."""
    from ase_mlgen.ding.nets import CompositionVAE

    with pytest.raises(ValueError, match="decoder_conditioning"):
        DING(decoder_conditioning="output")
    net = CompositionVAE(3, latent_dim=4, decoder_layers=(8, 16),
                         decoder_conditioning="every_layer")
    assert [layer.in_features for layer in net.decoder] == [7, 11]
    assert net.out.in_features == 19
    assert not CompositionVAE(0, latent_dim=4, decoder_conditioning="every_layer").every_layer
    train, val, _ = data
    model = DING(random_state=0, decoder_conditioning="every_layer",
                 **{**TINY, "epochs": 2, "predictors": False}).train(train, val)
    z = torch.zeros(1, model.latent_dim)
    a = model.generator_.decode(z, torch.zeros(1, 3))
    b = model.generator_.decode(z, torch.ones(1, 3))
    assert not torch.allclose(a, b)
    model.save(tmp_path / "m.pt")
    again = DING.load(tmp_path / "m.pt")
    assert again.decoder_conditioning == "every_layer"
    assert torch.equal(again.generator_.decode(z, torch.ones(1, 3)), b)


def test_decoding_guidance(trained, data):
    """``guidance``: 0 decodes as before; g > 0 gives logits l_c + g (l_c − l_mean), i.e. the
    condition's effect on the logits scaled by 1 + g; at the training mean nothing changes; the
    unconditioned VAE refuses it; generate() passes it on."""
    model, _ = trained
    z = np.random.default_rng(0).normal(size=(6, model.latent_dim)).astype(np.float32)
    target = dict(delta_e=-1.0, energy_pa=-5.0, volume_pa=15.0)
    plain = model.decode(z, **target, sampling="argmax")
    assert np.array_equal(plain, model.decode(z, **target, sampling="argmax", guidance=0.0))
    l_c = model._decode_logits(z, **target)
    mean = np.repeat(model.scaler_mean_[None], len(z), axis=0)
    l_m = model._decode_logits(z, properties=mean)
    want = (l_c + 2.0 * (l_c - l_m)).reshape(len(z), -1, l_c.shape[-1]).argmax(-1).numpy()
    assert np.array_equal(model.decode(z, **target, sampling="argmax", guidance=2.0), want)
    assert np.array_equal(model.decode(z, properties=mean, guidance=3.0),
                          model.decode(z, properties=mean))
    vae = DING(False, random_state=0, **{**TINY, "epochs": 1, "predictors": False})
    vae.train(*data[:2])
    with pytest.raises(ValueError, match="guidance"):
        vae.decode(z[:, :vae.latent_dim], guidance=0.5)
    assert len(model.generate(5, **target, random_state=0, guidance=0.5)) == 5
    # generate's default: GENERATE_GUIDANCE for a CVAE (not 0), none for the VAE
    from ase_mlgen.ding.model import GENERATE_GUIDANCE

    default = model.generate(20, **target, random_state=1, sampling="argmax")
    assert default.formulas() == model.generate(20, **target, random_state=1, sampling="argmax",
                                                guidance=GENERATE_GUIDANCE).formulas()
    assert default.formulas() != model.generate(20, **target, random_state=1, sampling="argmax",
                                                guidance=0.0).formulas()
    assert len(vae.generate(3, random_state=0)) == 3
