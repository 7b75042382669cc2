"""Quick recipe experiments for the DING generator (one CPU thread, one model per call).

    OMP_NUM_THREADS=1 nice -n 5 python bench/ding_recipe.py --tag base            # the paper's
    OMP_NUM_THREADS=1 nice -n 5 python bench/ding_recipe.py --kl 0.01 --tag kl001
    OMP_NUM_THREADS=1 nice -n 5 python bench/ding_recipe.py --sched cosine --epochs 80 --tag cos80
    OMP_NUM_THREADS=1 nice -n 5 python bench/ding_recipe.py --sched cosine --epochs 80 \
        --subst 0.5 --latent 64 --tag s05_lat64_cos80            # issue #8, third round
    OMP_NUM_THREADS=1 nice -n 5 python bench/ding_recipe.py --library --sched cosine \
        --epochs 80 --subst 0.5 --seed 1 --tag lib_subst05_cos80_s1  # the same through DING
    OMP_NUM_THREADS=1 nice -n 5 python bench/ding_recipe.py --predictor delta_e \
        --predictor-input fractions --epochs 15 --finetune-epochs 35 --tag de_frac

With ``--predictor PROP`` one property predictor (``ase_mlgen.ding.nets.PropertyPredictor``,
the paper's layers and dropout) is trained instead, as ``DING`` trains it: ``--epochs`` with
dropout, then ``--finetune-epochs`` without, L1 loss on the standardised property, Adam 1e-3
with a cosine decay to 1e-5 over each stage, batch ``--bs``, the best validation epoch of each
stage kept; it prints the validation MAE per epoch and at the end the test MAE (eV/atom or
Å³/atom) of the kept weights (saved as ``<tag>.pred.pt``). ``--reuse`` loads those weights
instead of training; ``--average-with MODEL`` also scores the plain mean of this predictor and
the same property's predictor of a DING model file.

Trains ``ase_mlgen.ding.nets.CompositionVAE`` with ``vae_loss`` directly (no run directory) on
the fixed OQMD split (seed 0; ``--ntrain`` takes a random subset of the 21,766 training
compositions) and prints one JSON line per epoch: weighted reconstruction and KL terms, the
validation loss (sampled z; it drives ``ReduceLROnPlateau``), the learning rate, and every
``--every`` epochs the exact reconstruction (latent mean, argmax per element) of the
validation and test splits and of 3,000 training compositions. A run stops when the learning
rate reaches 1e-6. Results go to ``--out`` (``<tag>.json``, ``<tag>.pt``); ``--summary`` collects
the finished runs into ``bench/results/ding_recipe.json`` (runs recorded there before whose
files are no longer in ``--out`` are kept). The tried recipes and what they gave are in
``doc/ding.md``.

Training-set changes (generator mode): ``--subst P`` element substitution (input and target,
``ase_mlgen.ding.nets.substitute_elements``' rule), ``--count-subst P`` one count redrawn,
``--corrupt P`` denoising (encoder input only), ``--cond-noise S`` noisy conditions, ``--ls``
label smoothing; ``--wd`` with ``--wd-mode adamw|l2``; ``--library`` trains through ``DING``.
The relabelled substitution of issue #8's fourth round (``--relabel MODEL``, results in
``bench/results/ding_relabel.json``) ran with this script at commit 9cf4cdf; it is now the
library's ``DING(substitution_labels="predicted")``, measured through ``bench/ding.py``.
"""
import argparse, json, sys, time, os, glob, platform
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np, torch
from ase_mlgen.data.oqmd import load_oqmd, split, PROPERTIES
from ase_mlgen.ding.nets import CompositionVAE, vae_loss

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=60)
p.add_argument("--bs", type=int, default=256)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--kl", type=float, default=0.05)
p.add_argument("--anneal", type=int, default=0, help="epochs of linear KL warm-up")
p.add_argument("--sched", default="plateau", help="plateau|cosine|const|plateau_train")
p.add_argument("--patience", type=int, default=5)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--wd-mode", choices=("adamw", "l2"), default="adamw",
               help="adamw: decoupled decay (AdamW); l2: Adam with weight_decay (L2 in the gradient)")
p.add_argument("--corrupt", type=float, default=0.0,
               help="denoising: probability that a training composition's encoder input is "
                    "corrupted (the decoder's target stays clean)")
p.add_argument("--corrupt-kind", choices=("drop", "count", "both"), default="both",
               help="drop: one present element removed (compositions of 2+ elements); count: one "
                    "present element's count moved by +-1 (kept within 1-10); both: either, 50/50")
p.add_argument("--subst", type=float, default=0.0,
               help="augmentation: probability that one present element of a training composition "
                    "is replaced by an absent one (drawn by training frequency), in the encoder "
                    "input and the target alike; the properties stay the composition's own")
p.add_argument("--count-subst", type=float, default=0.0,
               help="augmentation: probability that one present element's count is replaced by "
                    "another level 1-10 (uniform), in the encoder input and the target alike")
p.add_argument("--subst-n", type=int, default=1,
               help="substitution passes per composition (each with probability --subst)")
p.add_argument("--cond-noise", type=float, default=0.0,
               help="std of Gaussian noise added to the scaled properties during training")
p.add_argument("--library", action="store_true",
               help="train through ase_mlgen's DING (predictors off; --epochs, --bs, --lr, --kl, "
                    "--latent, --patience, --sched plateau|cosine, --subst, --seed, --cond) "
                    "instead of this script's loop; keeps the best validation-loss epoch as DING "
                    "does, run directory --out/<tag>.run")
p.add_argument("--ls", type=float, default=0.0, help="label smoothing of each element's softmax target")
p.add_argument("--cond", type=int, default=1)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--every", type=int, default=5)
p.add_argument("--tag", default="")
p.add_argument("--latent", type=int, default=32)
p.add_argument("--ntrain", type=int, default=0)
p.add_argument("--drop", type=float, default=0.0)
p.add_argument("--out", default="/tmp/ding/res")
p.add_argument("--summary", action="store_true", help="collect --out/*.json into bench/results")
p.add_argument("--predictor", choices=PROPERTIES, default=None,
               help="train this property's predictor instead of the generator")
p.add_argument("--predictor-input", choices=("onehot", "fractions"), default="onehot")
p.add_argument("--finetune-epochs", type=int, default=0)
p.add_argument("--reuse", action="store_true",
               help="predictor mode: load --out/<tag>.pred.pt (weights and history) instead of training")
p.add_argument("--average-with", default=None, metavar="MODEL",
               help="predictor mode: also score the plain mean of this predictor and the same "
                    "property's predictor of a DING model file (a two-model ensemble)")
a = p.parse_args()
if a.summary:
    runs = []
    for f in sorted(glob.glob(os.path.join(a.out, "*.json"))):
        r = json.load(open(f))
        if "hist" not in r or not r["hist"] or "ep" not in r["hist"][0]:
            continue
        ev = [h for h in r["hist"] if "te_exact" in h]
        runs.append({"tag": r["args"]["tag"], "args": r["args"], "epochs_run": r["hist"][-1]["ep"],
                     "seconds": r["hist"][-1]["s"], "load_average_end": r.get("load_average"),
                     "finished": r.get("finished", True),
                     "last": ev[-1] if ev else None,
                     "best_val": max(ev, key=lambda h: h["va_exact"]) if ev else None})
    out = Path(__file__).resolve().parents[1] / "bench" / "results" / "ding_recipe.json"
    # runs recorded before whose files are no longer in --out are kept
    new_tags = {r["tag"] for r in runs}
    if out.exists():
        runs = [r for r in json.load(open(out))["runs"] if r["tag"] not in new_tags] + runs
    json.dump({"benchmark": "DING generator recipe experiments (bench/ding_recipe.py)",
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
               "runs": runs}, open(out, "w"), indent=1)
    print(out); sys.exit(0)
torch.set_num_threads(1); torch.manual_seed(a.seed)
t = load_oqmd(); tr, va, te = split(t, seed=0)
if a.predictor:
    import copy
    from ase_mlgen.ding.nets import PropertyPredictor
    j = PROPERTIES.index(a.predictor)
    y = tr.targets(PROPERTIES)[:, j]; mean, sd = y.mean(), y.std()
    X = {k: torch.tensor(tb.vectors(), dtype=torch.float32) for k, tb in
         (("tr", tr), ("va", va), ("te", te))}
    Y = {k: torch.tensor((tb.targets(PROPERTIES)[:, j] - mean) / sd, dtype=torch.float32)
         for k, tb in (("tr", tr), ("va", va), ("te", te))}
    net = PropertyPredictor(inputs=a.predictor_input)
    g = torch.Generator().manual_seed(a.seed); hist = []; t0 = time.time(); ep_all = 0
    pt_path = os.path.join(a.out, f"{a.tag or 'pred'}.pred.pt")
    stages = (("dropout", a.epochs, True), ("finetune", a.finetune_epochs, False))
    if a.reuse:
        saved = torch.load(pt_path, weights_only=False)
        net = PropertyPredictor(inputs=saved["inputs"]); net.load_state_dict(saved["state_dict"])
        hist, stages = saved.get("hist", []), ()
    for stage, n_ep, drop in stages:
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(n_ep, 1), eta_min=1e-5)
        best, best_state = float("inf"), copy.deepcopy(net.state_dict())
        for ep in range(n_ep):
            net.train(drop); perm = torch.randperm(len(X["tr"]), generator=g)
            for s in range(0, len(perm), a.bs):
                idx = perm[s:s + a.bs]
                loss = torch.nn.functional.l1_loss(net(X["tr"][idx]), Y["tr"][idx])
                opt.zero_grad(); loss.backward(); opt.step()
            sch.step(); net.eval(); ep_all += 1
            with torch.no_grad():
                v = (net(X["va"]) - Y["va"]).abs().mean().item() * sd
            if v < best:
                best, best_state = v, copy.deepcopy(net.state_dict())
            h = {"ep": ep_all, "stage": stage, "val_mae": round(v, 4), "s": round(time.time() - t0, 1)}
            print(json.dumps(h), flush=True); hist.append(h)
        net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        err = ((net(X["te"]) - Y["te"]) * sd).abs().numpy().astype(float)
        yt = Y["te"].numpy() * sd
        r2 = 1 - float(np.sum((err) ** 2) / np.sum((yt - yt.mean()) ** 2))
    res = {"test_mae": float(err.mean()), "test_median_ae": float(np.median(err)), "test_r2": r2,
           "best_val_mae": min(h["val_mae"] for h in hist) if hist else None}
    if a.average_with:
        from ase_mlgen import DING
        other = DING.load(a.average_with)
        for name, tb, key in (("val", va, "va"), ("test", te, "te")):
            with torch.no_grad():
                mine = net(X[key]).numpy() * sd + mean
            theirs = other.predict(tb)[a.predictor]
            yt = tb.properties[a.predictor]
            for label, pr in (("other", theirs), ("mean_of_both", (mine + theirs) / 2)):
                e = np.abs(pr - yt)
                res[f"{name}_{label}"] = {"mae": float(e.mean()), "median_ae": float(np.median(e)),
                                          "r2": float(1 - np.sum((pr - yt) ** 2)
                                                      / np.sum((yt - yt.mean()) ** 2))}
        res["average_with"] = a.average_with
    print(json.dumps(res), flush=True)
    os.makedirs(a.out, exist_ok=True)
    json.dump({"args": vars(a), "hist": hist, "result": res, "load_average": os.getloadavg(),
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()}},
              open(os.path.join(a.out, f"{a.tag or 'pred'}.pred.json"), "w"))
    if not a.reuse:
        torch.save({"state_dict": net.state_dict(), "inputs": a.predictor_input, "mean": mean,
                    "scale": sd, "property": a.predictor, "hist": hist}, pt_path)
    sys.exit(0)
if a.library:
    from ase_mlgen import DING
    if a.sched not in ("plateau", "cosine") or a.wd or a.corrupt or a.cond_noise or a.ls \
            or a.drop or a.anneal or a.ntrain or a.subst_n != 1 or a.count_subst:
        sys.exit("--library takes only the DING hyper-parameters named in its help")
    model = DING(conditional=bool(a.cond), epochs=a.epochs, batch_size=a.bs, lr=a.lr,
                 kl_weight=a.kl, latent_dim=a.latent, lr_patience=a.patience, schedule=a.sched,
                 substitution=a.subst, predictors=False, random_state=a.seed, threads=1,
                 device="cpu")
    model.train(tr, va, run_dir=os.path.join(a.out, f"{a.tag or 'run'}.run"))
    hist, s_tot = [], 0.0
    for r in model.history_:
        s_tot += r["epoch_seconds"]
        hist.append({"ep": r["epoch"], "loss": round(r["train_loss"], 3), "val": round(r["val_loss"], 3),
                     "lr": r["lr"], "s": round(s_tot, 1), "va_exact_epoch": round(r["val_exact"], 4)})
    # the kept (best validation-loss) weights, scored as DING.reconstruction_accuracy does
    sub = tr.subset(np.arange(3000))
    hist[-1].update({"va_exact": round(model.reconstruction_accuracy(va), 4),
                     "te_exact": round(model.reconstruction_accuracy(te), 4),
                     "tr_exact": round(model.reconstruction_accuracy(sub), 4)})
    print(json.dumps(hist[-1]), flush=True)
    os.makedirs(a.out, exist_ok=True)
    json.dump({"args": vars(a), "hist": hist, "load_average": os.getloadavg()},
              open(os.path.join(a.out, f"{a.tag or 'run'}.json"), "w"))
    sys.exit(0)
if a.ntrain: tr = tr.subset(np.random.default_rng(0).permutation(len(tr))[:a.ntrain])
y = tr.targets(PROPERTIES); mean, sd = y.mean(0), y.std(0)
def T(tb):
    return (torch.tensor(tb.vectors(), dtype=torch.float32),
            torch.tensor((tb.targets(PROPERTIES) - mean) / sd, dtype=torch.float32),
            torch.tensor(tb.counts))
xtr, ytr, ctr = T(tr); xva, yva, cva = T(va); xte, yte, cte = T(te)
if not a.cond:
    ytr = yva = yte = None
gen = CompositionVAE(3 if a.cond else 0, latent_dim=a.latent, dropout=a.drop)
opt = (torch.optim.AdamW(gen.parameters(), lr=a.lr, weight_decay=a.wd) if a.wd and a.wd_mode == "adamw"
       else torch.optim.Adam(gen.parameters(), lr=a.lr, weight_decay=a.wd))
N_LEV = xtr.shape[1] // ctr.shape[1]
freq = (ctr > 0).sum(0).double(); freq = freq / freq.sum()
def onehot(c):
    return torch.nn.functional.one_hot(c, N_LEV).reshape(len(c), -1).float()
def pick_present(c, gen_):
    """Index of one present element per row, uniformly among the present ones."""
    return (torch.rand(c.shape, generator=gen_) * (c > 0)).argmax(1)
def substitute(c, gen_):
    c = c.clone(); rows = torch.arange(len(c))
    sel = torch.rand(len(c), generator=gen_) < a.subst
    i = pick_present(c, gen_); j = torch.multinomial(freq, len(c), replacement=True, generator=gen_)
    ok = sel & (c[rows, j] == 0)
    r, i, j = rows[ok], i[ok], j[ok]
    c[r, j] = c[r, i]; c[r, i] = 0
    return c
def count_substitute(c, gen_):
    c = c.clone(); rows = torch.arange(len(c))
    sel = torch.rand(len(c), generator=gen_) < a.count_subst
    i = pick_present(c, gen_)
    new = torch.randint(1, N_LEV, (len(c),), generator=gen_)
    c[rows[sel], i[sel]] = new[sel]
    return c
def corrupt(c, gen_):
    c = c.clone(); rows = torch.arange(len(c))
    sel = torch.rand(len(c), generator=gen_) < a.corrupt
    i = pick_present(c, gen_)
    kind = {"drop": torch.ones(len(c), dtype=torch.bool), "count": torch.zeros(len(c), dtype=torch.bool),
            "both": torch.rand(len(c), generator=gen_) < 0.5}[a.corrupt_kind]
    drop = sel & kind & ((c > 0).sum(1) >= 2)
    c[rows[drop], i[drop]] = 0
    cnt = sel & ~kind
    step = torch.where(torch.rand(len(c), generator=gen_) < 0.5, -1, 1)
    new = (c[rows, i] + step).clamp(1, N_LEV - 1)
    c[rows[cnt], i[cnt]] = new[cnt]
    return c
if a.sched.startswith("plateau"):
    sch = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=a.patience, min_lr=1e-8)
elif a.sched == "cosine":
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
else:
    sch = None
def exact(x, yc, c):
    gen.eval()
    with torch.no_grad():
        mu, lv = gen.encode(x, yc)
        d = gen.decode(mu, yc).argmax(2)
    return (d == c).all(1).float().mean().item()
n = len(xtr); g = torch.Generator().manual_seed(a.seed)
hist = []
t0 = time.time()
for ep in range(a.epochs):
    gen.train()
    klw = a.kl * min(1.0, (ep + 1) / a.anneal) if a.anneal else a.kl
    perm = torch.randperm(n, generator=g)
    tot = rec = kl = 0.0
    for s in range(0, n, a.bs):
        idx = perm[s:s + a.bs]; xb = xtr[idx]
        yb = None if ytr is None else ytr[idx]
        if yb is not None and a.cond_noise:
            yb = yb + a.cond_noise * torch.randn(yb.shape, generator=g)
        if a.subst or a.corrupt or a.count_subst:
            cb = ctr[idx]
            for _ in range(a.subst_n if a.subst else 0):
                cb = substitute(cb, g)
            if a.count_subst:
                cb = count_substitute(cb, g)
            xb = onehot(cb)
            xin = onehot(corrupt(cb, g)) if a.corrupt else xb
        else:
            xin = xb
        mu, lv = gen.encode(xin, yb)
        logits = gen.decode(mu + torch.exp(0.5 * lv) * torch.randn_like(mu), yb)
        target = xb * (1 - a.ls) + a.ls / N_LEV if a.ls else xb
        loss, r, k = vae_loss(logits, target, mu, lv, 10.0, klw)
        opt.zero_grad(); loss.backward(); opt.step()
        tot += loss.item() * len(idx); rec += r.item() * len(idx); kl += k.item() * len(idx)
    gen.eval()
    with torch.no_grad():
        lo, mu, lv = gen(xva, yva)
        vl = vae_loss(lo, xva, mu, lv, 10.0, a.kl)[0].item()
    if sch is not None:
        if a.sched == "plateau": sch.step(vl)
        elif a.sched == "plateau_train": sch.step(tot / n)
        else: sch.step()
    rec_d = {"ep": ep + 1, "loss": round(tot / n, 3), "rec": round(rec / n, 3), "kl": round(kl / n, 3),
             "val": round(vl, 3), "lr": opt.param_groups[0]["lr"], "s": round(time.time() - t0, 1)}
    if (ep + 1) % a.every == 0 or ep + 1 == a.epochs:
        rec_d["va_exact"] = round(exact(xva, yva, cva), 4)
        rec_d["te_exact"] = round(exact(xte, yte, cte), 4)
        rec_d["tr_exact"] = round(exact(xtr[:3000], None if ytr is None else ytr[:3000], ctr[:3000]), 4)
    if opt.param_groups[0]["lr"] <= 1.1e-6 and "te_exact" not in rec_d:
        rec_d["va_exact"] = round(exact(xva, yva, cva), 4); rec_d["te_exact"] = round(exact(xte, yte, cte), 4)
        rec_d["tr_exact"] = round(exact(xtr[:3000], None if ytr is None else ytr[:3000], ctr[:3000]), 4)
    print(json.dumps(rec_d), flush=True); hist.append(rec_d)
    if opt.param_groups[0]["lr"] <= 1.1e-6: break
os.makedirs(a.out, exist_ok=True)
json.dump({"args": vars(a), "hist": hist, "load_average": os.getloadavg()},
          open(os.path.join(a.out, f"{a.tag or 'run'}.json"), "w"))
torch.save(gen.state_dict(), os.path.join(a.out, f"{a.tag or 'run'}.pt"))
