"""The user-facing MeGen generator: seeded growth, iterative growth from scratch, training, and
the ``ase-mlgen search megen`` drop-in."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms

from ase_mlgen.generators.base import as_rng, option, tag
from ase_mlgen.generators.megen.duplicates import DuplicateFilter, SiteFilter, unique
from ase_mlgen.generators.megen.env import BatchGrowthEnv, PlacementRules, energies_of
from ase_mlgen.generators.megen.hollow import hollow_relocations
from ase_mlgen.generators.megen.policy import MeGenPolicy

FORMAT_VERSION = 1
#: hollow-site candidates whose new site is closer than this (Å) to the moved atom's place are
#: *shifts* of that atom rather than relocations (``SearchMeGen._hollow_order``)
HOLLOW_SHIFT = 1.0
#: a relaxed minimum counts as a new lowest energy of a search when it is this much lower (eV)
STALL_TOL = 0.01
#: a relaxed copy of a known basin this much lower (eV) replaces the kept copy
BETTER_COPY_TOL = 0.001
#: force threshold (eV/Å) to which the lowest minimum is refined before its hollow move
REFINE_FMAX = 0.005
#: hollow-site candidates proposed per basin (the order puts the useful ones first: from a
#: refined Ga20 funnel minimum the moves to the ground state are 1st–4th; doc/megen.md)
HOLLOW_CANDIDATES = 5


def dimer(element: str = "Ga", bond_length: float | None = None) -> Atoms:
    """A dimer at the centre of the first-neighbour window (the start of growth from scratch)."""
    d = bond_length or PlacementRules.for_element(element).bond_length
    return Atoms(f"{element}2", positions=[[0, 0, -d / 2], [0, 0, d / 2]])


def read_seeds(spec, element: str = "Ga") -> list[Atoms]:
    """Seeds from a list of ``Atoms``, a file readable by ``ase.io.read`` (all frames), an ase.db
    (``relaxed=1`` rows when marked), or ``None``/``"dimer"`` (a single dimer)."""
    if spec is None or (isinstance(spec, str) and spec == "dimer"):
        return [dimer(element)]
    if isinstance(spec, Atoms):
        return [spec.copy()]
    if isinstance(spec, (str, os.PathLike)):
        path = str(spec)
        if not Path(path).exists():
            raise FileNotFoundError(f"seed file {path!r} not found")
        if path.endswith(".db"):
            from ase.db import connect

            with connect(path) as db:
                rows = list(db.select("relaxed=1")) or list(db.select())
                return [r.toatoms() for r in rows]
        from ase.io import read

        return list(read(path, ":"))
    seeds = [a.copy() for a in spec]
    if not seeds:
        raise ValueError("no seeds given")
    return seeds


def _default_relax(images, calculator, fmax, steps):
    from ase.optimize import FIRE

    out = []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = calculator
        with FIRE(atoms, logfile=None) as opt:
            opt.run(fmax=fmax, steps=steps)
        atoms.info["energy"] = float(atoms.get_potential_energy())
        out.append(atoms)
    return out


class MeGen:
    """Reinforcement-learning growth of metal clusters (Modee et al., Mach. Learn.: Sci. Technol.
    4, 025032, 2023).

    Parameters
    ----------
    seeds:
        ``(N−1)``-atom clusters that :meth:`generate` grows into ``N``-atom candidates (``Atoms``,
        a list, a file or an ase.db path). ``None``: a dimer.
    calculator:
        Reward calculator: any ASE calculator or a spec (``"dart:model.pt"``, ``"gap:PATH"``,
        ``"emt"``). MeGen's default is DART; it is needed for :meth:`train` and for
        ``oversample > 1`` (candidates screened by predicted energy), not for plain generation.
    policy:
        A :class:`MeGenPolicy`, a saved MeGen file, or ``None`` (a fresh, untrained policy: it
        places atoms by the placement rules with an uninformed distribution).
    element:
        The element grown (MeGen is mono-elemental, as in the paper).
    rules:
        :class:`PlacementRules` (Ga windows of the paper by default; for other elements scaled by
        covalent radii, or ``PlacementRules.from_structures(training_images)``).
    oversample:
        Generate ``oversample × n`` candidates and keep the ``n`` with the lowest predicted energy.
    predicted_tol:
        With ``oversample > 1``: candidates whose predicted energies agree within this many eV
        count as one level (with the paper's integer-TAD DART: the same neighbour-count
        topology); the ``n`` kept are the lowest *distinct* levels first. ``None``: off.
    dedupe:
        Duplicate criterion applied before relaxation: ``"paper"``, ``"fingerprint"`` or ``None``.
    max_tries:
        Re-sampling rounds for actions that break a placement rule.
    device, random_state, policy_kwargs:
        torch device (``"auto"``: CUDA when available), seed, and :class:`MeGenPolicy` options.
    """

    name = "megen"

    def __init__(self, seeds=None, calculator=None, policy=None, element: str = "Ga",
                 rules: PlacementRules | None = None, focal: str = "random",
                 oversample: int = 1, dedupe: str | None = "paper", max_tries: int = 50,
                 device: str = "auto", random_state: int | None = None,
                 policy_kwargs: dict | None = None, chunk: int = 256,
                 predicted_tol: float | None = None):
        from ase_mlgen.utils.device import resolve_device

        if predicted_tol is not None and predicted_tol < 0:
            raise ValueError("predicted_tol must be >= 0 (eV)")
        self.predicted_tol = predicted_tol

        self.element = element
        self.rules = rules or PlacementRules.for_element(element)
        self.seeds = read_seeds(seeds, element)
        self.calculator = calculator
        self.oversample = int(oversample)
        self.dedupe = dedupe
        self.max_tries = max_tries
        self.random_state = random_state
        self.chunk = chunk
        self.device = resolve_device(device)
        self._rng = None
        #: energy evaluations made by the reward calculator for screening (oversample, beam)
        self.n_reward_calls = 0
        if isinstance(policy, (str, os.PathLike)):
            loaded = MeGen.load(policy, device=self.device)
            policy, self.rules = loaded.policy, loaded.rules
        if policy is None:
            kw = {"species": [element], "bond_length": self.rules.bond_length, "focal": focal,
                  "windows": [list(w) for w in self.rules.windows], **(policy_kwargs or {})}
            if random_state is not None:
                torch.manual_seed(random_state)
            policy = MeGenPolicy(**kw)
        self.policy = policy.to(self.device).eval()

    # -- calculator ------------------------------------------------------------------------
    @property
    def calculator(self):
        return self._calculator

    @calculator.setter
    def calculator(self, calc):
        if isinstance(calc, str):
            from ase_mlgen.calculators.specs import calculator_from_spec

            calc = calculator_from_spec(calc)
        self._calculator = calc

    def _rng_for(self, rng) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.random_state)
        return as_rng(rng, self._rng)

    # -- generation ------------------------------------------------------------------------
    def place(self, seeds: Sequence[Atoms], rng=None) -> list[Atoms]:
        """Add one atom to every seed with the policy (batched); rule-breaking actions are
        re-sampled up to ``max_tries`` times, then a uniform rule-obeying placement is used."""
        rng = self._rng_for(rng)
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2 ** 62)))
        env = BatchGrowthEnv(None, self.rules)
        out: list[Atoms | None] = [None] * len(seeds)
        for start in range(0, len(seeds), self.chunk):
            part = list(seeds[start:start + self.chunk])
            env.episodes = []
            env.reset(part, [[self.element]] * len(part), seed_energies=[0.0] * len(part))
            todo = np.arange(len(part))
            info: dict[int, dict] = {}
            pos, mask = env.padded_canvas()
            for _ in range(self.max_tries):
                if len(todo) == 0:
                    break
                with torch.no_grad():
                    act = self.policy(self.policy.make_batch([env.episodes[i].canvas
                                                              for i in todo],
                                                             [[self.element]] * len(todo)),
                                      generator=gen if self.device.type == "cpu" else None)
                focal = act["focal"].cpu().numpy()
                dist = act["distance"].cpu().numpy().astype(float)
                direc = act["direction"].cpu().numpy().astype(float)
                new = pos[todo, focal] + dist[:, None] * direc
                ok = self.rules.valid(new, pos[todo], mask[todo])
                for k in np.nonzero(ok)[0]:
                    i = todo[k]
                    info[i] = dict(position=new[k], focal=int(focal[k]), distance=float(dist[k]),
                                   log_prob=float(act["log_prob"][k]))
                todo = todo[~ok]
            for i in todo:   # fallback: uniform search over sites that obey the rules
                info[i] = dict(position=self._fallback_site(pos[i][mask[i]], rng), focal=-1,
                               distance=float("nan"), log_prob=float("nan"))
            for i, canvas in enumerate(env.episodes):
                atoms = canvas.canvas + Atoms(self.element, positions=[info[i]["position"]])
                atoms.positions -= atoms.positions.mean(axis=0)
                d = info[i]
                out[start + i] = tag(atoms, "megen", focal=d["focal"], distance=d["distance"],
                                     log_prob=d["log_prob"], seed_size=len(part[i]))
        return out  # type: ignore[return-value]

    def _fallback_site(self, canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.rules.windows[0]
        for _ in range(50):
            f = rng.integers(len(canvas), size=256)
            v = rng.normal(size=(256, 3))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            new = canvas[f] + rng.uniform(lo, hi, size=(256, 1)) * v
            ok = self.rules.valid(new, np.repeat(canvas[None], 256, 0),
                                  np.ones((256, len(canvas)), dtype=bool))
            if ok.any():
                return new[np.argmax(ok)]
        return canvas[0] + np.array([0.0, 0.0, 0.5 * (lo + hi)])

    def generate(self, n: int, rng=None, seeds: Sequence[Atoms] | None = None) -> list[Atoms]:
        """``n`` candidates of ``N`` atoms grown from the ``(N−1)``-atom seeds (drawn uniformly).

        Each carries ``info["generator"] = "megen"``, ``seed_index``, the action, and
        ``predicted_energy`` (eV) when a calculator scored it (``oversample > 1``).
        """
        rng = self._rng_for(rng)
        seeds = list(seeds) if seeds is not None else self.seeds
        want = n * max(self.oversample, 1)
        filt = DuplicateFilter(self.dedupe, energy_tol=None) if self.dedupe else None
        kept: list[Atoms] = []
        for _round in range(5):
            need = want - len(kept)
            if need <= 0:
                break
            pick = rng.integers(len(seeds), size=need)
            grown = self.place([seeds[i] for i in pick], rng)
            for atoms, i in zip(grown, pick):
                atoms.info["seed_index"] = int(i)
                if filt is None or filt.add(atoms):
                    kept.append(atoms)
        if len(kept) < want:   # few distinct sites exist: allow duplicates to fill the request
            pick = rng.integers(len(seeds), size=want - len(kept))
            for atoms, i in zip(self.place([seeds[i] for i in pick], rng), pick):
                atoms.info["seed_index"] = int(i)
                kept.append(atoms)
        if self.oversample > 1:
            if self.calculator is None:
                raise ValueError("oversample > 1 screens candidates by predicted energy; give "
                                 "MeGen a calculator (e.g. calculator=DART.load(path))")
            energies = energies_of(kept, self.calculator)
            self.n_reward_calls += len(kept)
            for atoms, e in zip(kept, energies):
                atoms.info["predicted_energy"] = float(e)
            order = np.argsort(energies, kind="stable")
            if self.predicted_tol is not None:   # one candidate per predicted-energy level
                levels: list[float] = []
                distinct = []
                for i in order:
                    if all(abs(energies[i] - e) > self.predicted_tol for e in levels):
                        distinct.append(i)
                        levels.append(energies[i])
                # levels first; the rest (if the request is not met) by energy
                chosen = set(distinct)
                order = distinct + [i for i in order if i not in chosen]
            kept = [kept[i] for i in order[:n]]
        return kept[:n]

    def grow(self, seeds: Sequence[Atoms], n_atoms: int, rng=None,
             keep: int | None = None) -> list[Atoms]:
        """Place atoms one by one until every structure has ``n_atoms`` atoms (no relaxation).

        With ``keep`` and a calculator, only the ``keep`` lowest predicted energies survive each
        size (a beam search)."""
        rng = self._rng_for(rng)
        current = list(seeds)
        while current and len(current[0]) < n_atoms:
            width = len(current) if keep is None else max(keep * 4, len(current))
            pick = rng.integers(len(current), size=width) if keep else np.arange(len(current))
            current = self.place([current[i] for i in pick], rng)
            if keep is not None and self.calculator is not None:
                current = unique(current, method="paper", energy_tol=None)
                e = energies_of(current, self.calculator)
                self.n_reward_calls += len(current)
                for a, ei in zip(current, e):
                    a.info["predicted_energy"] = float(ei)
                current = [current[i] for i in np.argsort(e)[:keep]]
        return current

    def iterate(self, target_size: int, relax_calculator=None, start=None,
                per_size: int = 50, keep: int = 10, window: float = 1.0, fmax: float = 0.05,
                steps: int = 500, relax: Callable | None = None, rng=None,
                callback: Callable | None = None) -> dict[int, list[Atoms]]:
        """Iterative growth from scratch (paper, Table 2): from ``start`` (a dimer by default) up
        to ``target_size`` atoms; at every size ``per_size`` candidates are generated, relaxed
        with ``relax_calculator``, deduplicated, and the unique minima within ``window`` eV of the
        lowest (at most ``keep``) seed the next size.

        Returns ``{size: unique relaxed minima sorted by energy}`` (``info["energy"]`` in eV).
        ``relax(images) -> list[Atoms]`` replaces the default sequential FIRE relaxation (e.g.
        a wrapper around :func:`ase_mlgen.search.relax.relax_many`).
        """
        rng = self._rng_for(rng)
        calc = relax_calculator if relax_calculator is not None else self.calculator
        if relax is None:
            if calc is None:
                raise ValueError("iterate() relaxes candidates: give relax_calculator")
            relax = lambda images: _default_relax(images, calc, fmax, steps)  # noqa: E731
        pool = read_seeds(start, self.element)
        results: dict[int, list[Atoms]] = {}
        size = len(pool[0])
        while size < target_size:
            size += 1
            candidates = self.generate(per_size, rng=rng, seeds=pool)
            relaxed = relax(candidates)
            minima = unique(sorted(relaxed, key=lambda a: a.info["energy"]), method="paper",
                            energy_tol=0.02)
            results[size] = minima
            emin = minima[0].info["energy"]
            pool = [m for m in minima if m.info["energy"] <= emin + window][:keep]
            if callback is not None:
                callback(size, minima)
        return results

    # -- training --------------------------------------------------------------------------
    def train(self, run_dir: str | os.PathLike, seeds=None, calculator=None,
              background: bool = False, resume: bool = False, **hyper):
        """PPO training (see :mod:`ase_mlgen.generators.megen.ppo` for the hyper-parameters).

        ``calculator`` (or the MeGen's) must be a spec string (``"dart:PATH"``, ``"gap:PATH"``,
        ``"emt"``) so that a background process can rebuild it. Returns ``self`` with the trained
        policy (foreground) or a :class:`~ase_mlgen.jobs.Job` whose ``result()`` is a new MeGen.
        """
        from ase.io import write

        from ase_mlgen.jobs import submit

        calc = calculator if calculator is not None else self.calculator
        if not isinstance(calc, str):
            raise ValueError("MeGen.train needs the reward calculator as a spec string "
                             "('dart:PATH', 'gap:PATH', 'emt', 'lj') so that a background run can "
                             "rebuild it")
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        seed_file = run_dir / "seeds.xyz"
        if not resume or not seed_file.exists():
            write(seed_file, read_seeds(seeds, self.element) if seeds is not None
                  else self.seeds)
        config = {"calculator": calc, "seeds": str(seed_file), "element": self.element,
                  "rules": self.rules.todict(), "policy": _policy_overrides(self.policy),
                  "device": str(self.device) if hyper.get("device") is None
                  else hyper["device"], **{k: v for k, v in hyper.items() if k != "device"}}
        job = submit("ase_mlgen.generators.megen.ppo:train_task", config, run_dir,
                     background=background, resume=resume,
                     loader="ase_mlgen.generators.megen.ppo:load_run")
        if background:
            return job
        trained = job.result()
        self.policy = trained.policy.to(self.device).eval()
        return self

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        from ase_mlgen.utils.io import atomic_torch_save

        return atomic_torch_save({"format": "ase_mlgen.megen", "version": FORMAT_VERSION,
                                  "policy": self.policy.state(), "rules": self.rules.todict(),
                                  "element": self.element}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", **kwargs) -> "MeGen":
        """A MeGen from :meth:`save` or from a training checkpoint."""
        from ase_mlgen.utils.device import resolve_device

        from ase_mlgen.utils.io import read_model_file

        path, state = read_model_file(path, "MeGen")
        if not isinstance(state, dict) or "policy" not in state \
                or "config" not in state.get("policy", {}):
            raise ValueError(f"{path} is not a MeGen model or training checkpoint")
        policy = MeGenPolicy.from_state(state["policy"], device=resolve_device(device))
        rules = PlacementRules.fromdict(state["rules"])
        element = state.get("element") or state["policy"]["config"]["species"][0]
        if "pool" in state and "seeds" not in kwargs:
            kwargs["seeds"] = state["pool"]
        return cls(policy=policy, rules=rules, element=element, device=device, **kwargs)

    # -- search feedback -------------------------------------------------------------------
    def observe(self, atoms: Atoms, energy: float) -> None:  # pragma: no cover - see search
        """No-op for a plain MeGen; :class:`SearchMeGen` uses it to reseed from minima."""


def _policy_overrides(policy: MeGenPolicy) -> dict:
    cfg = dict(policy.config)
    cfg.pop("species", None)
    return cfg


class SearchMeGen:
    """MeGen as a ``GeneratorSearch`` generator for a fixed size ``N``.

    Seeds of ``N−1`` atoms come from, in order of preference: the ``seeds`` given; the minima the
    search reports through :meth:`observe` (each low-energy ``N``-atom minimum minus one atom —
    the policy then re-places it, a learned relocation move); otherwise growth from a dimer by
    the policy (a beam search on predicted energies when a reward calculator is given).
    ``reseed="both"`` uses the given seeds *and* the relocation seeds of the minima found.

    ``screen=K`` (needs the MeGen's reward calculator) grows ``K`` distinct candidates from the
    current seed pool, scores them all with the reward calculator and hands them out lowest
    predicted energy first; the queue is refilled when it runs dry or the seed pool changes.
    ``screen=0`` (default) asks :meth:`MeGen.generate` for each step (with its ``oversample``).

    ``predicted_tol`` (eV) is a pre-relaxation duplicate test by the reward model: a candidate
    whose predicted energy lies within ``predicted_tol`` of one already proposed is not proposed.
    With the paper's integer-TAD DART, equal predictions mean equal neighbour-count topology, and
    such candidates mostly relax to the same minimum (Ga8: 39 of 40 screened candidates shared
    the lowest prediction and all relaxed to the same minimum). ``None`` (default): off.

    ``site_tol`` (Å) adds the pre-relaxation :class:`SiteFilter`: a candidate whose new atom sits
    at a site of its seed already proposed (or, for a relocation seed, where the removed atom
    was) is not proposed again. ``None`` (default): the paper's duplicate criterion only.

    ``temperature`` (eV, default 0: lowest predicted energy first) proposes the screened
    candidates in a random order weighted by ``exp(−E_pred / temperature)``.

    ``regrow=K`` (default 1) escalates the relocation move when the search stalls: after
    ``patience`` relaxations without a new lowest energy (by more than 0.01 eV) the relocation
    seeds remove a surface *patch* of ``d`` atoms (a weakly bound atom and its ``d − 1``
    nearest neighbours) from each low minimum and let the policy regrow ``d − 1`` of them, the
    last one being placed by the usual screened step; ``d`` runs 1, 2, …, ``K`` and starts
    again at 1 while the search keeps stalling, and falls back to 1 at every new lowest energy.

    ``hollow=r`` (Å, default 0: off; needs ``screen``) adds hollow-site relocations when the
    search stalls: after ``patience`` relaxations without a new lowest energy, the next
    ``HOLLOW_CANDIDATES`` (5) candidates are the lowest minimum with one of its atoms moved onto
    a hollow site at ``r`` from three atoms (:func:`~ase_mlgen.generators.megen.hollow.
    hollow_relocations`) — sites the policy, trained towards short bonds, seldom proposes:
    first the short *shifts* of an atom into a neighbouring hollow, then relocations elsewhere
    (order: :meth:`_hollow_order`). Each basin gets this once. Before it, the minimum itself is
    proposed once more with ``info["relax_fmax"] = REFINE_FMAX`` (``GeneratorSearch`` relaxes
    it that tightly, one relaxation of the budget), and the moves start from the refined copy:
    a relaxed copy of a known basin more than ``BETTER_COPY_TOL`` eV lower replaces the kept one.
    """

    name = "megen"

    def __init__(self, megen: MeGen, n_atoms: int, seeds=None, keep: int = 8,
                 window: float = 0.5, beam: int = 4, random_state: int | None = None,
                 reseed: str = "auto", screen: int = 0, site_tol: float | None = None,
                 predicted_tol: float | None = None, regrow: int = 1, patience: int = 10,
                 temperature: float = 0.0, hollow: float = 0.0):
        if reseed not in ("auto", "both"):
            raise ValueError(f"reseed must be 'auto' or 'both', not {reseed!r}")
        if regrow < 1 or regrow >= n_atoms - 1:
            raise ValueError(f"regrow must be between 1 and {n_atoms - 2} atoms for a "
                             f"{n_atoms}-atom cluster, not {regrow}")
        if patience < 1:
            raise ValueError("patience must be >= 1 relaxation")
        if not temperature >= 0:
            raise ValueError("temperature must be >= 0 eV")
        if not hollow >= 0:
            raise ValueError("hollow must be >= 0 Å (0: off)")
        if hollow and not screen:
            raise ValueError("hollow > 0 ranks the relocations by predicted energy; it needs "
                             "screen > 0")
        self.hollow = float(hollow)
        self._hollow_queue: list[Atoms] = []
        self._hollow_done: list[Atoms] = []     # minima (one copy per basin) already given them
        self._refined: list[Atoms] = []         # minima (one copy per basin) already refined
        self.regrow, self.patience = int(regrow), int(patience)
        self.temperature = float(temperature)
        self._best = float("inf")
        self._stall = 0
        self._relocation_cache: tuple | None = None
        if screen < 0:
            raise ValueError("screen must be >= 0")
        if screen and megen.calculator is None:
            raise ValueError("screen > 0 ranks candidates by predicted energy; give the MeGen a "
                             "reward calculator (e.g. reward=dart:PATH)")
        self.megen, self.n_atoms = megen, n_atoms
        self.keep, self.window, self.beam = keep, window, beam
        self.reseed, self.screen = reseed, int(screen)
        self._sites = SiteFilter(site_tol) if site_tol else None
        if predicted_tol is not None and predicted_tol < 0:
            raise ValueError("predicted_tol must be >= 0 (eV)")
        self.predicted_tol = predicted_tol
        self._predicted: list[float] = []
        self._queue: list[Atoms] = []
        self._queue_key = None
        self.random_state = random_state
        self._rng = np.random.default_rng(random_state)
        self.given = read_seeds(seeds, megen.element) if seeds is not None else None
        self.minima: list[tuple[float, Atoms]] = []
        self._grown: list[Atoms] | None = None
        self._seen = DuplicateFilter(megen.dedupe or "paper", energy_tol=None)

    def observe(self, atoms: Atoms, energy: float) -> None:
        """Report a relaxed ``N``-atom minimum (eV) found by the search."""
        if len(atoms) != self.n_atoms:
            return
        if energy < self._best - STALL_TOL:
            self._best, self._stall = float(energy), 0
        else:
            self._stall += 1
        a = atoms.copy()
        a.calc = None
        a.info = {"energy": float(energy)}
        known = self._basin_index(a)
        if known is None:
            self.minima.append((float(energy), a))
        elif energy < self.minima[known][0] - BETTER_COPY_TOL:
            # a better-converged copy of a known basin replaces it: moves made from a loosely
            # relaxed copy can miss (Ga20 funnel: the first copy's shifts never reach the
            # ground state, a copy 1.7 meV lower reaches it with its fourth; doc/megen.md)
            old = self.minima[known][1]
            self.minima[known] = (float(energy), a)
            # the basin keeps what was done for it: it is not refined nor given hollow moves again
            self._hollow_done = [a if m is old else m for m in self._hollow_done]
            self._refined = [a if m is old else m for m in self._refined]
        self.minima.sort(key=lambda t: t[0])
        self.minima = self.minima[:4 * self.keep]

    def _basin_index(self, atoms: Atoms) -> int | None:
        """Index in ``minima`` of the basin of the relaxed ``atoms``, ``None`` for a new one. The
        paper's criterion alone is not enough here: its angle test compares the neighbour angles
        under a hard 3.1 Å cut-off, and one basin relaxed twice to fmax 0.05 often has a bond on
        either side of it (Ga20: eight "distinct" paper isomers within 5 meV, all with identical
        radial fingerprints), which filled the pool with copies of one minimum. A minimum within
        0.02 eV of a kept one with the same radial fingerprint is the same basin as well."""
        for method in ("paper", "fingerprint"):
            filt = DuplicateFilter(method, energy_tol=0.02)
            kept = []                     # minima indices of the filter's entries, in order
            for k, (e, m) in enumerate(self.minima):
                m.info["energy"] = e
                if filt.add(m):
                    kept.append(k)
            index = filt.index_of(atoms)
            if index is not None:
                return kept[index]
        return None

    def _low_minima(self) -> list[tuple[float, Atoms]]:
        if not self.minima:
            return []
        emin = self.minima[0][0]
        return [(e, m) for e, m in self.minima if e <= emin + self.window][:self.keep]

    @property
    def patch_size(self) -> int:
        """Atoms the relocation move removes now (1 until the search stalls; see ``regrow``)."""
        return 1 + (self._stall // self.patience) % self.regrow

    def _relocation_seeds(self) -> list[Atoms]:
        key = self._pool_key()
        if self._relocation_cache is not None and self._relocation_cache[0] == key:
            return self._relocation_cache[1]
        size = self.patch_size
        pool, cores = [], []
        for _, m in self._low_minima():
            d = m.get_all_distances()
            coordination = (d < self.megen.rules.windows[0][1]).sum(1) - 1
            # prefer removing weakly bound atoms (lowest coordination first) with their nearest
            # neighbours as one surface patch
            for i in np.argsort(coordination, kind="stable")[:max(3, len(m) // 3)]:
                patch = set(np.argsort(d[i], kind="stable")[:size].tolist())
                order = [j for j in range(len(m)) if j not in patch]
                if size == 1:
                    pool.append(m[order])
                    if self._sites is not None:   # putting the atom back is no new candidate
                        self._sites.add(m[order + [int(i)]])
                else:
                    cores.append(m[order])
        if cores:   # the policy regrows all but the last atom of each patch (twice per core)
            pool += self.megen.grow(cores + cores, self.n_atoms - 1, rng=self._rng)
        self._relocation_cache = (key, pool)
        return pool

    def _pool_key(self) -> tuple:
        return (self.patch_size,) + tuple(round(e, 4) for e, _ in self._low_minima())

    def _seed_pool(self, rng) -> list[Atoms]:
        if self.given is not None:
            if self.reseed == "both" and self.minima:
                return self.given + self._relocation_seeds()
            return self.given
        if self.minima:
            return self._relocation_seeds()
        if self._grown is None:
            start = dimer(self.megen.element, self.megen.rules.bond_length)
            keep = self.beam if self.megen.calculator is not None else None
            self._grown = self.megen.grow([start] * (keep or self.beam), self.n_atoms - 1,
                                          rng=np.random.default_rng(self.random_state),
                                          keep=keep)
        return self._grown

    def generate(self, n: int, rng=None) -> list[Atoms]:
        rng = as_rng(rng, self._rng)
        if self.n_atoms == 1:
            return [tag(Atoms(self.megen.element), "megen") for _ in range(n)]
        if self.n_atoms == 2:
            return [tag(dimer(self.megen.element, self.megen.rules.bond_length), "megen")
                    for _ in range(n)]
        pool = self._seed_pool(rng)
        if self.screen:
            out = self._from_hollow(n, rng) if self.hollow else []
            return out + (self._from_queue(n - len(out), pool, rng) if len(out) < n else [])
        out: list[Atoms] = []
        for _ in range(5):   # candidates already proposed in earlier steps are not proposed again
            for atoms in self.megen.generate(2 * n, rng=rng, seeds=pool):
                if len(out) < n and self._new_site(atoms) and self._seen.add(atoms):
                    out.append(atoms)
            if len(out) == n:
                return out
        return out + self.megen.generate(n - len(out), rng=rng, seeds=pool)

    def _new_site(self, atoms: Atoms) -> bool:
        """Pre-relaxation tests that register ``atoms`` when it passes them."""
        if self.predicted_tol is not None and "predicted_energy" in atoms.info:
            e = float(atoms.info["predicted_energy"])
            if any(abs(e - p) <= self.predicted_tol for p in self._predicted):
                return False
            self._predicted.append(e)
        return self._sites is None or self._sites.add(atoms)

    def _from_queue(self, n: int, pool: list[Atoms], rng) -> list[Atoms]:
        """``n`` candidates from the screened queue (lowest predicted energy first)."""
        key = (len(pool), self._pool_key())
        out: list[Atoms] = []
        for attempt in range(3):
            if attempt or key != self._queue_key or len(self._queue) < n:
                self._refill(pool, rng)
                self._queue_key = key
            while self._queue and len(out) < n:
                atoms = self._queue.pop(0)
                if self._new_site(atoms) and self._seen.add(atoms):
                    out.append(atoms)
            if len(out) == n:
                return out
        if len(out) < n:          # the pool has few distinct sites left: unscreened fill-up
            out += self.megen.generate(n - len(out), rng=rng, seeds=pool)
        return out

    def _from_hollow(self, n: int, rng) -> list[Atoms]:
        """Up to ``n`` hollow-site relocations of the lowest minimum while the search stalls."""
        if self._stall < self.patience or not self.minima:
            self._hollow_queue = []
            return []
        lowest = self.minima[0][1]
        if not any(lowest is m for m in self._hollow_done):   # once per basin
            if not any(lowest is m for m in self._refined):
                # first the minimum itself, relaxed to REFINE_FMAX: the shifts of a loosely
                # relaxed copy often miss (doc/megen.md); the refined copy comes back through
                # observe() and replaces this one
                self._refined.append(lowest)
                refine = lowest.copy()
                refine.info = {}
                return [tag(refine, "megen", move="refine", relax_fmax=REFINE_FMAX)]
            self._hollow_done.append(lowest)
            self._hollow_queue = self._hollow_order(lowest, rng)[:HOLLOW_CANDIDATES]
        out: list[Atoms] = []
        while self._hollow_queue and len(out) < n:
            atoms = self._hollow_queue.pop(0)
            if atoms.info["displacement"] < HOLLOW_SHIFT:
                # shifts are distinct sites by construction; neither the predicted level nor the
                # paper's pair-distance test tells two of them apart (both can relax apart)
                self._seen.add(atoms)
                out.append(atoms)
            elif self._new_site(atoms) and self._seen.add(atoms):
                out.append(atoms)
        return out

    def _hollow_order(self, lowest: Atoms, rng) -> list[Atoms]:
        """Hollow-site candidates of ``lowest`` in the order they are proposed: first the
        *shifts* (new site within ``HOLLOW_SHIFT`` Å of the moved atom's place), the ones whose
        predicted energy differs most from the minimum's own first — a shift that keeps the
        minimum's neighbour-count topology keeps its predicted energy and relaxes straight back
        (Ga20 funnel minimum: the moves to the ground state are 0.45–0.5 Å shifts, first to
        fourth in this order, 52nd–63rd by lowest predicted energy; doc/megen.md) — then the
        relocations elsewhere, lowest predicted energy first (:meth:`_ranked`)."""
        cands = hollow_relocations(lowest, self.megen.rules, self.hollow)
        shifts = [a for a in cands if a.info["displacement"] < HOLLOW_SHIFT]
        far = [a for a in cands if a.info["displacement"] >= HOLLOW_SHIFT
               and self._seen.index_of(a) is None]
        if not shifts:
            return self._ranked(far, rng)
        energies = self._score(shifts + [lowest.copy()])
        change = np.abs(energies[:-1] - energies[-1])
        return [shifts[i] for i in np.argsort(-change, kind="stable")] + self._ranked(far, rng)

    def _screen_order(self, energies: np.ndarray, rng) -> np.ndarray:
        """Order in which screened candidates are proposed: lowest predicted energy first, or
        with ``temperature > 0`` (eV) a draw without replacement with weights
        ``exp(−E / temperature)`` (Gumbel top-k), so that a reward model's systematic bias
        does not send every step into one funnel."""
        if self.temperature <= 0 or len(energies) < 2:
            return np.argsort(energies, kind="stable")
        gumbel = -np.log(-np.log(as_rng(rng, self._rng).uniform(1e-12, 1.0, len(energies))))
        return np.argsort(energies / self.temperature - gumbel, kind="stable")

    def _refill(self, pool: list[Atoms], rng) -> None:
        oversample, self.megen.oversample = self.megen.oversample, 1
        try:
            grown = self.megen.generate(self.screen, rng=rng, seeds=pool)
        finally:
            self.megen.oversample = oversample
        fresh = [a for a in grown if self._seen.index_of(a) is None
                 and (self._sites is None or not self._sites.is_known(a))]
        self._queue = self._ranked(fresh, rng)

    def _score(self, candidates: list[Atoms]) -> np.ndarray:
        """Predicted energies (eV) of ``candidates`` by the reward calculator, also stored in
        their ``info["predicted_energy"]`` and counted in ``megen.n_reward_calls``."""
        energies = np.asarray(energies_of(candidates, self.megen.calculator), dtype=float)
        self.megen.n_reward_calls += len(candidates)
        for atoms, e in zip(candidates, energies):
            atoms.info["predicted_energy"] = float(e)
        return energies

    def _ranked(self, candidates: list[Atoms], rng) -> list[Atoms]:
        """``candidates`` scored by the reward calculator (``info["predicted_energy"]``, eV) in
        the order they are proposed (:meth:`_screen_order`), with ``predicted_tol`` one per
        predicted level not yet used."""
        queue = [candidates[i] for i in self._screen_order(self._score(candidates), rng)]
        if self.predicted_tol is None:
            return queue
        levels, kept = list(self._predicted), []
        for atoms in queue:
            e = atoms.info["predicted_energy"]
            if all(abs(e - p) > self.predicted_tol for p in levels):
                kept.append(atoms)
                levels.append(e)
        return kept


def make_search_generator(template: Atoms, seed: int, options: dict) -> SearchMeGen:
    """The ``megen`` method of ``ase-mlgen search``.

    Options (``--option KEY=VALUE``): ``model`` (``--model PATH``: a trained MeGen; without it an
    untrained policy that only obeys the placement rules), ``seeds`` (file of ``N−1``-atom seeds),
    ``reward`` (calculator spec for screening, e.g. ``dart:PATH``), ``oversample`` (int),
    ``screen`` (int: rank that many candidates by the reward and relax them lowest first),
    ``reseed`` (``auto``/``both``), ``site_tol`` (Å: pre-relaxation site duplicates),
    ``predicted_tol`` (eV: pre-relaxation duplicates by equal predicted energy), ``regrow``
    (atoms of the largest surface patch regrown when the search stalls), ``patience``
    (relaxations without a new lowest energy before the patch grows), ``temperature`` (eV:
    screened candidates proposed in a Boltzmann-weighted order instead of lowest first), ``hollow``
    (Å: hollow-site relocations of the lowest minimum when the search stalls), ``keep``,
    ``window`` (eV), ``beam`` (width of the growth beam when no seeds are known), ``focal``
    (``random``/``learned``), ``device``.
    """
    symbols = set(template.get_chemical_symbols())
    if len(symbols) != 1:
        raise ValueError(f"MeGen grows mono-elemental clusters; got {template.get_chemical_formula()}")
    element = symbols.pop()
    model = option(options, "model", None, str)
    reward = option(options, "reward", None, str)
    kwargs = dict(calculator=reward, oversample=option(options, "oversample", 1, int),
                  random_state=seed, device=option(options, "device", "auto", str))
    if model:
        megen = MeGen.load(model, **kwargs)
        if megen.element != element:
            raise ValueError(f"MeGen model {model} grows {megen.element}; the system is {element}")
    else:
        megen = MeGen(element=element, focal=option(options, "focal", "random", str), **kwargs)
    return SearchMeGen(megen, len(template), seeds=option(options, "seeds", None, str),
                       keep=option(options, "keep", 8, int),
                       window=option(options, "window", 0.5, float),
                       beam=option(options, "beam", 4, int), random_state=seed,
                       reseed=option(options, "reseed", "auto", str),
                       screen=option(options, "screen", 0, int),
                       site_tol=option(options, "site_tol", None, float),
                       predicted_tol=option(options, "predicted_tol", None, float),
                       regrow=option(options, "regrow", 1, int),
                       patience=option(options, "patience", 10, int),
                       temperature=option(options, "temperature", 0.0, float),
                       hollow=option(options, "hollow", 0.0, float))
