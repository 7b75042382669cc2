"""LoGAN benchmark: C5H12O isomers from C4H10O/C6H14O training molecules (and, optionally, a
scaled-down SiO2 crystal experiment).

    nice -n 10 python bench/logan.py [--data ../shared/data/logan] [--models 4] [--epochs 1500]
                                     [--sio2 mp-546546] [--out bench/results]

C5H12O: an ensemble of LoGAN models is trained (as background jobs, two at a time, one CPU
thread each) on the 39 QM9 molecules of composition C4H10O and C6H14O; each member generates
``--per-model`` structures; for each k in 14…50 the union is filtered to k representatives
by the paper's filter (PCA + k-means) and by the bond-graph filter
(``ase_mlgen.select.molecule_representatives``: valid molecules, then new heavy-atom skeletons,
then PCA + k-means; ``--no-skeleton`` without the skeleton tier), those are relaxed with GFN2-xTB (tblite) through ``relax_many``, and the distinct
C5H12O constitutional isomers (bond-graph isomorphism; 14 exist: 8 alcohols, 6 ethers) are
counted. Relaxations of a structure picked for several k are done once.

SiO2 (``--sio2 TARGET ...`` or ``all``): for each target, train ``--sio2-models`` LoGANs (with
generator snapshots) on the polymorphs of at most ``--sio2-max-atoms`` atoms in
``mp-TARGET_training.extxyz`` (the target itself is held back; its cell and atom count are
recovered by :func:`sio2_targets`), generate the target's atoms in its cell, pick ``--sio2-k``
candidates with each filter of ``--sio2-filters`` (``paper``: minimum distance, PCA + k-means;
``coordination``: the same among the structures with the fewest Si/O coordination defects),
relax them and as many random structures (atoms no closer than 0.9 × the shortest training
distance) with the BKS pair potential in the fixed cell, and report the lowest and median
energies, space groups and coordination before and after relaxation.

Writes ``logan.json`` and ``logan_pca.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


#: optimisers by name for ``--sio2-optimizer``
OPTIMIZERS = ("BFGS", "BFGSLineSearch", "FIRE")


def _relax(images, calculator, fmax, steps, workers, optimizer="BFGS"):
    """Relax with :func:`ase_mlgen.search.relax.relax_many` (``optimizer``, one of
    :data:`OPTIMIZERS`, a process pool of ``workers``); one ``(atoms or None, energy or None)``
    per structure, ``None`` where the relaxation failed (SCF failures of wild structures count
    as failed). ``atoms.info["converged"]`` says whether ``fmax`` was reached in ``steps``."""
    import ase.optimize

    from ase_mlgen.search.relax import relax_many

    prepared = []
    for a in images:
        a = a.copy()
        if not a.pbc.any():
            a.set_cell(np.zeros((3, 3)))
        prepared.append(a)
    results = relax_many(prepared, calculator, fmax=fmax, steps=steps, max_workers=workers,
                         optimizer=getattr(ase.optimize, optimizer), progress=False,
                         errors="skip")
    out = []
    for atoms in results:
        if atoms is None:
            out.append((None, None))
        else:
            out.append((atoms, float(atoms.get_potential_energy())))
    return out


# ----------------------------------------------------------------------------------------------
def c5h12o(args, report):
    from ase.io import read

    from ase_mlgen.generators.logan import LoGANEnsemble, train
    from ase_mlgen.generators.logan.training import DEFAULT_VARIATIONS
    from ase_mlgen.select import molecule_representatives, representatives
    from ase_mlgen.select.molecules import molecule_labels, tier_counts
    from ase_mlgen.structures.molecules import C5H12O_ISOMERS, classify_c5h12o

    path = Path(args.data) / "C5H12O" / "C5H12O_training.extxyz"
    if not path.is_file():
        print(f"skipping C5H12O: {path} not found", file=sys.stderr)
        report["c5h12o"] = {"skipped": f"{path} not found"}
        return
    images = read(path, ":")
    runs = Path(args.workdir) / "c5h12o"
    t0 = time.perf_counter()
    params = {"epochs": args.epochs, "lr_generator": args.lr, "lr_critic": args.lr,
              "max_neighbours": 12, "n_penalty": args.n_penalty, "device": "cpu",
              "snapshot_every": args.snapshot_every, "snapshot_start": args.snapshot_start}
    jobs = []
    n_parallel = max(1, args.parallel)
    per_job = int(np.ceil(args.models / n_parallel))
    member = 0
    for j in range(n_parallel):
        n = min(per_job, args.models - member)
        if n <= 0:
            break
        variations = [DEFAULT_VARIATIONS[(member + i) % len(DEFAULT_VARIATIONS)]
                      for i in range(n)]
        run = runs / f"job{j}"
        resume = run.exists() and args.resume
        if run.exists() and not resume:
            import shutil

            shutil.rmtree(run)
        jobs.append(train(images, "C5H12O", None, run_dir=run, n_models=n,
                          random_state=args.seed + member, variations=variations,
                          background=True, resume=resume, threads=args.threads, **params))
        member += n
    models = []
    for job in jobs:
        res = job.result()
        models += res.models if isinstance(res, LoGANEnsemble) else [res]
    train_s = time.perf_counter() - t0
    if args.resume:  # models may come from an earlier run: count their own training time
        train_s = max(train_s, sum(m.fit_seconds or 0 for m in models) / n_parallel)
    ensemble = LoGANEnsemble(models)
    use_snaps = args.snapshot_every > 0
    print(f"trained {len(models)} models in {train_s:.0f} s", flush=True)

    t0 = time.perf_counter()
    ensemble.models[0].generate(10_000, random_state=1)
    gen10k_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool = ensemble.generate(args.per_model * len(models), random_state=args.seed,
                             snapshots=use_snaps)
    gen_s = time.perf_counter() - t0
    # raw quality of the generated structures before any relaxation
    t0 = time.perf_counter()
    raw_names = [classify_c5h12o(a) for a in pool]
    classify_s = time.perf_counter() - t0
    raw_counts = Counter(n for n in raw_names if n)
    per_member = {}
    for a, n in zip(pool, raw_names):
        key = f"model{a.info.get('model', 0)}"
        per_member.setdefault(key, Counter())
        if n:
            per_member[key][n] += 1
    print(f"generated {len(pool)} in {gen_s:.2f} s; unrelaxed valid C5H12O: "
          f"{sum(raw_counts.values())}, distinct isomers among them: {len(raw_counts)} "
          f"{dict(raw_counts)}", flush=True)

    from ase_mlgen.select import structure_features

    t0 = time.perf_counter()
    features = structure_features(pool)
    feature_s = time.perf_counter() - t0
    relaxed: dict[tuple, tuple] = {}
    relax_s = 0.0

    def _key(atoms):   # a pool structure, as generated or with its hydrogens rebuilt
        return atoms.info["source_index"], bool(atoms.info.get("hydrogens_rebuilt", False))

    def relax_new(picked):
        nonlocal relax_s
        todo = [a for a in picked if _key(a) not in relaxed]
        if todo:
            t0 = time.perf_counter()
            results = _relax(todo, args.calculator, args.fmax, args.steps, args.workers)
            relax_s += time.perf_counter() - t0
            for a, (atoms, energy) in zip(todo, results):
                name = classify_c5h12o(atoms) if atoms is not None else None
                relaxed[_key(a)] = (name, energy)

    def row(picked, k, extra=None):
        names = [relaxed[_key(a)][0] for a in picked]
        found = sorted({n for n in names if n})
        return {"k": k, "relaxations": len(picked), "distinct_isomers": len(found),
                "isomers": found,
                "alcohols": sum(C5H12O_ISOMERS[n]["kind"] == "alcohol" for n in found),
                "ethers": sum(C5H12O_ISOMERS[n]["kind"] == "ether" for n in found),
                "invalid_after_relaxation": sum(n is None for n in names), **(extra or {})}

    # filter 1: the paper's (covalent minimum distance, PCA to 2 components, k-means)
    per_k = []
    filter_s = feature_s
    pca_info = None
    for k in args.ks:
        t0 = time.perf_counter()
        picked, info = representatives(pool, k, return_info=True, random_state=args.seed,
                                       features=features)
        filter_s += time.perf_counter() - t0
        if k == args.plot_k:
            pca_info = (info, picked)
        relax_new(picked)
        per_k.append(row(picked, k))
        print("paper filter", json.dumps(per_k[-1]), flush=True)

    # filter 2: bond-graph aware, with no knowledge of which isomers exist
    # (ase_mlgen.select.molecule_representatives): one structure per distinct valence-saturated
    # unrelaxed molecule, then one per heavy-atom skeleton not covered yet (a sound skeleton
    # with misplaced hydrogens), then the paper filter's picks among the rest (with --sane, only
    # among those that are one connected molecule at 1.3 x the covalent radii with no atom over
    # its valence). --no-skeleton leaves out the second tier (the filter of earlier runs).
    t0 = time.perf_counter()
    labels = molecule_labels(pool)
    graph_s = time.perf_counter() - t0
    graph_info = None
    per_k_graph = []
    for k in args.ks:
        t0 = time.perf_counter()
        picked, graph_info = molecule_representatives(
            pool, k, features=features, plausible_only=args.sane, random_state=args.seed,
            skeletons=not args.no_skeleton, labels=labels, return_info=True,
            rebuild=args.rebuild_hydrogens)
        graph_s += time.perf_counter() - t0
        relax_new(picked)
        tiers = {t: [relaxed[_key(a)][0] for a in picked if a.info["tier"] == t]
                 for t in ("molecule", "skeleton", "other")}
        per_k_graph.append(row(picked, k, {
            "unrelaxed_valid_picked": len(tiers["molecule"]),
            "skeleton_picked": len(tiers["skeleton"]),
            "skeleton_picks_relaxed_to": tiers["skeleton"]}))
        print("graph filter", json.dumps(per_k_graph[-1]), flush=True)

    # unfiltered control: the same number of structures drawn at random from the pool
    rng = np.random.default_rng(args.seed)
    control = []
    if args.control:
        idx = rng.choice(len(pool), size=min(args.control, len(pool)), replace=False)
        picked = []
        for i in idx:
            a = pool[int(i)].copy()
            a.info["source_index"] = int(i)
            picked.append(a)
        relax_new(picked)
        for k in args.ks:
            if k <= len(picked):
                control.append(row(picked[:k], k))

    all_found = sorted({v[0] for v in relaxed.values() if v[0]})

    def summary(rows):
        first_all = next((r["k"] for r in rows if r["distinct_isomers"] == 14), None)
        at15 = next((r["distinct_isomers"] for r in rows if r["k"] == 15), None)
        return first_all, at15

    first_all, at15 = summary(per_k)
    first_all_g, at15_g = summary(per_k_graph)
    experiment_s = train_s + gen_s + filter_s
    # the graph filter needs the descriptor features (for its k-means) and the bond graphs
    experiment_graph_s = train_s + gen_s + feature_s + graph_s
    report["c5h12o"] = {
        "training_structures": len(images),
        "training_compositions": dict(Counter(a.get_chemical_formula() for a in images)),
        "ensemble_models": len(models),
        "model_settings": [{"random_state": m.random_state,
                            **{k: m.params[k] for k in ("r_cut", "n_max", "max_neighbours",
                                                        "epochs", "lr_generator",
                                                        "batch_size", "n_critic",
                                                        "n_penalty", "penalty_weight",
                                                        "snapshot_every", "snapshot_start")},
                            "snapshots": len(m.snapshots)} for m in models],
        "box": np.round(np.diag(models[0].cell), 2).tolist(),
        "parallel_training_jobs": len(jobs), "threads_per_job": args.threads,
        "training_seconds_wall": round(train_s, 1),
        "training_seconds_per_model": [round(m.fit_seconds or 0, 1) for m in models],
        "generated": len(pool),
        "generate_seconds": round(gen_s, 3),
        "generate_10000_seconds_one_model": round(gen10k_s, 3),
        "unrelaxed_valid": sum(raw_counts.values()),
        "unrelaxed_valid_fraction": round(sum(raw_counts.values()) / max(1, len(pool)), 4),
        "unrelaxed_distinct_isomers": len(raw_counts),
        "unrelaxed_isomer_counts": dict(raw_counts.most_common()),
        "unrelaxed_isomers_per_member": {k: len(v) for k, v in per_member.items()},
        "classify_seconds": round(classify_s, 2),
        "filter_seconds_all_k": round(filter_s, 1),
        "graph_filter_seconds_all_k": round(graph_s, 1),
        "relax_seconds_all": round(relax_s, 1),
        "relaxations_total_distinct": len(relaxed),
        "calculator": args.calculator, "fmax": args.fmax, "max_steps": args.steps,
        "load_average_at_end": os.getloadavg(),
        "per_k_paper_filter": per_k,
        "per_k_graph_filter": per_k_graph,
        "graph_filter_sane_check": bool(args.sane),
        "graph_filter_skeleton_tier": not args.no_skeleton,
        "graph_filter_rebuild_hydrogens": bool(args.rebuild_hydrogens),
        "graph_filter_pool": {**(graph_info or {}), "tiers": tier_counts(labels)},
        "per_k_random_unfiltered": control,
        "isomers_found_any": all_found,
        "isomers_missing": sorted(set(C5H12O_ISOMERS) - set(all_found)),
        "smallest_k_with_all_14": {"paper_filter": first_all, "graph_filter": first_all_g},
        "isomers_at_k15": {"paper_filter": at15, "graph_filter": at15_g},
        "experiment_seconds_train_generate_filter": round(experiment_s, 1),
        "experiment_seconds_train_generate_graph_filter": round(experiment_graph_s, 1),
        "targets": {
            "all_14_with_at_most_30": bool(min(x or 999 for x in (first_all, first_all_g))
                                           <= 30),
            "at_least_12_with_15": bool(max(x or 0 for x in (at15, at15_g)) >= 12),
            "under_20_min": bool(max(experiment_s, experiment_graph_s) < 1200),
            "10000_in_seconds": bool(gen10k_s < 10)},
    }
    if pca_info is not None:
        _plot_pca(pca_info, relaxed, Path(args.out) / "logan_pca.png", args.plot_k)


def _plot_pca(pca_info, relaxed, path, k):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info, picked = pca_info
    coords = info["pca"]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    if coords.shape[1] >= 2:
        ax.scatter(coords[:, 0], coords[:, 1], c=info["labels"], s=3, cmap="tab20", alpha=0.5)
        index = {s: i for i, s in enumerate(info["unique_kept"])}
        for a in picked:
            src = a.info["source_index"]
            x, y = coords[index[src], :2]
            name = relaxed.get(src, (None,))[0]
            ax.scatter([x], [y], marker="*", s=90, c="k" if name else "r")
            ax.annotate(name or "invalid", (x, y), fontsize=5)
        ev = info.get("explained_variance_ratio", [0, 0])
        ax.set_xlabel(f"PC1 ({ev[0]:.0%})")
        ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
    ax.set_title(f"LoGAN C5H12O: {len(coords)} generated structures, k={k} clusters\n"
                 "stars: representatives (label = isomer after xTB relaxation)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
def _coordination(atoms):
    """Si–O coordination of a silica structure (periodic images counted separately)."""
    from ase_mlgen.structures.coordination import (SILICA_CUTOFFS, SILICA_IDEAL,
                                                   coordination_summary)

    c = coordination_summary(atoms, SILICA_IDEAL, SILICA_CUTOFFS)
    return {"si_4_fold": c["Si"][0], "n_si": c["Si"][1], "o_2_fold": c["O"][0],
            "n_o": c["O"][1], "defects": c["defects"], "all_ideal": c["all_ideal"]}


class _DescriptorReport:
    """What the relaxed candidates are, by descriptor: distinct crystals among them
    (``unique_crystals``: space group and averaged SphericalBessel descriptors within 5 %) and,
    for a structure, the nearest training polymorph by the relative distance between averaged
    descriptors (size-independent, so every polymorph of the training file counts)."""

    SPECIES = (8, 14)

    def __init__(self, training):
        from ase_mlgen.structures.crystals import averaged_descriptors, space_group

        self.training = list(training)
        self.features = averaged_descriptors(self.training, species=self.SPECIES)
        self.groups = [space_group(a, symprec=0.1) for a in self.training]

    def distinct(self, images) -> int:
        from ase_mlgen.structures.crystals import unique_crystals

        return len(unique_crystals(images))

    def nearest_training(self, atoms) -> dict:
        from ase_mlgen.structures.crystals import averaged_descriptors, relative_distance

        x = averaged_descriptors([atoms], species=self.SPECIES)[0]
        relative = relative_distance(self.features, x)
        i = int(np.argmin(relative))
        return {"averaged_descriptor": np.round(x, 4).tolist(),
                "nearest_training_polymorph": {
                    "index": i, "formula": self.training[i].get_chemical_formula(),
                    "spacegroup": self.groups[i],
                    "relative_descriptor_distance": round(float(relative[i]), 4)}}


def _random_crystal(template, dmin, rng, tries=20000):
    from ase import Atoms

    pos = []
    cell = template.cell
    for z in template.numbers:
        for _ in range(tries):
            p = rng.random(3) @ cell.array
            if not pos:
                pos.append(p)
                break
            trial = Atoms(numbers=[1] * (len(pos) + 1), positions=pos + [p], cell=cell, pbc=True)
            d = trial.get_distances(len(pos), list(range(len(pos))), mic=True)
            if d.min() >= dmin:
                pos.append(p)
                break
        else:
            return None
    return Atoms(numbers=template.numbers, positions=pos, cell=cell, pbc=True)


#: mp-546546's target (Si3O6) is in none of the six shared training files, so its cell cannot be
#: derived from them: lattice vectors (Å) from the LoGAN repository's
#: data/mp-546546_ground_truth.extxyz (only the cell and the atom count are used, not positions)
MP546546_CELL = [[5.32912045, 0.0, 0.0], [-0.70430559, 5.28237432, 0.0],
                 [-0.70430525, -0.80444386, 5.22076100]]


def sio2_targets(data_dir):
    """For each of the six targets: (composition, cell) of the held-back target and the training
    structures of its file.

    The shared files hold, for target T, the polymorphs other than T; a structure that is in the
    five other files but not in T's file is T itself (its cell and atom count are what LoGAN must
    fill). That identifies five targets; the sixth (mp-546546) is in none of the files (its file
    has all 168 structures, its own target is absent from every file), see MP546546_CELL.
    """
    from ase import Atoms
    from ase.io import read

    files = sorted(Path(data_dir).glob("mp-*_training.extxyz"))
    names = [f.name.split("_")[0] for f in files]
    sets = {n: read(f, ":") for n, f in zip(names, files)}

    def key(a):
        return (len(a), a.get_chemical_formula(), tuple(np.round(a.cell.cellpar(), 2)),
                round(a.get_volume(), 1))

    keys = {n: {key(a): a for a in imgs} for n, imgs in sets.items()}
    out = {}
    for n in names:
        others = [m for m in names if m != n]
        cand = [a for k, a in keys[others[0]].items()
                if k not in keys[n] and all(k in keys[m] for m in others)]
        if len(cand) == 1:
            tgt = cand[0]
            out[n] = {"numbers": tgt.numbers.copy(), "cell": tgt.cell.array.copy(),
                      "source": "cell and atoms of the structure missing from this file only",
                      "training": sets[n]}
        elif n == "mp-546546":
            tmpl = Atoms("Si3O6")
            out[n] = {"numbers": tmpl.numbers, "cell": np.array(MP546546_CELL),
                      "source": "cell from the LoGAN repository (target absent from all files)",
                      "training": sets[n]}
    return out


def _sio2_target(spec, max_atoms):
    """The held-back target as an empty template (its atoms in its cell) and the training
    polymorphs of at most ``max_atoms`` atoms."""
    from ase import Atoms

    held = Atoms(numbers=spec["numbers"], cell=spec["cell"], pbc=True)
    return held, [a for a in spec["training"] if len(a) <= max_atoms]


def _variations(text):
    """``--sio2-variations``: a JSON list, or ``@FILE`` holding one."""
    from ase_mlgen.generators.logan.training import read_variations

    try:
        return read_variations(text)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"--sio2-variations: {err}") from None


def _sio2_train(args, targets, wanted):
    """Train ``--sio2-models`` LoGAN members for every wanted target as background jobs,
    ``--parallel`` jobs at a time (one per target, its members one after the other). Returns
    ``{target: (models, wall seconds of that target's job)}``."""
    import shutil

    from ase_mlgen.generators.logan import LoGAN, LoGANEnsemble, train

    if args.sio2_evaluate_only:
        done = {}
        for target in wanted:
            files = sorted((Path(args.workdir) / "sio2" / target).glob("member_*.pt"))
            if target in targets and not files:
                raise SystemExit(f"--sio2-evaluate-only: no member_*.pt for {target} in "
                                 f"{Path(args.workdir) / 'sio2' / target}")
            done[target] = ([LoGAN.load(f, device="cpu") for f in files], 0.0)
        return done
    params = {"epochs": args.sio2_epochs, "lr_generator": args.lr, "lr_critic": args.lr,
              "r_cut": args.sio2_rcut, "n_max": args.sio2_nmax, "max_neighbours": 12,
              "rattle": args.sio2_rattle, "cell_margin": args.sio2_cell_margin,
              "snapshot_every": args.sio2_snapshot_every,
              "snapshot_start": args.sio2_snapshot_start, "repulsion": args.sio2_repulsion,
              "device": "cpu"}
    pending = [t for t in wanted if t in targets]
    running, done = {}, {}
    while pending or running:
        while pending and len(running) < max(1, args.parallel):
            target = pending.pop(0)
            held, train_images = _sio2_target(targets[target], args.sio2_max_atoms)
            run = Path(args.workdir) / "sio2" / target
            resume = run.exists() and args.resume
            if run.exists() and not resume:
                shutil.rmtree(run)
            job = train(train_images, held, held.cell.array, run_dir=run,
                        n_models=args.sio2_models, random_state=args.seed,
                        variations=_variations(args.sio2_variations),
                        background=True, resume=resume, threads=args.threads, **params)
            running[target] = (job, time.perf_counter())
            print(f"SiO2 {target}: training {args.sio2_models} member(s) in {run}", flush=True)
        time.sleep(2)
        for target, (job, t0) in list(running.items()):
            if job.done():
                res = job.result()
                models = res.models if isinstance(res, LoGANEnsemble) else [res]
                done[target] = (models, time.perf_counter() - t0)
                del running[target]
                print(f"SiO2 {target}: trained in {done[target][1]:.0f} s", flush=True)
    return done


def _pick_sio2(pool, k, dmin, seed, filter_name, margin=0.0):
    """``k`` candidates of ``pool``: the paper's filter (minimum distance, PCA + k-means), or
    ``coordination``: the same among the structures whose every Si has four O and every O two
    Si (within 2.0 Å); when fewer than ``k`` qualify, among those with the fewest coordination
    defects that leave ``k`` (``representatives(prefer=...)``); with ``margin`` (Å) a Si–O
    contact within ``margin`` of the 2.0 Å cutoff counts as a defect of each of its atoms."""
    from ase_mlgen.select import representatives
    from ase_mlgen.structures.coordination import (SILICA_CUTOFFS, SILICA_IDEAL,
                                                   coordination_defects)

    prefer = None
    if filter_name == "coordination":
        def prefer(atoms):
            if margin > 0:
                return coordination_defects(atoms, SILICA_IDEAL, SILICA_CUTOFFS, margin)
            if "coordination_defects" not in atoms.info:
                atoms.info["coordination_defects"] = coordination_defects(
                    atoms, SILICA_IDEAL, SILICA_CUTOFFS)
            return atoms.info["coordination_defects"]
    return representatives(pool, k, min_distance=dmin, random_state=seed, prefer=prefer)


def sio2(args, report):
    from ase_mlgen.generators.logan import LoGANEnsemble
    from ase_mlgen.generators.logan.bks import BKS
    from ase_mlgen.generators.logan.training import trained_epochs
    from ase_mlgen.structures.crystals import space_group

    data = Path(args.data) / "SiO2"
    if not data.is_dir():
        report["sio2"] = {"skipped": f"{data} not found"}
        return
    targets = sio2_targets(data)
    calculator = BKS if args.sio2_calculator == "bks" else args.sio2_calculator
    wanted = args.sio2 if args.sio2 != ["all"] else sorted(targets)
    t0 = time.perf_counter()
    trained = _sio2_train(args, targets, wanted)
    train_wall = time.perf_counter() - t0
    out = {}
    for target in wanted:
        if target not in targets:
            out[target] = {"skipped": "target not identified in the data"}
            continue
        spec = targets[target]
        held, train = _sio2_target(spec, args.sio2_max_atoms)
        dmin = min(np.min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)])
                   for a in train if len(a) > 1)
        models, train_s = trained[target]
        ensemble = LoGANEnsemble(models)
        t0 = time.perf_counter()
        pool = ensemble.generate(args.sio2_pool, random_state=args.seed,
                                 snapshots=args.sio2_snapshot_every > 0)
        gen_s = time.perf_counter() - t0
        pool_coord = [_coordination(a) for a in pool]
        for a, c in zip(pool, pool_coord):   # read by the coordination filter's preference
            a.info["coordination_defects"] = c["defects"]
        t0 = time.perf_counter()
        picks = {name: _pick_sio2(pool, args.sio2_k, 0.9 * dmin, args.seed, name,
                                  args.sio2_bond_margin)
                 for name in args.sio2_filters}
        filter_s = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed)
        randoms = []
        while len(randoms) < args.sio2_k:
            r = _random_crystal(held, 0.9 * dmin, rng)
            if r is not None:
                randoms.append(r)

        def evaluate(structs):
            results = _relax(structs, calculator, args.fmax, args.sio2_steps, args.workers,
                             args.sio2_optimizer)
            rows = []
            for start, (atoms, energy) in zip(structs, results):
                if atoms is None or energy is None:
                    rows.append(None)
                    continue
                before = _coordination(start)
                rows.append({"energy_per_atom": float(energy) / len(atoms),
                             "converged": bool(atoms.info.get("converged", False)),
                             "spacegroup": space_group(atoms, symprec=0.1),
                             "ideal_before_relaxation": before["all_ideal"],
                             **_coordination(atoms), "atoms": atoms})
            return rows

        def stats(rows):
            e = [r["energy_per_atom"] for r in rows if r]
            if not e:
                return {"n": 0, "failed": len(rows)}
            relaxed = [r.pop("atoms") for r in rows if r]
            best_index = int(np.argmin(e))
            best = {**[r for r in rows if r][best_index],
                    **descriptors.nearest_training(relaxed[best_index])}
            return {"n": len(e), "failed": sum(r is None for r in rows),
                    "distinct_crystals": descriptors.distinct(relaxed),
                    "unconverged": sum(not r["converged"] for r in rows if r),
                    "lowest_energy_per_atom": round(min(e), 4),
                    "median_energy_per_atom": round(float(np.median(e)), 4),
                    "best": best,
                    "relaxed": [[round(r["energy_per_atom"], 4), r["all_ideal"]]
                                for r in rows if r],
                    "ideal_coordination_after_relaxation": sum(r["all_ideal"]
                                                               for r in rows if r),
                    "ideal_coordination_before_relaxation": sum(
                        r["ideal_before_relaxation"] for r in rows if r),
                    "spacegroups": dict(Counter(r["spacegroup"] for r in rows if r))}

        descriptors = _DescriptorReport(spec["training"])
        t0 = time.perf_counter()
        results = {name: stats(evaluate(p)) for name, p in picks.items()}
        random_stats = stats(evaluate(randoms))
        relax_s = time.perf_counter() - t0
        # reference: the training structures with the target's atom count, relaxed the same way
        refs = [a for a in spec["training"] if len(a) == len(held)][:args.sio2_refs]
        ref_stats = stats(evaluate(refs)) if refs else {"n": 0}
        rd_median = random_stats.get("median_energy_per_atom", -np.inf)
        out[target] = {
            "formula": held.get_chemical_formula(), "atoms": len(held),
            "cell_source": spec["source"], "cellpar": np.round(held.cell.cellpar(), 3).tolist(),
            "training_structures": len(train), "models": len(models),
            "snapshots": sum(len(m.snapshots) for m in models),
            "train_seconds_wall": round(train_s, 1),
            "train_seconds_per_model": [round(m.fit_seconds or 0, 1) for m in models],
            "member_epochs": [trained_epochs(m) for m in models],
            "member_repulsion": [m.params.get("repulsion") for m in models],
            "final_wasserstein": [round(m.history[-1]["wasserstein"], 2) if m.history else None
                                  for m in models],
            "generated": len(pool), "generate_seconds": round(gen_s, 3),
            "pool_ideal_coordination": sum(c["all_ideal"] for c in pool_coord),
            "pool_defects": dict(sorted(Counter(c["defects"] for c in pool_coord).items())),
            "filter_seconds": round(filter_s, 2), "relax_seconds": round(relax_s, 1),
            "min_distance_filter": round(0.9 * dmin, 3),
            **{f"logan_{name}_filter": r for name, r in results.items()},
            "random": random_stats,
            "training_polymorphs_same_size_relaxed": ref_stats,
            **{f"logan_{name}_median_below_random": bool(
                r.get("median_energy_per_atom", np.inf) < rd_median)
               for name, r in results.items()},
            **{f"logan_{name}_all_chosen_ideal_after_relaxation": bool(
                r.get("n") == args.sio2_k
                and r.get("ideal_coordination_after_relaxation") == args.sio2_k
                and r.get("unconverged") == 0)
               for name, r in results.items()},
            "load_average": os.getloadavg()}
        print(json.dumps({target: out[target]}, default=str), flush=True)
        report["sio2"] = {"targets": dict(out), "partial": True}
        write_report(args, dict(report))
    _plot_sio2(out, Path(args.out) / "logan_sio2.png")
    report["sio2"] = {"calculator": ("BKS pair potential (ase_mlgen.generators.logan.bks), "
                                     "fixed cell" if calculator is BKS else str(calculator)),
                      "fmax": args.fmax, "max_steps": args.sio2_steps,
                      "optimizer": args.sio2_optimizer,
                      "training_wall_seconds_all_targets": round(train_wall, 1),
                      "targets": out,
                      "settings": {k: v for k, v in vars(args).items()
                                   if k.startswith("sio2") or k in ("seed", "lr", "parallel",
                                                                    "threads", "workers")}}


def _plot_sio2(out, path):
    """Relaxed energies (eV/atom) of every target's random, paper-filter and
    coordination-filter candidates; filled markers: every Si four- and every O two-fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t for t, v in out.items() if "random" in v]
    if not names:
        return
    kinds = [("random", "random", "tab:gray"), ("logan_paper_filter", "LoGAN, paper filter",
                                                 "tab:blue"),
             ("logan_coordination_filter", "LoGAN, coordination filter", "tab:red")]
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 4.5), squeeze=False)
    for ax, target in zip(axes[0], names):
        v = out[target]
        for x, (key, label, colour) in enumerate(kinds):
            rows = v.get(key, {}).get("relaxed", [])
            if not rows:
                continue
            e = np.array([r[0] for r in rows])
            ideal = np.array([bool(r[1]) for r in rows])
            jitter = np.random.default_rng(x).uniform(-0.15, 0.15, len(e))
            ax.scatter(x + jitter[ideal], e[ideal], c=colour, s=14, label=label)
            ax.scatter(x + jitter[~ideal], e[~ideal], facecolors="none", edgecolors=colour,
                       s=14)
            ax.hlines(np.median(e), x - 0.3, x + 0.3, colors="k", linewidth=1.5)
        ax.set_xticks(range(len(kinds)), ["random", "paper", "coord."], fontsize=8)
        ax.set_title(f"{target}\n{v['formula']}", fontsize=9)
    axes[0][0].set_ylabel("relaxed energy (BKS), eV/atom")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("SiO2: relaxed candidates per target\n(bar: median; open: a Si or O without "
                 "its ideal coordination)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.92))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "logan"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--workdir", default=str(ROOT / "runs" / "bench_logan"))
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--parallel", type=int, default=1,
                   help="training jobs at once (each one process with --threads threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--snapshot-every", dest="snapshot_every", type=int, default=0)
    p.add_argument("--snapshot-start", dest="snapshot_start", type=int, default=0)
    p.add_argument("--sane", action="store_true",
                   help="graph filter: fill up only from connected, not over-bonded structures")
    p.add_argument("--no-skeleton", dest="no_skeleton", action="store_true",
                   help="graph filter without its skeleton tier (the filter of runs before "
                        "2026-12-03, fifth session)")
    p.add_argument("--rebuild-hydrogens", dest="rebuild_hydrogens", action="store_true",
                   help="graph filter: relax each skeleton pick with its hydrogens put back on "
                        "the skeleton (molecule_representatives(rebuild=True))")
    p.add_argument("--control", type=int, default=0,
                   help="also relax this many unfiltered random picks of the pool")
    p.add_argument("--epochs", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-penalty", dest="n_penalty", type=int, default=10)
    p.add_argument("--per-model", type=int, default=2000)
    p.add_argument("--ks", type=int, nargs="+", default=[14, 15, 20, 25, 30, 38, 50])
    p.add_argument("--plot-k", type=int, default=30)
    p.add_argument("--calculator", default="xtb")
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--skip-c5h12o", action="store_true")
    p.add_argument("--sio2", nargs="*", default=[],
                   help="targets (e.g. mp-546794) or 'all'")
    p.add_argument("--sio2-calculator", default="bks",
                   help="bks (classical pair potential, fast) or a calculator spec (xtb, ...)")
    p.add_argument("--sio2-rcut", type=float, default=5.0)
    p.add_argument("--sio2-nmax", type=int, default=4)
    p.add_argument("--sio2-refs", type=int, default=5)
    p.add_argument("--sio2-models", type=int, default=2, help="LoGAN members per target")
    p.add_argument("--sio2-epochs", type=int, default=3000)
    p.add_argument("--sio2-snapshot-every", type=int, default=250)
    p.add_argument("--sio2-snapshot-start", type=int, default=1000)
    p.add_argument("--sio2-cell-margin", type=float, default=0.5,
                   help="LoGAN cell_margin (0 = the paper's sigmoid into the cell)")
    p.add_argument("--sio2-rattle", type=int, default=1)
    p.add_argument("--sio2-repulsion", type=float, default=0.0,
                   help="weight of LoGAN's short-contact prior (0: off, the paper's loss)")
    p.add_argument("--sio2-max-atoms", type=int, default=48)
    p.add_argument("--sio2-pool", type=int, default=4000)
    p.add_argument("--sio2-k", type=int, default=20)
    p.add_argument("--sio2-filters", nargs="+", default=["coordination", "paper"],
                   choices=["coordination", "paper"])
    p.add_argument("--sio2-steps", type=int, default=300)
    p.add_argument("--sio2-variations", default="[{}]",
                   help="JSON list (or @FILE) of per-member overrides of the --sio2-* settings "
                        "(member i takes entry i mod len; 'random_state' keeps a member's own "
                        "seed), e.g. short and long members in one ensemble: "
                        "@bench/logan_sio2_members.json")
    p.add_argument("--sio2-bond-margin", type=float, default=0.0,
                   help="coordination filter: a Si-O contact within this many Å of the 2.0 Å "
                        "cutoff counts as a defect (0: the filter of runs before 2026-12-04, "
                        "tenth session)")
    p.add_argument("--sio2-evaluate-only", action="store_true",
                   help="train nothing: evaluate the member_*.pt files found in each target's "
                        "run directory (whatever their settings; the JSON lists their epochs)")
    p.add_argument("--sio2-optimizer", choices=OPTIMIZERS, default="BFGSLineSearch",
                   help="ASE optimiser of the SiO2 relaxations (runs before 2026-12-04, tenth "
                        "session: BFGS, which stalls on a few candidates)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "logan", "host": platform.node(), "cpus": os.cpu_count(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "settings": {k: v for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    if not args.skip_c5h12o:
        c5h12o(args, report)
    if args.sio2:
        sio2(args, report)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_report(args, report)


def write_report(args, report):
    """Write ``logan.json``, keeping the parts of an earlier run that this one did not redo."""
    report["load_average_at_end"] = os.getloadavg()
    path = Path(args.out) / "logan.json"
    if path.is_file():  # keep the parts of an earlier run that this one did not redo
        old = json.loads(path.read_text())
        for part in ("c5h12o", "sio2"):
            if part in old and part not in report:
                report[part] = old[part]
                report[part].setdefault("bench_settings", old.get("settings"))
                report.setdefault("kept_from_earlier_run", []).append(
                    {"part": part, "started": old.get("started")})
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
