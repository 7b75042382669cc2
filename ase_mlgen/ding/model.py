"""DING: compositions with target formation enthalpy, energy and volume per atom.

:class:`DING` holds a (conditional) VAE over one-hot compositions
(:mod:`ase_mlgen.ding.composition`) and three property predictors (``delta_e`` and ``energy_pa``
in eV/atom, ``volume_pa`` in Å³/atom). Defaults are the paper's (Pathak, Juneja, Varma, Ehara,
Priyakumar, "DING"; github.com/devalab/DING notebooks): latent 32, loss 10 × cross-entropy +
0.05 × KL, Adam (lr 1e-3), batch 256, learning rate × 0.1 after 5 epochs without improvement,
150 generator epochs; predictors trained with an L1 loss for 120 epochs with dropout and 120
more without. Properties are standardised inside the model (mean and spread of the training
set), so every public method takes and returns eV/atom and Å³/atom.

    >>> from ase_mlgen import DING
    >>> from ase_mlgen.data.oqmd import load_oqmd, split
    >>> train, val, test = split(load_oqmd(), seed=0)
    >>> model = DING(random_state=0).train(train, val, run_dir="runs/ding1")
    >>> cands = model.generate(1000, delta_e=-2.0, energy_pa=-6.5, volume_pa=12)
    >>> cands[0], cands[0].properties            # Candidate (an ase Formula) and predictions
    >>> model.save("ding.pt"); DING.load("ding.pt")
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from ase.formula import Formula

from ase_mlgen.data.oqmd import PROPERTIES, UNITS, OQMDTable
from ase_mlgen.ding import composition as comp

FORMAT = "ase_mlgen.ding"
FORMAT_VERSION = 2  # 2: predictor ensembles (files without one are still written as 1)

#: how a substituted training composition is conditioned: on its original's properties, or on
#: what the (first trained) predictors give the substituted composition
SUBSTITUTION_LABELS = ("original", "predicted")
#: ``DING.train(warm_start=…)``: nothing, everything trained (True), the predictors only
WARM_STARTS = (False, True, "predictors")

#: hyper-parameters and their defaults (the paper's settings; see the module docstring)
DEFAULTS: dict[str, Any] = {
    "conditional": True,
    "latent_dim": 32,
    "encoder_layers": (512, 256, 128),
    "decoder_layers": (128, 256, 512),
    "recon_weight": 10.0,
    "kl_weight": 0.05,
    "epochs": 150,
    "batch_size": 256,
    "lr": 1e-3,
    "lr_factor": 0.1,
    "lr_patience": 5,
    "min_lr": 1e-8,
    "schedule": "plateau",
    "substitution": 0.0,
    "substitution_labels": "original",
    "substitution_variants": 4,
    "decoder_conditioning": "input",
    "early_stopping": None,
    "predictor_early_stopping": None,
    "predictors": True,
    "predictor_layers": (1024, 1024, 1024, 512, 128, 64, 32),
    "predictor_dropout": (0.0, 0.7, 0.7, 0.5, 0.0, 0.0, 0.0),
    "predictor_epochs": 120,
    "finetune_epochs": 120,
    "predictor_lr": 1e-3,
    "predictor_batch_size": 256,
    "predictor_min_lr": 1e-5,
    "predictor_schedule": "plateau",
    "predictor_input": "onehot",
    "val_fraction": 0.1,
    "random_state": 0,
    "device": "auto",
    "threads": None,
}


class Candidate(Formula):
    """A generated composition: an :class:`ase.formula.Formula` that also carries the
    predictors' values (``properties``: ``{"delta_e": eV/atom, "energy_pa": eV/atom,
    "volume_pa": Å³/atom}``), whether it is ``novel`` (not among the training compositions) and
    free-form ``info`` (e.g. the step of a latent walk)."""

    def __init__(self, formula: str | Formula, properties: Mapping[str, float] | None = None,
                 novel: bool | None = None, info: Mapping[str, Any] | None = None):
        super().__init__(str(formula))
        self.properties = {k: float(v) for k, v in (properties or {}).items()}
        self.novel = novel
        self.info = dict(info or {})

    def __repr__(self) -> str:
        props = ", ".join(f"{k}={v:.3f}" for k, v in self.properties.items())
        return f"Candidate({self.format()!r}{', ' + props if props else ''})"

    @property
    def oqmd(self) -> str:
        """OQMD spelling, e.g. ``Ba1Pt1U1``."""
        return comp.oqmd_string(self)


class Candidates(list):
    """A list of :class:`Candidate` with table-like helpers."""

    def predictions(self, names: Sequence[str] = PROPERTIES) -> np.ndarray:
        """``(N, len(names))`` predicted properties (NaN where a model has no predictor)."""
        return np.array([[c.properties.get(n, np.nan) for n in names] for c in self],
                        dtype=float).reshape(len(self), len(names))

    def formulas(self) -> list[str]:
        return [c.format() for c in self]

    def fraction_novel(self) -> float:
        flags = [c.novel for c in self if c.novel is not None]
        return float(np.mean(flags)) if flags else float("nan")

    def write_csv(self, path: str | os.PathLike) -> Path:
        """``comp,delta_e,energy_pa,volume_pa,novel`` (OQMD spelling), written atomically."""
        from ase_mlgen.utils.io import atomic_write

        names = sorted({k for c in self for k in c.properties}, key=_prop_order)
        info_keys = sorted({k for c in self for k in c.info})

        def write(fh):
            fh.write(",".join(["comp", *names, "novel", *info_keys]) + "\n")
            for c in self:
                vals = [c.oqmd, *(f"{c.properties.get(n, float('nan')):.6g}" for n in names),
                        "" if c.novel is None else str(int(c.novel)),
                        *(str(c.info.get(k, "")) for k in info_keys)]
                fh.write(",".join(vals) + "\n")

        return atomic_write(path, write, mode="w")


SAMPLINGS = ("argmax", "categorical")
LATENTS = ("prior", "posterior")
# a CVAE's decoding guidance in generate() unless given. With the posterior latents, of the
# strengths 0, 0.5 and 1 only 0.5 meets every generation target of issue #8, in all ten trained
# model pairs of two recipes (doc/ding.md "Seventh round"); 0 leaves the samples near their
# training compositions' properties and 1 overshoots energy and volume
GENERATE_GUIDANCE = 0.5


def _one_of(name: str, value, choices: tuple):
    """``value`` if it is one of ``choices``, else a ValueError naming the parameter."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}")
    return value


def _pick_counts(logits, sampling: str = "argmax", decode_temperature: float = 1.0,
                 random_state=None) -> np.ndarray:
    """Counts ``(N, 89)`` from decoder logits ``(N, 89, 11)``: the most probable count of each
    element (``"argmax"``) or one drawn from each element's softmax of ``logits /
    decode_temperature`` (``"categorical"``)."""
    import torch

    if sampling == "argmax":
        return logits.argmax(dim=2).numpy()
    if sampling != "categorical":
        raise ValueError(f"sampling must be one of {SAMPLINGS}, not {sampling!r}")
    if not decode_temperature > 0:
        raise ValueError(f"decode_temperature must be positive, got {decode_temperature}")
    gen = random_state if isinstance(random_state, torch.Generator) else \
        torch.Generator().manual_seed(int(random_state if random_state is not None
                                          else np.random.SeedSequence().entropy % 2**63))
    prob = torch.softmax(logits.double() / float(decode_temperature), dim=2)
    flat = prob.reshape(-1, prob.shape[2])
    return torch.multinomial(flat, 1, generator=gen).view(prob.shape[:2]).numpy()


def is_valid(counts: np.ndarray, min_elements: int = 2) -> np.ndarray:
    """Which decoded compositions (counts ``(N, 89)``) are valid: at least ``min_elements``
    different elements (2: compounds; 1: any composition with atoms). See
    :meth:`DING.generate`."""
    counts = np.atleast_2d(np.asarray(counts))
    return (counts > 0).sum(axis=1) >= max(int(min_elements), 1)


def _check_predictor_input(value) -> str | tuple[str, ...]:
    """``"onehot"`` / ``"fractions"`` (one predictor per property) or a sequence of them (an
    ensemble per property, one member per entry)."""
    from ase_mlgen.ding.nets import PREDICTOR_INPUTS

    msg = (f"predictor_input must be 'onehot' (the paper's 979-long vector), 'fractions' (89 "
           f"atomic fractions) or a sequence of them for an ensemble, e.g. "
           f"('onehot', 'fractions'); got {value!r}")
    if isinstance(value, str):
        if value not in PREDICTOR_INPUTS:
            raise ValueError(msg)
        return value
    try:
        kinds = tuple(value)
    except TypeError:
        raise ValueError(msg) from None
    if not kinds or any(k not in PREDICTOR_INPUTS for k in kinds):
        raise ValueError(msg)
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"predictor_input {value!r} names an input kind twice; each ensemble "
                         f"member needs its own kind")
    return kinds


def _prop_order(name: str) -> int:
    return PROPERTIES.index(name) if name in PROPERTIES else len(PROPERTIES)


class DING:
    """Conditional VAE (or, with ``conditional=False``, the unconditioned VAE baseline) over
    compositions plus property predictors. Hyper-parameters: see :data:`DEFAULTS`.

    Learned state (after :meth:`train` or :meth:`load`): ``generator_``, ``predictors_``
    (``{name: module}``), ``scaler_mean_`` / ``scaler_scale_`` (per property), ``train_counts_``
    and ``train_properties_`` (the training compositions and their properties, for novelty and
    for sampling the aggregate posterior), ``history_`` (per-epoch log records).
    """

    properties = PROPERTIES

    def __init__(self, conditional: bool = True, *, latent_dim: int = 32,
                 encoder_layers: Sequence[int] = (512, 256, 128),
                 decoder_layers: Sequence[int] = (128, 256, 512), recon_weight: float = 10.0,
                 kl_weight: float = 0.05, epochs: int = 150, batch_size: int = 256,
                 lr: float = 1e-3, lr_factor: float = 0.1, lr_patience: int = 5,
                 min_lr: float = 1e-8, schedule: str = "plateau", substitution: float = 0.0,
                 substitution_labels: str = "original", substitution_variants: int = 4,
                 decoder_conditioning: str = "input", early_stopping: int | None = None,
                 predictor_early_stopping: int | None = None, predictors: bool = True,
                 predictor_layers: Sequence[int] = (1024, 1024, 1024, 512, 128, 64, 32),
                 predictor_dropout: Sequence[float] = (0.0, 0.7, 0.7, 0.5, 0.0, 0.0, 0.0),
                 predictor_epochs: int = 120, finetune_epochs: int = 120,
                 predictor_lr: float = 1e-3, predictor_batch_size: int = 256,
                 predictor_min_lr: float = 1e-5, predictor_schedule: str = "plateau",
                 predictor_input: str | Sequence[str] = "onehot", val_fraction: float = 0.1,
                 random_state: int | None = 0,
                 device: str = "auto", threads: int | None = None):
        self.conditional = bool(conditional)
        self.latent_dim = int(latent_dim)
        self.encoder_layers = tuple(int(v) for v in encoder_layers)
        self.decoder_layers = tuple(int(v) for v in decoder_layers)
        self.recon_weight = float(recon_weight)
        self.kl_weight = float(kl_weight)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.lr_factor = float(lr_factor)
        self.lr_patience = int(lr_patience)
        self.min_lr = float(min_lr)
        if schedule not in ("plateau", "cosine"):
            raise ValueError(f"schedule must be 'plateau' (the paper's) or 'cosine', not "
                             f"{schedule!r}")
        self.schedule = schedule
        if not 0.0 <= float(substitution) <= 1.0:
            raise ValueError(f"substitution is a probability per training composition and "
                             f"must lie in [0, 1], got {substitution}")
        self.substitution = float(substitution)
        self.substitution_labels = _one_of("substitution_labels", substitution_labels,
                                           SUBSTITUTION_LABELS)
        if int(substitution_variants) < 1:
            raise ValueError(f"substitution_variants must be at least 1, got "
                             f"{substitution_variants}")
        self.substitution_variants = int(substitution_variants)
        from ase_mlgen.ding.nets import DECODER_CONDITIONING

        self.decoder_conditioning = _one_of("decoder_conditioning", decoder_conditioning,
                                            DECODER_CONDITIONING)
        self.early_stopping = None if early_stopping is None else int(early_stopping)
        self.predictor_early_stopping = None if predictor_early_stopping is None \
            else int(predictor_early_stopping)
        self.predictors = bool(predictors)
        self.predictor_layers = tuple(int(v) for v in predictor_layers)
        self.predictor_dropout = tuple(float(v) for v in predictor_dropout)
        self.predictor_epochs = int(predictor_epochs)
        self.finetune_epochs = int(finetune_epochs)
        self.predictor_lr = float(predictor_lr)
        self.predictor_batch_size = int(predictor_batch_size)
        self.predictor_min_lr = float(predictor_min_lr)
        if predictor_schedule not in ("plateau", "cosine"):
            raise ValueError(f"predictor_schedule must be 'plateau' (the paper's) or 'cosine', "
                             f"not {predictor_schedule!r}")
        self.predictor_schedule = predictor_schedule
        self.predictor_input = _check_predictor_input(predictor_input)
        self.val_fraction = float(val_fraction)
        self.random_state = random_state
        self.device = device
        self.threads = threads
        if self.epochs < 0 or self.predictor_epochs < 0 or self.finetune_epochs < 0:
            raise ValueError("epoch counts must be non-negative")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        if self.substitution_labels == "predicted" and not (self.predictors and self.conditional):
            raise ValueError("substitution_labels='predicted' conditions substituted "
                             "compositions on the predictors' values: it needs a conditional "
                             "model with predictors=True")

    # -- parameters ------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in DEFAULTS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def set_params(self, **params) -> "DING":
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown DING parameter(s) {sorted(unknown)}; known: "
                             f"{sorted(DEFAULTS)}")
        merged = {**self.get_params(), **params}
        conditional = merged.pop("conditional")
        self.__init__(conditional, **merged)
        return self

    def __repr__(self) -> str:
        kind = "CVAE" if self.conditional else "VAE"
        state = "trained" if self.is_trained else "untrained"
        return f"DING({kind}, latent_dim={self.latent_dim}, {state})"

    @property
    def is_trained(self) -> bool:
        return getattr(self, "generator_", None) is not None

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError("this DING model is not trained; call train(...) or DING.load(path)")

    # -- modules ---------------------------------------------------------------------------
    @property
    def is_ensemble(self) -> bool:
        """Whether ``predictor_input`` asks for an ensemble of predictors per property."""
        return not isinstance(self.predictor_input, str)

    @property
    def predictor_inputs(self) -> tuple[str, ...]:
        """The input kind of each predictor of a property (one entry unless an ensemble)."""
        return self.predictor_input if self.is_ensemble else (self.predictor_input,)

    def _build(self):
        """Fresh torch modules (generator, {property: predictor}) for these hyper-parameters;
        with an ensemble each predictor is a :class:`~ase_mlgen.ding.nets.PredictorEnsemble`."""
        from ase_mlgen.ding.nets import CompositionVAE, PredictorEnsemble, PropertyPredictor

        gen = CompositionVAE(len(PROPERTIES) if self.conditional else 0, self.encoder_layers,
                             self.latent_dim, self.decoder_layers,
                             decoder_conditioning=self.decoder_conditioning)

        def one(kind):
            return PropertyPredictor(self.predictor_layers, self.predictor_dropout, kind)

        if not self.predictors:
            return gen, {}
        if self.is_ensemble:
            return gen, {p: PredictorEnsemble([one(k) for k in self.predictor_inputs])
                         for p in PROPERTIES}
        return gen, {p: one(self.predictor_input) for p in PROPERTIES}

    def _device(self):
        from ase_mlgen.utils.device import resolve_device

        return resolve_device(self.device)

    def to(self, device) -> "DING":
        """Move the trained modules to ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``)."""
        from ase_mlgen.utils.device import resolve_device

        self.device = str(device)
        dev = resolve_device(device)
        if self.is_trained:
            self.generator_.to(dev)
            for m in self.predictors_.values():
                m.to(dev)
        return self

    # -- training --------------------------------------------------------------------------
    def train(self, table: OQMDTable | str | os.PathLike, val: OQMDTable | None = None, *,
              run_dir: str | os.PathLike | None = None, background: bool = False,
              resume: bool = False, device: str | None = None,
              warm_start: bool | str = False):
        """Train the generator and the predictors as an :mod:`ase_mlgen.jobs` run.

        ``table``: the training compositions (:class:`~ase_mlgen.data.oqmd.OQMDTable` with
        ``delta_e``, ``energy_pa``, ``volume_pa``) or the path of an OQMD CSV, which is split
        80/10/10 by ``random_state`` (train on the first part, validate on the second; the test
        part is not touched). ``val``: validation table (default: ``val_fraction`` of ``table``
        held out). The validation loss drives the learning-rate schedule and picks the best
        epoch of every stage.

        ``run_dir`` keeps the run (config, ``log.jsonl`` per epoch, atomic checkpoints, the
        model ``model.pt``); ``resume=True`` continues an interrupted run from its last
        checkpoint (with the settings stored in the run). ``background=True`` (needs
        ``run_dir``) returns a :class:`~ase_mlgen.jobs.Job` at once (``job.result()`` is the
        trained DING); otherwise training runs here and ``self`` is returned, trained.

        ``warm_start=True`` (scikit-learn's name) starts from this model's trained state: the
        generator and every predictor whose input kind is still asked for keep their weights
        and are not trained again; only the new predictors are (e.g. after
        ``set_params(predictor_input=("onehot", "fractions"))`` on a model with one-hot
        predictors, the fraction-input members). ``table`` must be the same training set
        (checked through the property scalers). ``warm_start="predictors"`` keeps only the
        predictors and trains a new generator from ``random_state`` (generator settings such
        as ``latent_dim`` may then differ from the trained model's): another seed's generator
        with predictors already trained on the same split, or ``substitution_labels=
        "predicted"`` without training its labelling predictors again.
        """
        from ase_mlgen.ding.training import LOADER, TASK, prepare_run
        from ase_mlgen.jobs import submit

        _one_of("warm_start", warm_start, WARM_STARTS)
        if device is not None:
            self.device = device
        if background and run_dir is None:
            raise ValueError("background training needs a run_dir to write to")
        tmp = None
        if run_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="ding-")
            run_dir = Path(tmp.name) / "run"
        try:
            config = prepare_run(self, table, val, Path(run_dir), resume)
            if warm_start and "init" not in config:
                from ase_mlgen.utils.io import atomic_torch_save

                self._check_trained()
                config["init"] = str(atomic_torch_save(self.state(),
                                                       Path(run_dir) / "init.pt").resolve())
                config["init_parts"] = "predictors" if warm_start == "predictors" else "all"
            job = submit(TASK, config, run_dir, background=background, resume=resume,
                         loader=LOADER)
            if background:
                return job
            trained = job.result()
            self.__dict__.update(trained.__dict__)
            return self
        finally:
            if tmp is not None:
                tmp.cleanup()

    # -- helpers ---------------------------------------------------------------------------
    def _scale(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.scaler_mean_) / self.scaler_scale_

    def _unscale(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scaler_scale_ + self.scaler_mean_

    def _tensor(self, array: np.ndarray):
        import torch

        return torch.as_tensor(np.asarray(array), dtype=torch.float32,
                               device=next(self.generator_.parameters()).device)

    @staticmethod
    def _counts(compositions) -> np.ndarray:
        """``(N, 89)`` counts of compositions, an OQMDTable or a counts array."""
        if isinstance(compositions, OQMDTable):
            return compositions.counts
        if isinstance(compositions, np.ndarray) and compositions.ndim == 2 \
                and compositions.shape[1] == comp.N_ELEMENTS:
            return compositions.astype(np.int64)
        if isinstance(compositions, (str, Formula, Mapping)) or hasattr(compositions,
                                                                      "get_chemical_symbols"):
            compositions = [compositions]
        items = [comp.to_counts(c) for c in compositions]
        return np.stack(items) if items else np.zeros((0, comp.N_ELEMENTS), np.int64)

    def _targets(self, delta_e, energy_pa, volume_pa) -> np.ndarray | None:
        given = {"delta_e": delta_e, "energy_pa": energy_pa, "volume_pa": volume_pa}
        if all(v is None for v in given.values()):
            return None
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(f"give all three targets (delta_e, energy_pa in eV/atom, volume_pa "
                             f"in Å³/atom); missing: {missing}")
        return np.array([float(given[p]) for p in PROPERTIES])

    # -- prediction ------------------------------------------------------------------------
    def predict(self, compositions, batch_size: int = 4096, return_std: bool = False):
        """Predicted ``{"delta_e": eV/atom, "energy_pa": eV/atom, "volume_pa": Å³/atom}``
        arrays for compositions (formulas, Formula objects, an OQMDTable or a counts array).

        With a predictor ensemble (``predictor_input=("onehot", "fractions")``) each value is
        the mean of the members' predictions. ``return_std=True`` returns ``(mean, std)``,
        ``std`` being the members' spread (population standard deviation, same units; zero
        for a single predictor), a rough uncertainty."""
        members = self.predict_members(compositions, batch_size)
        stacked = {p: np.stack(list(members[p].values())) for p in PROPERTIES}
        mean = {p: v.mean(axis=0) for p, v in stacked.items()}
        if not return_std:
            return mean
        return mean, {p: v.std(axis=0) for p, v in stacked.items()}

    def predict_members(self, compositions, batch_size: int = 4096
                        ) -> dict[str, dict[str, np.ndarray]]:
        """Each predictor's values, ``{property: {input kind: array}}`` (eV/atom, Å³/atom);
        one entry per property unless the model has an ensemble. :meth:`predict` returns
        their mean."""
        import torch

        self._check_trained()
        if not self.predictors_:
            raise RuntimeError("this model was trained without predictors (predictors=False)")
        # the trained modules' kinds (set_params may since have asked for others)
        kinds = self.predictors_[PROPERTIES[0]].member_inputs
        counts = self._counts(compositions)
        out = np.zeros((len(kinds), len(counts), len(PROPERTIES)))
        with torch.no_grad():
            for s in range(0, len(counts), batch_size):
                x = self._tensor(comp.counts_to_vector(counts[s:s + batch_size]))
                for j, p in enumerate(PROPERTIES):
                    net = self.predictors_[p]
                    net.eval()
                    out[:, s:s + batch_size, j] = net.members_forward(x).double().cpu().numpy()
        out = self._unscale(out)
        return {p: {k: out[i, :, j] for i, k in enumerate(kinds)}
                for j, p in enumerate(PROPERTIES)}

    def _predict_matrix(self, counts: np.ndarray) -> np.ndarray:
        if not self.predictors_ or len(counts) == 0:
            return np.full((len(counts), len(PROPERTIES)), np.nan)
        pred = self.predict(counts)
        return np.stack([pred[p] for p in PROPERTIES], axis=1)

    # -- encoding / reconstruction ---------------------------------------------------------
    def encode(self, compositions, properties: np.ndarray | Mapping | None = None) -> np.ndarray:
        """Latent means ``(N, latent_dim)``. A CVAE needs the compositions' properties
        (``(N, 3)`` array or ``{name: array}``, eV/atom and Å³/atom); without them the
        predictors' values are used."""
        import torch

        self._check_trained()
        counts = self._counts(compositions)
        cond = self._condition(counts, properties)
        with torch.no_grad():
            self.generator_.eval()
            mu, _ = self.generator_.encode(self._tensor(comp.counts_to_vector(counts)), cond)
        return mu.cpu().numpy()

    def _condition(self, counts: np.ndarray, properties):
        if not self.conditional:
            return None
        if properties is None:
            if not self.predictors_:
                raise ValueError("a conditional model needs the compositions' properties "
                                 "(delta_e, energy_pa, volume_pa)")
            props = self._predict_matrix(counts)
        elif isinstance(properties, Mapping):
            props = np.stack([np.asarray(properties[p], dtype=float).reshape(-1)
                              for p in PROPERTIES], axis=1)
        else:
            props = np.asarray(properties, dtype=float).reshape(-1, len(PROPERTIES))
        if len(props) == 1 and len(counts) > 1:
            props = np.repeat(props, len(counts), axis=0)
        return self._tensor(self._scale(props))

    def decode(self, z: np.ndarray, delta_e=None, energy_pa=None, volume_pa=None,
               properties: np.ndarray | None = None, sampling: str = "argmax",
               decode_temperature: float = 1.0, random_state=None,
               guidance: float = 0.0) -> np.ndarray:
        """Counts ``(N, 89)`` of latent points ``z``; a CVAE decodes under the given targets
        (one set for all, or ``properties`` ``(N, 3)``).

        ``sampling="argmax"`` takes the most probable count of every element (the paper's
        decoding); ``"categorical"`` draws each element's count from its softmax (the logits
        divided by ``decode_temperature``), with ``random_state`` (an int or a
        :class:`torch.Generator`).

        ``guidance`` (a CVAE's, default 0: off) strengthens the conditions in the manner of
        classifier-free guidance: the logits become ``l(z, c) + guidance · (l(z, c) −
        l(z, c̄))``, with ``c̄`` the training set's mean properties, so that whatever the
        targets change in the decoder's output is changed more."""
        logits = self._decode_logits(z, delta_e, energy_pa, volume_pa, properties)
        if guidance:
            if not self.conditional:
                raise ValueError("guidance strengthens the conditions of a CVAE; the "
                                 "unconditioned VAE has none")
            mean = np.repeat(self.scaler_mean_[None], len(logits), axis=0)
            logits = logits + float(guidance) * (logits - self._decode_logits(
                z, properties=mean))
        return _pick_counts(logits, sampling, decode_temperature, random_state)

    def _decode_logits(self, z, delta_e=None, energy_pa=None, volume_pa=None,
                       properties=None):
        import torch

        self._check_trained()
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        cond = None
        if self.conditional:
            if properties is None:
                t = self._targets(delta_e, energy_pa, volume_pa)
                if t is None:
                    raise ValueError("a conditional model decodes under target properties: give "
                                     "delta_e, energy_pa and volume_pa")
                properties = np.repeat(t[None], len(z), axis=0)
            cond = self._tensor(self._scale(np.asarray(properties, float).reshape(len(z), -1)))
        with torch.no_grad():
            self.generator_.eval()
            return self.generator_.decode(self._tensor(z), cond).cpu()

    def reconstruct(self, table: OQMDTable) -> np.ndarray:
        """Counts decoded from the latent means of ``table``'s compositions (conditioned on
        their true properties for a CVAE)."""
        props = table.targets(PROPERTIES) if self.conditional else None
        z = self.encode(table.counts, props)
        return self.decode(z, properties=props)

    def reconstruction_accuracy(self, table: OQMDTable) -> float:
        """Fraction of ``table``'s compositions reconstructed exactly (all 89 counts)."""
        if len(table) == 0:
            return float("nan")
        return float(np.mean((self.reconstruct(table) == table.counts).all(axis=1)))

    # -- generation ------------------------------------------------------------------------
    def _make_candidates(self, counts: np.ndarray, preds: np.ndarray,
                         infos: Sequence[Mapping] | None = None) -> Candidates:
        train_keys = self._train_keys()
        out = Candidates()
        for i, c in enumerate(counts):
            props = {p: preds[i, j] for j, p in enumerate(PROPERTIES) if np.isfinite(preds[i, j])}
            novel = None if train_keys is None else comp.key(c) not in train_keys
            out.append(Candidate(comp.counts_to_formula(c), props, novel,
                                 infos[i] if infos else None))
        return out

    def _train_keys(self) -> set | None:
        if getattr(self, "_train_key_cache", None) is None:
            counts = getattr(self, "train_counts_", None)
            if counts is None:
                return None
            self._train_key_cache = {comp.key(c) for c in counts}
        return self._train_key_cache

    def generate(self, n: int, delta_e: float | None = None, energy_pa: float | None = None,
                 volume_pa: float | None = None, *, tolerance: Mapping[str, float] | None = None,
                 novel_only: bool = False, random_state: int | None = None,
                 temperature: float = 1.0, latent: str = "posterior",
                 sampling: str = "categorical",
                 decode_temperature: float = 1.0, min_elements: int = 2,
                 guidance: float | None = None, batch_size: int = 2048,
                 max_samples: int | None = None) -> Candidates:
        """``n`` unique, valid compositions (:class:`Candidate`, an :class:`ase.formula.Formula`
        with ``properties`` predicted by the predictors and a ``novel`` flag).

        Latent points are drawn from the aggregate posterior (``latent="posterior"``, the
        default: the latent mean of a random training composition plus ``temperature`` × its
        posterior spread × N(0, 1)) or from the prior, ``z ~ N(0, temperature²)``
        (``latent="prior"``, the paper's). A CVAE decodes them under the targets ``delta_e``,
        ``energy_pa`` (eV/atom) and ``volume_pa`` (Å³/atom); the VAE baseline decodes without
        targets. Decoding draws each element's count from its softmax (``"categorical"``, the
        default; logits / ``decode_temperature``) or takes the most probable count
        (``sampling="argmax"``, the paper's); see :meth:`decode`. A decoded composition is valid
        when it holds at least ``min_elements`` different elements (:func:`is_valid`); invalid
        ones and repeats are dropped. ``guidance`` strengthens the targets' effect on a CVAE's
        decoding (:meth:`decode`); None (the default) takes :data:`GENERATE_GUIDANCE` (0.5) for
        a CVAE and 0 for the VAE, which has no targets. The default 2 asks for compounds: OQMD
        formation enthalpies are taken relative to the elements, so a single element has
        ``delta_e`` = 0 by definition and cannot meet a formation-enthalpy target, and the
        training data are compounds (7 of the 21,766 training compositions of the shared
        split are elements). ``min_elements=1`` accepts any composition with atoms (the
        paper's).

        Why these defaults (``doc/ding.md``, ``bench/results/ding.json``): the CVAE's latent
        codes of compositions with given properties do not fill N(0, 1), so prior samples
        decoded under a target often fall where the decoder returns the same anion-only
        compositions (``O6``, ``O3``, ``Br6``): 64 % of 1,000 raw samples were unique for the
        target set (−2.0, −6.5, 12) with the paper's prior + argmax, 93 % with posterior +
        categorical, at the same distance of the predicted properties from the targets. ``tolerance`` (``{"delta_e": 0.2, …}``, absolute, same units)
        keeps only candidates whose predicted properties lie that close to the targets;
        ``novel_only`` drops training compositions. Sampling stops after ``max_samples``
        (default ``200 * n``) draws; fewer than ``n`` candidates then come back, with a warning.
        """
        import torch

        self._check_trained()
        if n < 0:
            raise ValueError("n must be non-negative")
        targets = self._targets(delta_e, energy_pa, volume_pa)
        if self.conditional and targets is None:
            raise ValueError("a conditional DING generates for targets: give delta_e and "
                             "energy_pa (eV/atom) and volume_pa (Å³/atom)")
        if tolerance:
            unknown = set(tolerance) - set(PROPERTIES)
            if unknown:
                raise ValueError(f"tolerance for unknown properties {sorted(unknown)}")
            if targets is None:
                raise ValueError("tolerance filters around targets: give delta_e, energy_pa "
                                 "and volume_pa")
            if not self.predictors_:
                raise ValueError("tolerance filtering needs the predictors (predictors=True)")
        elif targets is not None and not self.conditional:
            raise ValueError("the unconditioned VAE cannot aim at targets; give a tolerance to "
                             "filter its samples by predicted properties instead")
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, not {latent!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, not {sampling!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be non-negative, got {temperature}")
        if int(min_elements) < 1:
            raise ValueError(f"min_elements must be at least 1, got {min_elements}")
        if guidance is None:
            guidance = GENERATE_GUIDANCE if self.conditional else 0.0
        max_samples = int(max_samples if max_samples is not None else 200 * max(n, 1))
        gen = torch.Generator().manual_seed(
            int(random_state if random_state is not None else np.random.SeedSequence().entropy
                % 2**63))
        seen: set[bytes] = set()
        train_keys = self._train_keys() if novel_only else None
        if novel_only and train_keys is None:
            raise ValueError("novel_only needs the training compositions, which this model lacks")
        kept: list[np.ndarray] = []
        kept_pred: list[np.ndarray] = []
        drawn = 0
        while len(kept) < n and drawn < max_samples:
            m = min(batch_size, max_samples - drawn)
            z = self.sample_latent(m, latent, temperature, gen)
            drawn += m
            counts = self.decode(z, properties=np.repeat(targets[None], m, axis=0)
                                 if self.conditional else None, sampling=sampling,
                                 decode_temperature=decode_temperature, random_state=gen,
                                 guidance=guidance)
            fresh = []
            for c, ok in zip(counts, is_valid(counts, min_elements)):
                if not ok:
                    continue
                k = comp.key(c)
                if k in seen:
                    continue
                seen.add(k)
                if train_keys is not None and k in train_keys:
                    continue
                fresh.append(c)
            if not fresh:
                continue
            fresh = np.stack(fresh)
            pred = self._predict_matrix(fresh)
            if tolerance:
                ok = np.ones(len(fresh), bool)
                for p, tol in tolerance.items():
                    j = PROPERTIES.index(p)
                    ok &= np.abs(pred[:, j] - targets[j]) <= float(tol)
                fresh, pred = fresh[ok], pred[ok]
            for c, pr in zip(fresh, pred):
                if len(kept) >= n:
                    break
                kept.append(c)
                kept_pred.append(pr)
        if len(kept) < n:
            warnings.warn(f"DING.generate: only {len(kept)} of {n} requested unique compositions "
                          f"after {drawn} samples; raise max_samples or loosen the tolerance",
                          RuntimeWarning, stacklevel=2)
        counts = np.stack(kept) if kept else np.zeros((0, comp.N_ELEMENTS), np.int64)
        preds = np.stack(kept_pred) if kept_pred else np.zeros((0, len(PROPERTIES)))
        return self._make_candidates(counts, preds)

    def sample_latent(self, m: int, latent: str = "prior", temperature: float = 1.0,
                      random_state=None) -> np.ndarray:
        """``(m, latent_dim)`` latent points: ``temperature`` × N(0, 1) for ``"prior"``; for
        ``"posterior"`` the latent means μᵢ of random training compositions plus
        ``temperature`` × σᵢ × N(0, 1) (their posterior spread; a CVAE encodes them under their
        own properties)."""
        import torch

        self._check_trained()
        gen = random_state if isinstance(random_state, torch.Generator) else \
            torch.Generator().manual_seed(int(random_state if random_state is not None
                                              else np.random.SeedSequence().entropy % 2**63))
        eps = torch.randn(m, self.latent_dim, generator=gen, dtype=torch.float64)
        if latent == "prior":
            return (eps * float(temperature)).numpy().astype(np.float32)
        if latent != "posterior":
            raise ValueError(f"latent must be one of {LATENTS}, not {latent!r}")
        mu, sigma = self.training_latents()
        pick = torch.randint(0, len(mu), (m,), generator=gen).numpy()
        return (mu[pick] + float(temperature) * sigma[pick] * eps.numpy()).astype(np.float32)

    def training_latents(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means μ and spreads σ ``(N_train, latent_dim)`` of the training
        compositions (cached)."""
        import torch

        self._check_trained()
        if getattr(self, "_latent_cache", None) is None:
            counts = getattr(self, "train_counts_", None)
            props = getattr(self, "train_properties_", None)
            if counts is None or (self.conditional and props is None):
                raise ValueError("sampling the aggregate posterior needs the training "
                                 "compositions and properties, which this model file lacks "
                                 "(retrain, or use latent='prior')")
            mus, sigmas = [], []
            self.generator_.eval()
            with torch.no_grad():
                for s in range(0, len(counts), 4096):
                    c = counts[s:s + 4096]
                    cond = self._condition(c, props[s:s + 4096]) if self.conditional else None
                    mu, lv = self.generator_.encode(self._tensor(comp.counts_to_vector(c)), cond)
                    mus.append(mu.double().cpu().numpy())
                    sigmas.append(torch.exp(0.5 * lv).double().cpu().numpy())
            self._latent_cache = (np.concatenate(mus), np.concatenate(sigmas))
        return self._latent_cache

    @staticmethod
    def filter(candidates: Iterable[Candidate], **ranges: tuple[float | None, float | None]
               ) -> Candidates:
        """Candidates whose predicted properties lie in the given ranges, e.g.
        ``DING.filter(c, delta_e=(None, -1.5), volume_pa=(10, 14))`` (bounds inclusive, None =
        open)."""
        unknown = set(ranges) - set(PROPERTIES)
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}; use {list(PROPERTIES)}")
        out = Candidates()
        for c in candidates:
            ok = True
            for p, (lo, hi) in ranges.items():
                v = c.properties.get(p)
                if v is None or (lo is not None and v < lo) or (hi is not None and v > hi):
                    ok = False
                    break
            if ok:
                out.append(c)
        return out

    def walk(self, start, end, steps: int = 11, start_properties: Mapping | None = None,
             end_properties: Mapping | None = None, unique: bool = False) -> Candidates:
        """Latent walk from ``start`` to ``end`` (the paper's Figure 9): both compositions are
        encoded to their latent means, the line between them is decoded at ``steps`` points
        (a CVAE under properties interpolated the same way between the two compositions'
        properties, given or predicted). Each candidate's ``info`` has ``step`` and ``t``
        (0 → 1); ``unique=True`` drops consecutive repeats."""
        self._check_trained()
        if steps < 2:
            raise ValueError("a walk needs at least 2 steps")
        counts = self._counts([start, end])
        props = None
        if self.conditional:
            given = [start_properties, end_properties]
            pred = self._predict_matrix(counts) if any(g is None for g in given) else None
            props = np.stack([np.array([float(g[p]) for p in PROPERTIES]) if g is not None
                              else pred[i] for i, g in enumerate(given)])
            if not np.isfinite(props).all():
                raise ValueError("a conditional walk needs the properties of both ends "
                                 "(start_properties/end_properties) or trained predictors")
        z = self.encode(counts, props)
        t = np.linspace(0.0, 1.0, steps)
        zs = (1 - t)[:, None] * z[0] + t[:, None] * z[1]
        path_props = None if props is None else (1 - t)[:, None] * props[0] + t[:, None] * props[1]
        decoded = self.decode(zs, properties=path_props)
        infos = [{"step": i, "t": float(t[i])} for i in range(steps)]
        keep = [i for i in range(steps) if decoded[i].any()
                and not (unique and i > 0 and (decoded[i] == decoded[i - 1]).all())]
        return self._make_candidates(decoded[keep], self._predict_matrix(decoded[keep]),
                                     [infos[i] for i in keep])

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything :meth:`load` needs (CPU tensors and plain Python values)."""
        import torch

        from ase_mlgen import __version__

        self._check_trained()
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        params = self.get_params()
        if self.predictors_:  # the trained modules' inputs (set_params may have asked for others)
            net = next(iter(self.predictors_.values()))
            params["predictor_input"] = list(net.inputs) if isinstance(net.inputs, tuple) \
                else net.inputs
        ensemble = not isinstance(params["predictor_input"], str)
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION if ensemble else 1,
            "ase_mlgen_version": __version__,
            "params": params, "elements": list(comp.ELEMENTS),
            "max_count": comp.MAX_COUNT, "properties": list(PROPERTIES), "units": dict(UNITS),
            "scaler_mean": torch.as_tensor(self.scaler_mean_, dtype=torch.float64),
            "scaler_scale": torch.as_tensor(self.scaler_scale_, dtype=torch.float64),
            "generator": cpu(self.generator_.state_dict()),
            "predictors": {p: cpu(m.state_dict()) for p, m in self.predictors_.items()},
            "train_counts": torch.as_tensor(np.asarray(self.train_counts_, dtype=np.uint8)),
            "train_properties": None if getattr(self, "train_properties_", None) is None
            else torch.as_tensor(np.asarray(self.train_properties_, dtype=np.float64)),
            "history": list(getattr(self, "history_", [])),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (configuration, scalers, weights, training compositions, version)
        atomically to ``path``."""
        from ase_mlgen.utils.io import atomic_torch_save

        return atomic_torch_save(self.state(), path)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: str | None = None) -> "DING":
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError("not a DING model (missing the 'ase_mlgen.ding' format tag)")
        if int(state.get("format_version", -1)) > FORMAT_VERSION:
            raise ValueError(f"DING model format {state['format_version']} is newer than this "
                             f"ase_mlgen understands ({FORMAT_VERSION}); upgrade ase_mlgen")
        if list(state["elements"]) != list(comp.ELEMENTS) or \
                int(state["max_count"]) != comp.MAX_COUNT:
            raise ValueError("the model was trained on a different element list or count range")
        if list(state["properties"]) != list(PROPERTIES):
            raise ValueError(f"the model predicts {state['properties']}, expected "
                             f"{list(PROPERTIES)}")
        params = dict(state["params"])
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"model file has unknown parameters {sorted(unknown)}")
        if device is not None:
            params["device"] = device
        conditional = params.pop("conditional")
        model = cls(conditional, **params)
        gen, preds = model._build()
        gen.load_state_dict(state["generator"])
        if set(state["predictors"]) != set(preds):
            raise ValueError("the file's predictors do not match its settings")
        for p, m in preds.items():
            m.load_state_dict(state["predictors"][p])
        model.generator_ = gen
        model.predictors_ = preds
        model.scaler_mean_ = np.asarray(state["scaler_mean"], dtype=np.float64)
        model.scaler_scale_ = np.asarray(state["scaler_scale"], dtype=np.float64)
        model.train_counts_ = np.asarray(state["train_counts"], dtype=np.int64)
        # files written before posterior sampling existed carry no training properties
        tp = state.get("train_properties")
        model.train_properties_ = None if tp is None else np.asarray(tp, dtype=np.float64)
        model.history_ = list(state.get("history", []))
        model._train_key_cache = None
        model._latent_cache = None
        return model.to(model.device)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "DING":
        """A model written by :meth:`save` (or the ``model.pt`` of a run directory; a run
        directory itself is accepted). Refuses files that are not DING models."""
        from ase_mlgen.utils.io import read_model_file

        path, state = read_model_file(path, "DING", weights_only=True)
        try:
            return cls.from_state(state, device=device)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
