"""Conditional VAE in fingerprint space (Fung et al. 2022) and :class:`FingerprintGenerator`.

The cVAE encodes a (min-max scaled) fingerprint together with its property ``y`` into a latent
Gaussian and decodes ``(z, y)`` back to a fingerprint. Generation at a target property samples
``z ~ N(0, I)`` and decodes ``(z, target)`` (the paper's), or samples ``z`` from the encoder's
posteriors of the training points whose property is nearest the target (``latent="posterior"``:
the aggregated posterior near the target, which the decoder was trained on, instead of the
prior); ``screen=k`` keeps the best of k candidates by the surrogate (a filter). Paper defaults:
three hidden layers of 128, latent 25, β = 0.75 on the KL term, Adam with learning rate 1e-3,
batch 64; the authors' code also decays the learning rate to 0.2× and uses weight decay 1e-3
(``lr_final``, ``weight_decay``; off by default). A surrogate property model
(:class:`~ase_mlgen.inversion.surrogate.SurrogateModel`, five layers of 256) is trained alongside
to judge generated fingerprints; for per-atom fingerprints ``surrogate="atomic"`` with
``atom_features=F`` trains an :class:`~ase_mlgen.inversion.surrogate.AtomicSurrogate` instead
(mean of one MLP over the atoms; more accurate from few structures).

Training runs through :func:`ase_mlgen.jobs.submit` (task :func:`train_task`, loader
:func:`load_generator`): per-epoch log, checkpoints, ``resume=True`` and ``background=True``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ase_mlgen.inversion.surrogate import (AtomicSurrogate, Standardizer, SurrogateModel,
                                           check_surrogate, make_surrogate, mlp)

DEFAULTS = {
    "hidden": [128, 128, 128],
    "latent": 25,
    "beta": 0.75,
    "lr": 1e-3,
    "batch_size": 64,
    "epochs": 500,
    "surrogate": "mlp",   # "mlp": whole vector (the paper's); "atomic": per-atom fingerprints,
                          # mean of one MLP over atoms (needs atom_features)
    "atom_features": None,  # features per atom of a per-atom fingerprint vector (atomic)
    "surrogate_hidden": [256] * 5,
    "surrogate_lr": 1e-3,
    "surrogate_epochs": None,  # same as epochs
    "seed": 0,
    "device": "auto",
    "checkpoint_every": 25,
    "scaling": "minmax",  # fingerprints to [0, 1] per feature (as in the paper's code)
    "kl_warmup": 0,       # epochs of a linear ramp of beta from 0 (0: beta from the start)
    "free_bits": 0.0,     # KL floor per latent dimension (nats; 0: plain KL)
    "balance": False,     # batches drawn with weights ~ 1 / density of the property
    "weight_decay": 0.0,  # Adam L2 penalty, cVAE and surrogate (the authors' code: 1e-3)
    "lr_final": 1.0,      # learning rate after the last epoch / lr, exponential per epoch
                          # (the authors' code: 0.2)
    # stored with the model so that generated fingerprints can be inverted later
    "descriptor": None,  # e.g. ACSF.todict()
    "pooling": None,     # e.g. ["max", "min"]
    "numbers": None,     # atomic numbers of the structures, e.g. [78] * 10
}


def nearest_to_target(values: np.ndarray, target: float, n: int) -> np.ndarray:
    """Indices (ascending) of the ``n`` entries of ``values`` nearest ``target``; ties keep the
    earlier entry."""
    order = np.argsort(np.abs(np.asarray(values, dtype=float) - float(target)), kind="stable")
    return np.sort(order[:max(int(n), 0)])


class CVAE(nn.Module):
    """Encoder ``[x, y] -> (mu, logvar)``, decoder ``[z, y] -> x`` (MLPs with ReLU)."""

    def __init__(self, n_features: int, n_cond: int = 1, hidden=(128, 128, 128),
                 latent: int = 25):
        super().__init__()
        self.n_features, self.n_cond, self.latent = n_features, n_cond, latent
        self.hidden = list(hidden)
        self.encoder = mlp(n_features + n_cond, self.hidden, 2 * latent, nn.ELU)
        self.decoder = mlp(latent + n_cond, self.hidden[::-1], n_features, nn.ELU)

    def encode(self, x, y):
        h = self.encoder(torch.cat([x, y], dim=-1))
        return h[..., :self.latent], h[..., self.latent:]

    def decode(self, z, y):
        return self.decoder(torch.cat([z, y], dim=-1))

    def forward(self, x, y):
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, y), mu, logvar

    @staticmethod
    def loss(recon, x, mu, logvar, beta: float, free_bits: float = 0.0):
        """Summed squared reconstruction error + ``beta`` × KL to N(0, I); with ``free_bits``
        each latent dimension's batch-mean KL counts at least that many nats (Kingma et al.
        2016), so that the latent is not switched off. Returns (loss, rec, plain KL)."""
        rec = ((recon - x) ** 2).sum(-1).mean()
        kl_dim = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).mean(0)
        kl = kl_dim.sum()
        penalty = kl_dim.clamp_min(free_bits).sum() if free_bits > 0 else kl
        return rec + beta * penalty, rec, kl


class FingerprintGenerator:
    """A trained cVAE (+ surrogate) that proposes fingerprints at a target property.

    ``generate(n, target)`` returns ``(n, F)`` raw fingerprints (the units of the training data);
    ``predict(fingerprints)`` evaluates the surrogate. Build one with :meth:`train` (job machinery,
    background/resume) or :meth:`fit` (in this process).
    """

    def __init__(self, cvae: CVAE, x_scaler: Standardizer, y_mean: float, y_std: float,
                 surrogate: SurrogateModel | None = None, config: dict | None = None,
                 nonnegative: bool = True, latent_bank: dict | None = None):
        self.cvae = cvae.eval()
        # training properties (raw units) with their encoder posteriors (mu, logvar): the
        # latent="posterior" sampler draws from it
        self.latent_bank = latent_bank
        self.x_scaler = x_scaler
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.surrogate = surrogate
        self.config = dict(config or {})
        self.nonnegative = nonnegative

    @property
    def n_features(self) -> int:
        return self.cvae.n_features

    @torch.no_grad()
    def generate(self, n: int, target: float, seed: int | None = None,
                 temperature: float = 1.0, screen: int = 1, latent: str = "prior",
                 neighbours: int = 40) -> np.ndarray:
        """``n`` fingerprints decoded at property ``target`` (raw units of the training data).

        ``latent="prior"`` (the paper's): ``z ~ N(0, temperature² I)``. ``latent="posterior"``:
        ``z = mu_i + temperature · sigma_i · eps`` with ``i`` drawn uniformly from the
        ``neighbours`` training points whose property is nearest ``target`` and ``(mu_i,
        sigma_i)`` their encoder posterior — samples from the aggregated posterior near the
        target, the latent distribution the decoder saw in training (with a nearly collapsed
        latent the prior misses it, most at the ends of the data). The surrogate is not used.

        ``screen > 1`` is a **surrogate filter**, not the cVAE alone: ``screen × n`` candidates
        are decoded and the ``n`` whose surrogate property is closest to ``target`` are returned
        (needs the surrogate). Judging screened samples with the same surrogate is circular; judge
        them with an independent model.
        """
        screen = int(screen)
        if screen < 1:
            raise ValueError(f"screen must be >= 1 (candidates per returned sample); got {screen}")
        if screen > 1 and self.surrogate is None:
            raise ValueError("screen > 1 needs the surrogate; this generator has none")
        if latent not in ("prior", "posterior"):
            raise ValueError(f"latent must be 'prior' or 'posterior'; got {latent!r}")
        if latent == "posterior" and self.latent_bank is None:
            raise ValueError("latent='posterior' needs the training posteriors, which this model "
                             "file lacks (trained before they were stored); retrain or resume it")
        p = next(self.cvae.parameters())
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy
                                                               % (2 ** 31)))
        m = n * screen
        eps = torch.randn(m, self.cvae.latent, generator=gen) * temperature
        if latent == "prior":
            z = eps
        else:
            bank = self.latent_bank
            near = np.argsort(np.abs(np.asarray(bank["y"]) - float(target)), kind="stable")
            near = torch.as_tensor(near[:max(int(neighbours), 1)])
            idx = near[torch.randint(len(near), (m,), generator=gen)]
            mu = torch.as_tensor(np.asarray(bank["mu"]), dtype=torch.float32)[idx]
            sigma = torch.exp(0.5 * torch.as_tensor(np.asarray(bank["logvar"]),
                                                    dtype=torch.float32)[idx])
            z = mu + sigma * eps
        z = z.to(p)
        y = torch.full((m, 1), (float(target) - self.y_mean) / self.y_std).to(p)
        x = self.x_scaler.inverse(self.cvae.decode(z, y).cpu().numpy())
        if self.nonnegative:
            x = np.maximum(x, 0.0)
        if screen > 1:
            x = x[nearest_to_target(self.predict(x), target, n)]
        return x

    def predict(self, fingerprints: np.ndarray) -> np.ndarray:
        if self.surrogate is None:
            raise ValueError("this generator was trained without a surrogate model")
        return self.surrogate.predict(fingerprints)

    # -- training -------------------------------------------------------------------------------
    @classmethod
    def train(cls, fingerprints: np.ndarray, properties: np.ndarray, run_dir=None, *,
              background: bool = False, resume: bool = False, **settings):
        """Train through :func:`ase_mlgen.jobs.submit`; returns the :class:`~ase_mlgen.jobs.Job`
        (``job.result()`` gives the :class:`FingerprintGenerator`). ``settings`` override
        :data:`DEFAULTS` (``epochs``, ``beta``, ``latent``, ``hidden``, ``device`` …)."""
        from ase_mlgen.jobs import submit

        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: "
                             f"{sorted(DEFAULTS)}")
        if run_dir is None:
            run_dir = tempfile.mkdtemp(prefix="fp_cvae_")
        run_dir = Path(run_dir)
        data = run_dir / "data.npz"
        if not resume or not data.exists():
            x = np.asarray(fingerprints, dtype=np.float64)
            y = np.asarray(properties, dtype=np.float64).reshape(-1)
            if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
                raise ValueError(f"fingerprints must be (n, F) and properties (n,), got "
                                 f"{x.shape} and {y.shape}")
            # refuse bad surrogate settings before the job starts
            check_surrogate(settings.get("surrogate", "mlp"), x.shape[1],
                            settings.get("atom_features"))
            run_dir.mkdir(parents=True, exist_ok=True)
            np.savez(data, x=x, y=y)
        config = {**DEFAULTS, **settings, "data": str(data.resolve())}
        return submit("ase_mlgen.inversion.cvae:train_task", config, run_dir,
                      background=background, resume=resume,
                      loader="ase_mlgen.inversion.cvae:load_generator")

    @classmethod
    def fit(cls, fingerprints, properties, run_dir=None, **settings) -> "FingerprintGenerator":
        """Train in this process and return the generator."""
        return cls.train(fingerprints, properties, run_dir, **settings).result()

    def save(self, path) -> None:
        from ase_mlgen.utils.io import atomic_torch_save

        atomic_torch_save(_state(self.cvae, self.x_scaler, self.y_mean, self.y_std,
                                 self.surrogate, self.config, self.latent_bank), path)

    @classmethod
    def load(cls, path) -> "FingerprintGenerator":
        path = Path(path)
        if path.is_dir():
            return load_generator(path)
        from ase_mlgen.utils.io import read_model_file

        path, state = read_model_file(path, "fingerprint generator")
        if not isinstance(state, dict) or "cvae" not in state or "x_scaler" not in state:
            raise ValueError(f"{path} is not a fingerprint-generator (cVAE) model file")
        return _from_state(state)


def _state(cvae, x_scaler, y_mean, y_std, surrogate, config, latent_bank=None):
    return {"latent_bank": latent_bank,
            "cvae": {"n_features": cvae.n_features, "n_cond": cvae.n_cond,
                     "hidden": cvae.hidden, "latent": cvae.latent,
                     "state_dict": {k: v.cpu() for k, v in cvae.state_dict().items()}},
            "x_scaler": x_scaler.state(), "y_mean": y_mean, "y_std": y_std,
            "surrogate": None if surrogate is None else surrogate.state(), "config": config}


def _from_state(state: dict) -> FingerprintGenerator:
    c = state["cvae"]
    cvae = CVAE(c["n_features"], c["n_cond"], c["hidden"], c["latent"])
    cvae.load_state_dict(c["state_dict"])
    sur = SurrogateModel.from_state(state["surrogate"]) if state.get("surrogate") else None
    return FingerprintGenerator(cvae, Standardizer(**state["x_scaler"]), state["y_mean"],
                                state["y_std"], sur, state.get("config"),
                                latent_bank=state.get("latent_bank"))


def load_generator(run_dir) -> FingerprintGenerator:
    """Loader of a finished training run: the generator from ``checkpoint_last.pt``."""
    from ase_mlgen.jobs import RunDirectory

    rd = RunDirectory(run_dir)
    ckpt = rd.load_checkpoint("last")

    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint")
    return _from_state(ckpt["model"])


def _balance_weights(y: np.ndarray, bins: int = 10) -> torch.Tensor:
    """Sampling weights ~ 1 / (number of training points in the property's histogram bin)."""
    counts, edges = np.histogram(y, bins=bins)
    idx = np.clip(np.digitize(y, edges[1:-1]), 0, bins - 1)
    return torch.as_tensor(1.0 / counts[idx], dtype=torch.float64)


def train_task(run_dir, config: dict, resume: bool) -> dict:
    """Job task: train the cVAE and the surrogate on ``config["data"]`` (npz with x, y)."""
    from ase_mlgen.utils.device import resolve_device

    dev = resolve_device(config.get("device", "auto"))
    data = np.load(config["data"])
    x_raw, y_raw = data["x"], data["y"]
    config = {**config, "y_range": [float(np.percentile(y_raw, q)) for q in (0, 10, 50, 90, 100)]}
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    x_scaler = Standardizer.fit(x_raw, config.get("scaling", "minmax"))
    y_mean, y_std = float(y_raw.mean()), float(y_raw.std() or 1.0)
    x = torch.as_tensor(x_scaler.transform(x_raw), dtype=torch.float32, device=dev)
    y = torch.as_tensor((y_raw - y_mean) / y_std, dtype=torch.float32, device=dev)[:, None]

    cvae = CVAE(x.shape[1], 1, config["hidden"], int(config["latent"])).to(dev)
    wd = float(config.get("weight_decay") or 0.0)
    opt = torch.optim.Adam(cvae.parameters(), lr=float(config["lr"]), weight_decay=wd)
    sur = make_surrogate(config.get("surrogate") or "mlp", x.shape[1],
                         tuple(config["surrogate_hidden"]), config.get("atom_features")).to(dev)
    if isinstance(sur, AtomicSurrogate):  # its own per-atom-feature scaling
        sur.x_scaler = sur.fit_scaler(x_raw)
        xs = torch.as_tensor(sur.x_scaler.transform(x_raw), dtype=torch.float32, device=dev)
    else:  # the paper's surrogate sees the same scaled inputs as the cVAE
        sur.x_scaler, xs = x_scaler, x
    sur.y_mean, sur.y_std = y_mean, y_std
    sopt = torch.optim.Adam(sur.parameters(), lr=float(config["surrogate_lr"]), weight_decay=wd)
    epochs = int(config["epochs"])
    sur_epochs = int(config.get("surrogate_epochs") or epochs)
    lr_final = float(config.get("lr_final", 1.0) or 1.0)
    max_epochs = max(epochs, sur_epochs)
    start = 0
    if resume:
        ckpt = run_dir.load_checkpoint("last", map_location=dev)
        if ckpt is not None:
            cvae.load_state_dict(ckpt["cvae_state"])
            opt.load_state_dict(ckpt["opt"])
            sur.load_state_dict(ckpt["sur_state"])
            sopt.load_state_dict(ckpt["sopt"])
            start = int(ckpt["epoch"])
    gen = torch.Generator().manual_seed(seed + start)
    bs = int(config["batch_size"])
    beta = float(config["beta"])
    warmup = int(config.get("kl_warmup") or 0)
    free_bits = float(config.get("free_bits") or 0.0)
    sample_w = _balance_weights(y_raw) if config.get("balance") else None
    n = len(x)
    every = max(int(config.get("checkpoint_every", 25)), 1)

    def checkpoint(epoch):
        cvae.eval()
        sur.eval()
        with torch.no_grad():  # encoder posteriors of the training data (latent="posterior")
            mu, logvar = cvae.encode(x, y)
        bank = {"y": y_raw.astype(np.float32), "mu": mu.cpu().numpy(),
                "logvar": logvar.cpu().numpy()}
        run_dir.save_checkpoint({"epoch": epoch, "cvae_state": cvae.state_dict(),
                                 "opt": opt.state_dict(), "sur_state": sur.state_dict(),
                                 "sopt": sopt.state_dict(),
                                 "model": _state(cvae, x_scaler, y_mean, y_std, sur,
                                                 {k: v for k, v in config.items()}, bank)})

    for epoch in range(start + 1, max_epochs + 1):
        t0 = time.perf_counter()
        cvae.train()
        sur.train()
        order = torch.randperm(n, generator=gen).to(dev)
        sur_order = order  # the surrogate always sees the data as they are
        if sample_w is not None:  # cVAE: property-balanced draws, weights ~ 1 / density
            order = torch.multinomial(sample_w, n, replacement=True, generator=gen).to(dev)
        beta_e = beta * min(1.0, epoch / warmup) if warmup else beta
        for o, lr0, n_ep in ((opt, config["lr"], epochs), (sopt, config["surrogate_lr"],
                                                            sur_epochs)):
            for group in o.param_groups:  # lr0 * lr_final ** ((epoch - 1) / n_ep)
                group["lr"] = float(lr0) * lr_final ** (min(epoch - 1, n_ep) / n_ep)
        tot = rec_t = kl_t = s_t = 0.0
        for b0 in range(0, n, bs):
            idx = order[b0:b0 + bs]
            if epoch <= epochs:
                recon, mu, logvar = cvae(x[idx], y[idx])
                loss, rec, kl = CVAE.loss(recon, x[idx], mu, logvar, beta_e, free_bits)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(idx)
                rec_t += float(rec.detach()) * len(idx)
                kl_t += float(kl.detach()) * len(idx)
            if epoch <= sur_epochs:
                sidx = sur_order[b0:b0 + bs]
                sl = ((sur(xs[sidx]) - y[sidx, 0]) ** 2).mean()
                sopt.zero_grad()
                sl.backward()
                sopt.step()
                s_t += float(sl.detach()) * len(idx)
        run_dir.log({"epoch": epoch, "max_epochs": max_epochs, "train_loss": tot / n,
                     "recon_loss": rec_t / n, "kl_loss": kl_t / n,
                     "surrogate_loss": s_t / n * y_std ** 2, "lr": opt.param_groups[0]["lr"],
                     "epoch_seconds": time.perf_counter() - t0}, plot_every=max(every, 25))
        if epoch % every == 0 or epoch == max_epochs:
            checkpoint(epoch)
    if start >= max_epochs:
        checkpoint(max_epochs)
    return {"epochs": max_epochs, "n_train": n, "n_features": int(x.shape[1])}
