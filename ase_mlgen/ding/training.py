"""Training DING as an :mod:`ase_mlgen.jobs` run (foreground or background, resumable).

A run directory holds ``train.npz`` / ``val.npz`` (the compositions and properties),
``config.json`` (the DING hyper-parameters), ``log.jsonl`` (one record per epoch: ``stage``,
``train_loss``, ``val_loss``, ``val_exact`` or ``val_mae``, ``lr``), ``checkpoint_last.pt``
(written atomically after every epoch; ``resume=True`` continues from it) and, when finished,
``model.pt`` (a :class:`~ase_mlgen.ding.model.DING` file) and ``result.json``.

Stages, in order: ``generator`` (the CVAE/VAE, ``epochs``), then per property ``<name>`` (the
predictor with dropout, ``predictor_epochs``) and ``<name>_finetune`` (dropout off,
``finetune_epochs``), as in the paper's notebooks. With a predictor ensemble
(``predictor_input=("onehot", "fractions")``) every member has its own two stages,
``<name>[<input>]`` and ``<name>[<input>]_finetune``. Each stage keeps the weights of its best
validation epoch. ``early_stopping`` ends the generator stage, ``predictor_early_stopping`` a
predictor stage, after that many epochs without validation improvement. ``substitution > 0``
trains the generator on element-substituted compositions
(:func:`~ase_mlgen.ding.nets.substitute_elements`), drawn anew every epoch, conditioned on the
original composition's properties; with ``substitution_labels="predicted"`` the predictor
stages come first, ``substitution_variants`` substituted variants of every training
composition are drawn and labelled once by the trained predictors, and each epoch a
composition is replaced by one of its variants (probability ``substitution``) under the
variant's predicted properties;
``schedule="cosine"`` anneals its learning rate to ``min_lr`` over ``epochs``.

A warm-started run (``DING.train(..., warm_start=True)``) holds ``init.pt``, the model it
started from: its generator and the predictors of input kinds still asked for are taken over
and their stages skipped; ``warm_start="predictors"`` takes over the predictors only and trains
a new generator (e.g. another seed's generator beside predictors already trained on the same
split).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

from ase_mlgen.data.oqmd import PROPERTIES, OQMDTable, load_oqmd, split

TASK = "ase_mlgen.ding.training:train_task"
LOADER = "ase_mlgen.ding.training:load_run"


def load_run(path) -> "DING":  # noqa: F821
    """The trained DING of a finished run directory."""
    from ase_mlgen.ding.model import DING

    model_path = Path(path) / "model.pt"
    if not model_path.is_file():
        raise FileNotFoundError(f"{path} holds no finished DING run (no model.pt)")
    return DING.load(model_path)


def _check_table(table: OQMDTable, what: str) -> None:
    if len(table) == 0:
        raise ValueError(f"the {what} set is empty")
    missing = [p for p in PROPERTIES if p not in table.properties]
    if missing:
        raise ValueError(f"the {what} table lacks properties {missing}; DING needs "
                         f"{list(PROPERTIES)}")
    y = table.targets(PROPERTIES)
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y).all(axis=1)).sum())
        raise ValueError(f"{bad} {what} compositions have missing properties; drop them "
                         "(load_oqmd skips them by default)")


def prepare_run(model, table, val, run_dir: Path, resume: bool) -> dict:
    """Write the data of a run and return its config (stored settings win on ``resume``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    train_path, val_path = run_dir / "train.npz", run_dir / "val.npz"
    config_path = run_dir / "config.json"
    if resume and config_path.exists() and train_path.exists():
        config = json.loads(config_path.read_text())
        config.pop("task", None)
        config.pop("loader", None)
        config["params"]["device"] = model.device
        return config
    if isinstance(table, (str, Path)):
        full = load_oqmd(table)
        table, default_val, _ = split(full, seed=int(model.random_state or 0))
        if val is None:
            val = default_val
    if not isinstance(table, OQMDTable):
        raise TypeError(f"train on an OQMDTable or the path of an OQMD CSV, not "
                        f"{type(table).__name__}")
    _check_table(table, "training")
    if val is None and model.val_fraction > 0 and len(table) >= 10:
        perm = np.random.default_rng(model.random_state).permutation(len(table))
        n_val = max(1, int(round(model.val_fraction * len(table))))
        table, val = table.subset(perm[n_val:]), table.subset(perm[:n_val])
    if val is not None:
        _check_table(val, "validation")
    table.save_npz(train_path)
    if val is not None:
        val.save_npz(val_path)
    elif val_path.exists():
        val_path.unlink()
    return {"params": model.get_params(), "train": str(train_path.resolve()),
            "val": str(val_path.resolve()) if val is not None else None,
            "n_train": len(table), "n_val": 0 if val is None else len(val),
            "source": table.source}


def _truncate_log(rd, last_epoch: int) -> None:
    """Drop log records of epochs after the checkpoint (an interruption between logging an
    epoch and checkpointing it), so that a resumed run logs every epoch once."""
    from ase_mlgen.utils.io import atomic_write

    records = rd.records()
    keep = [r for r in records if r.get("epoch", 0) <= last_epoch]
    if len(keep) != len(records) or (rd.log_path.exists() and not records):
        atomic_write(rd.log_path, lambda fh: fh.write(
            "".join(json.dumps(r) + "\n" for r in keep)), mode="w")


def _stages(model) -> list[tuple[str, str | None, int, bool, int | None]]:
    """``(name, property or None, epochs, dropout on, ensemble member or None)`` of each
    training stage."""
    predictor_stages = []
    if model.predictors:
        for p in PROPERTIES:
            members = list(enumerate(model.predictor_inputs)) if model.is_ensemble \
                else [(None, None)]
            for i, kind in members:
                name = p if i is None else f"{p}[{kind}]"
                predictor_stages.append((name, p, model.predictor_epochs, True, i))
                predictor_stages.append((f"{name}_finetune", p, model.finetune_epochs, False, i))
    generator = [("generator", None, model.epochs, False, None)]
    if model.substitution_labels == "predicted":
        # the predictors label the substituted compositions: train them first
        return predictor_stages + generator
    return generator + predictor_stages


def _labelled_substitutions(counts, weights, preds, y_scaled, seed: int, dev,
                            n_variants: int, chunk: int = 4096):
    """Substituted variants ``(N, K, 89)`` of the training counts (each a substitution
    attempt, :func:`~ase_mlgen.ding.nets.substitute_elements` with probability 1) and their
    conditions ``(N, K, 3)`` in scaled units: the trained predictors' values for a changed
    composition, the true (scaled) properties where the attempt left the composition as it
    was. Drawn from ``seed`` alone, so that a resumed run gets the same pool."""
    import torch

    from ase_mlgen.ding.composition import counts_to_vector
    from ase_mlgen.ding.nets import substitute_elements

    gen = torch.Generator().manual_seed(seed)
    pool = torch.stack([substitute_elements(counts, 1.0, weights, gen)
                        for _ in range(n_variants)], dim=1)
    flat = pool.reshape(-1, counts.shape[1])
    labels = []
    for m in preds.values():
        m.eval()
    with torch.no_grad():
        for s in range(0, len(flat), chunk):
            x = torch.as_tensor(counts_to_vector(flat[s:s + chunk].numpy()), device=dev)
            labels.append(torch.stack([preds[p](x) for p in PROPERTIES], dim=1).cpu())
    labels = torch.cat(labels).reshape(len(counts), n_variants, len(PROPERTIES))
    unchanged = (pool == counts[:, None, :]).all(dim=2)
    true = torch.as_tensor(y_scaled, dtype=labels.dtype)[:, None, :].expand_as(labels)
    labels[unchanged] = true[unchanged]
    return pool, labels


def _predictor_states(state: dict) -> dict:
    """``{(property, input kind): state dict}`` of every predictor in a DING model file."""
    from ase_mlgen.ding.model import DEFAULTS, _check_predictor_input

    params = {**DEFAULTS, **state["params"]}
    kinds = _check_predictor_input(params["predictor_input"])
    out = {}
    for p, sd in state["predictors"].items():
        if isinstance(kinds, str):
            out[(p, kinds)] = sd
            continue
        for i, kind in enumerate(kinds):
            prefix = f"members.{i}."
            out[(p, kind)] = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return out


def _warm_start(model, init_path: str, gen, preds, mean, scale,
                parts: str = "all") -> tuple[set, list]:
    """Load the generator (``parts="all"``; not for ``"predictors"``) and the matching
    predictors of the model file ``init_path`` into ``gen`` / ``preds``; returns the names of
    the stages they make unnecessary and the file's training history."""
    import torch

    state = torch.load(init_path, map_location="cpu", weights_only=True)
    init_mean = np.asarray(state["scaler_mean"], dtype=np.float64)
    init_scale = np.asarray(state["scaler_scale"], dtype=np.float64)
    if not (np.allclose(init_mean, mean, rtol=1e-9, atol=1e-12)
            and np.allclose(init_scale, scale, rtol=1e-9, atol=1e-12)):
        raise ValueError("warm_start: the model was trained on another training set (its "
                         "property scalers differ); train it on the same table")
    if bool(state["params"]["conditional"]) != model.conditional:
        raise ValueError("warm_start: the model file is a "
                         f"{'CVAE' if state['params']['conditional'] else 'VAE'}, these "
                         f"settings ask for a {'CVAE' if model.conditional else 'VAE'}")
    skip = set()
    if parts == "all":
        gen.load_state_dict(state["generator"])
        skip.add("generator")
    if tuple(state["params"].get("predictor_layers", ())) != model.predictor_layers:
        return skip, list(state.get("history", []))
    old = _predictor_states(state)
    for name, prop, _, _, member in _stages(model):
        if prop is None:
            continue
        kind = model.predictor_input if member is None else model.predictor_inputs[member]
        if (prop, kind) not in old:
            continue
        net = preds[prop] if member is None else preds[prop].members[member]
        net.load_state_dict(old[(prop, kind)])
        skip.add(name)
    return skip, list(state.get("history", []))


def train_task(rd, config: dict, resume: bool) -> dict:
    """Job task: train every stage of a DING run (see the module docstring)."""
    import torch

    from ase_mlgen.ding.model import DING
    from ase_mlgen.ding.composition import counts_to_vector
    from ase_mlgen.ding.nets import substitute_elements, vae_loss

    params = dict(config["params"])
    model = DING(params.pop("conditional"), **params)
    if model.threads:
        torch.set_num_threads(int(model.threads))
    dev = model._device()
    seed = int(model.random_state or 0)
    torch.manual_seed(seed)

    train = OQMDTable.load_npz(config["train"])
    val = OQMDTable.load_npz(config["val"]) if config.get("val") else None
    y_train = train.targets(PROPERTIES)
    mean = y_train.mean(axis=0)
    scale = y_train.std(axis=0)
    scale[scale == 0] = 1.0

    def tensors(table):
        x = torch.as_tensor(table.vectors(), dtype=torch.float32, device=dev)
        y = torch.as_tensor((table.targets(PROPERTIES) - mean) / scale, dtype=torch.float32,
                            device=dev)
        return x, y

    x_tr, y_tr = tensors(train)
    x_va, y_va = tensors(val) if val is not None else (None, None)
    counts_va = None if val is None else torch.as_tensor(val.counts, device=dev)
    # element-substitution augmentation of the generator (substitution > 0): the counts stay on
    # the CPU, where the shuffling generator draws the substitutions, so that a resumed run
    # draws the same ones
    counts_tr = torch.as_tensor(train.counts)
    element_weights = (counts_tr > 0).sum(dim=0).double()

    gen, preds = model._build()
    gen.to(dev)
    for m in preds.values():
        m.to(dev)
    stages = _stages(model)
    skip, init_history = set(), []
    if config.get("init"):
        skip, init_history = _warm_start(model, config["init"], gen, preds, mean, scale,
                                         config.get("init_parts", "all"))
    total = sum(s[2] for s in stages if s[0] not in skip)

    start_stage, start_epoch, global_epoch = 0, 0, 0
    ck = rd.load_checkpoint() if resume else None
    if resume and ck is None:
        _truncate_log(rd, 0)
    if ck is not None:
        gen.load_state_dict(ck["generator"])
        for p, m in preds.items():
            m.load_state_dict(ck["predictors"][p])
        start_stage, start_epoch, global_epoch = ck["stage"], ck["epoch"], ck["global_epoch"]
        torch.set_rng_state(ck["torch_rng"])
        _truncate_log(rd, global_epoch)

    def stage_module(prop, member):
        if prop is None:
            return gen
        return preds[prop] if member is None else preds[prop].members[member]

    def snapshot(stage_index, epoch, extra):
        return {"stage": stage_index, "epoch": epoch, "global_epoch": global_epoch,
                "generator": gen.state_dict(),
                "predictors": {p: m.state_dict() for p, m in preds.items()},
                "torch_rng": torch.get_rng_state(), **extra}

    cond_tr = y_tr if model.conditional else None
    cond_va = y_va if model.conditional else None
    n = len(x_tr)
    for si, (name, prop, n_epochs, dropout_on, member) in enumerate(stages):
        if si < start_stage or name in skip:
            continue
        module = stage_module(prop, member)
        is_gen = prop is None
        patience = model.early_stopping if is_gen else model.predictor_early_stopping
        lr = model.lr if is_gen else model.predictor_lr
        min_lr = model.min_lr if is_gen else model.predictor_min_lr
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        cosine = model.schedule == "cosine" if is_gen else model.predictor_schedule == "cosine"
        if cosine:  # anneal to min_lr (predictor_min_lr) over the stage's epochs
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(n_epochs, 1),
                                                               eta_min=min_lr)
        else:       # the paper's: × lr_factor after lr_patience epochs without improvement
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=model.lr_factor, patience=model.lr_patience,
                min_lr=min_lr)
        best, bad, e0 = float("inf"), 0, 0
        best_state = copy.deepcopy(module.state_dict())
        shuffle = torch.Generator().manual_seed(seed * 1000 + si)
        if ck is not None and si == start_stage and "optimizer" in ck:
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            best, bad, e0 = ck["best"], ck["bad"], start_epoch
            best_state = ck["best_state"]
            shuffle.set_state(ck["shuffle_rng"])
        j = None if prop is None else PROPERTIES.index(prop)
        relabel = is_gen and model.substitution > 0 and model.substitution_labels == "predicted"
        if relabel:
            pool_counts, pool_cond = _labelled_substitutions(
                counts_tr, element_weights, preds, y_tr.cpu().numpy(), seed * 1000 + 999, dev,
                n_variants=model.substitution_variants)
            pool_cond = pool_cond.to(dev)
        bs = model.batch_size if is_gen else model.predictor_batch_size
        stopped = False
        for epoch in range(e0, n_epochs):
            t0 = time.perf_counter()
            module.train(dropout_on or is_gen)
            perm = torch.randperm(n, generator=shuffle).to(dev)
            tot, parts = 0.0, np.zeros(2)
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                xb = x_tr[idx]
                cb = None if cond_tr is None else cond_tr[idx]
                if relabel:   # a substituted variant, conditioned on its predicted properties
                    rows = idx.cpu()
                    sel = torch.rand(len(rows), generator=shuffle) < model.substitution
                    k = torch.randint(model.substitution_variants, (len(rows),),
                                      generator=shuffle)
                    counts_b = counts_tr[rows].clone()
                    counts_b[sel] = pool_counts[rows[sel], k[sel]]
                    xb = torch.as_tensor(counts_to_vector(counts_b.numpy()), device=dev)
                    cb = cb.clone()
                    cb[sel.to(dev)] = pool_cond[rows[sel].to(dev), k[sel].to(dev)]
                elif is_gen and model.substitution > 0:
                    xb = torch.as_tensor(counts_to_vector(substitute_elements(
                        counts_tr[idx.cpu()], model.substitution, element_weights,
                        shuffle).numpy()), device=dev)
                if is_gen:
                    logits, mu, lv = gen(xb, cb)
                    loss, rec, kl = vae_loss(logits, xb, mu, lv, model.recon_weight,
                                             model.kl_weight)
                    parts += len(idx) * np.array([rec.item(), kl.item()])
                else:
                    loss = torch.nn.functional.l1_loss(module(xb), y_tr[idx, j])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += loss.item() * len(idx)
            record = {"epoch": global_epoch + 1, "max_epochs": total, "stage": name,
                      "stage_epoch": epoch + 1, "train_loss": tot / n}
            if is_gen:
                record.update({"train_recon": parts[0] / n, "train_kl": parts[1] / n})
            module.eval()
            with torch.no_grad():
                if val is None:
                    val_loss = record["train_loss"]
                elif is_gen:
                    logits, mu, lv = gen(x_va, cond_va)
                    val_loss = vae_loss(logits, x_va, mu, lv, model.recon_weight,
                                        model.kl_weight)[0].item()
                    dec = gen.decode(mu, cond_va).argmax(dim=2)
                    record["val_exact"] = (dec == counts_va).all(dim=1).float().mean().item()
                else:
                    err = (module(x_va) - y_va[:, j]).abs().mean().item()
                    val_loss = err
                    record["val_mae"] = err * float(scale[j])
            record["val_loss"] = val_loss
            sched.step() if cosine else sched.step(val_loss)
            if val_loss < best:
                best, bad = val_loss, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                bad += 1
            global_epoch += 1
            record["lr"] = opt.param_groups[0]["lr"]
            record["epoch_seconds"] = time.perf_counter() - t0
            rd.log(record)
            stopped = patience is not None and bad >= patience
            last = epoch + 1 == n_epochs or stopped
            if not last:
                rd.save_checkpoint(snapshot(si, epoch + 1, {
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "best": best, "bad": bad, "best_state": best_state,
                    "shuffle_rng": shuffle.get_state()}))
            if stopped:
                break
        module.load_state_dict(best_state)
        # stage finished: the next resume starts the following stage with these weights
        rd.save_checkpoint(snapshot(si + 1, 0, {}))
        ck = None

    model.generator_ = gen
    model.predictors_ = preds
    model.scaler_mean_ = mean
    model.scaler_scale_ = scale
    model.train_counts_ = train.counts
    model.train_properties_ = train.targets(PROPERTIES)
    model._latent_cache = None
    model.history_ = init_history + rd.records()
    model._train_key_cache = None
    model_path = rd.path / "model.pt"
    model.save(model_path)
    result = {"model": str(model_path), "n_train": len(train),
              "n_val": 0 if val is None else len(val), "epochs_run": global_epoch}
    if val is not None:
        result["val_exact"] = model.reconstruction_accuracy(val)
        if preds:
            pred = model.predict(val)
            for p in PROPERTIES:
                result[f"val_mae_{p}"] = float(np.mean(np.abs(pred[p] - val.properties[p])))
    return result
