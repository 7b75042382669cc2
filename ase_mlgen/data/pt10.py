"""Pt10 nanocluster data for fingerprint inversion (Fung et al. 2022).

(a) :func:`build_emt_pt10` — the paper's recipe with EMT as the energy model: random initial
    geometries relaxed with EMT, keeping the minima *and* the intermediate frames of each
    relaxation; formation energy ``(E - N E_bulk) / N`` in eV/atom with ``E_bulk`` the EMT energy
    per atom of fcc Pt at its EMT lattice constant; :func:`emt_pt10_datasets` reduces the pool by
    farthest-point sampling in fingerprint space to nested sets (30,000 / 3,000 / 300 in the
    paper; the FPS order is nested, so the first 300 of the 3,000 are the 300-set).
(b) :func:`load_dft_pt10` — the 300 DFT (PBE) Pt10 pooled ACSF fingerprints with their formation
    energies from ``../shared/data/pt10/`` (path argument; a clear ``FileNotFoundError`` when
    absent). :func:`pt10_acsf` is the exact ACSF of those fingerprints (190 values per atom,
    pooled ``("max", "min")`` to 380).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms

PT10_G2_ETA = [0.01, 0.06, 0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 3.5, 5.0]
PT10_G2_RS = [0, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9, 10]
PT10_G5_ZETA = [1, 2, 4, 16, 64]
PT10_G5_LAMBDA = [-1, 1]
PT10_G5_ETA = [0.06, 0.1, 0.2, 0.4, 1.0]
PT10_POOLING = ("max", "min")


def pt10_acsf(r_cut: float = 20.0, species=("Pt",), **kwargs):
    """The ACSF of the shared Pt10 fingerprints: cutoff 20 Å, 140 G2 (eta outer, Rs inner) and
    50 G5 (zeta outer, then lambda, then eta; Rs = 0), no G1 → 190 values per atom."""
    from ase_mlgen.descriptors.acsf import ACSF

    g2 = [[eta, rs] for eta in PT10_G2_ETA for rs in PT10_G2_RS]
    g5 = [[eta, zeta, lam] for zeta in PT10_G5_ZETA for lam in PT10_G5_LAMBDA
          for eta in PT10_G5_ETA]
    return ACSF(list(species), r_cut=r_cut, g2_params=g2, g5_params=g5, g1=False, **kwargs)


def shared_data_dir() -> Path:
    """``$ASE_MLGEN_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("ASE_MLGEN_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def load_dft_pt10(path=None) -> tuple[np.ndarray, np.ndarray]:
    """``(fingerprints (300, 380), formation energies (300,) eV/atom)`` of the DFT Pt10 set.

    ``path`` is the folder holding ``pt10_acsf_300.csv`` and ``pt10_formation_energy_300.csv``
    (default: ``shared_data_dir() / "pt10"``).
    """
    folder = Path(path) if path is not None else shared_data_dir() / "pt10"
    fp_file = folder / "pt10_acsf_300.csv"
    e_file = folder / "pt10_formation_energy_300.csv"
    for f in (fp_file, e_file):
        if not f.exists():
            raise FileNotFoundError(
                f"DFT Pt10 data file {f} is not present; pass the folder that holds "
                "pt10_acsf_300.csv and pt10_formation_energy_300.csv (the shared data folder, "
                "see ../shared/data/README.md) or set ASE_MLGEN_SHARED_DATA")
    x = np.loadtxt(fp_file, delimiter=",", ndmin=2)
    y = np.loadtxt(e_file, delimiter=",", ndmin=1).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{fp_file} has {len(x)} rows but {e_file} has {len(y)}")
    return x, y


_EBULK: dict = {}


def emt_bulk_energy(symbol: str = "Pt") -> float:
    """EMT energy per atom (eV) of the fcc bulk at its EMT equilibrium lattice constant."""
    if symbol in _EBULK:
        return _EBULK[symbol]
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from scipy.optimize import minimize_scalar

    def energy(a):
        atoms = bulk(symbol, "fcc", a=a)
        atoms.calc = EMT()
        return atoms.get_potential_energy() / len(atoms)

    res = minimize_scalar(energy, bounds=(3.0, 5.0), method="bounded",
                          options={"xatol": 1e-5})
    _EBULK[symbol] = float(res.fun)
    return _EBULK[symbol]


def formation_energy(atoms: Atoms, calc=None, symbol: str = "Pt") -> float:
    """``(E - N E_bulk) / N`` in eV/atom with EMT (or ``calc``) and the EMT fcc reference."""
    from ase.calculators.emt import EMT

    atoms = atoms.copy()
    atoms.calc = calc if calc is not None else EMT()
    return (atoms.get_potential_energy() - len(atoms) * emt_bulk_energy(symbol)) / len(atoms)


def random_cluster(n: int = 10, symbol: str = "Pt", rng=None, min_dist: float = 2.2,
                   density: float = 0.5) -> Atoms:
    """Random positions in a cube (volume ``n / density``·15 Å³·…), no pair closer than
    ``min_dist`` Å (rejection sampling)."""
    rng = np.random.default_rng(rng)
    side = (n * 15.1 / density) ** (1 / 3)
    pos = []
    while len(pos) < n:
        p = rng.random(3) * side
        if all(np.linalg.norm(p - q) >= min_dist for q in pos):
            pos.append(p)
    pos = np.array(pos)
    return Atoms(f"{symbol}{n}", positions=pos - pos.mean(axis=0))


def build_emt_pt10(n_relaxations: int = 100, seed: int = 0, fmax: float = 0.05,
                   max_steps: int = 300, every: int = 1, n_atoms: int = 10,
                   symbol: str = "Pt") -> list[Atoms]:
    """Relax ``n_relaxations`` random Pt10 clusters with EMT (BFGS); return every ``every``-th
    frame and each final minimum with ``info["formation_energy"]`` (eV/atom),
    ``info["relaxation"]`` and ``info["minimum"]`` (True for the last frame)."""
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    rng = np.random.default_rng(seed)
    e_bulk = emt_bulk_energy(symbol)
    frames: list[Atoms] = []
    for k in range(n_relaxations):
        atoms = random_cluster(n_atoms, symbol, rng)
        atoms.calc = EMT()
        traj: list[Atoms] = []

        def record(atoms=atoms, traj=traj):
            traj.append(Atoms(atoms.numbers, atoms.positions.copy()))
            traj[-1].info["energy"] = atoms.get_potential_energy()

        opt = BFGS(atoms, logfile=None)
        opt.attach(record, interval=1)
        opt.run(fmax=fmax, steps=max_steps)
        keep = traj[::every]
        if keep[-1] is not traj[-1]:
            keep.append(traj[-1])
        for i, a in enumerate(keep):
            a.info["formation_energy"] = (a.info.pop("energy") - n_atoms * e_bulk) / n_atoms
            a.info["relaxation"] = k
            a.info["minimum"] = a is traj[-1]
        frames += keep
    return frames


def farthest_point_sampling(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` rows of ``x`` chosen by farthest-point sampling (Euclidean distance,
    random first point). The order is nested: the first ``m`` indices are the FPS of size m."""
    import torch

    x = np.asarray(x, dtype=np.float64)
    # centred, then float32: the products below read the matrix once per pick (memory-bound)
    x_t = torch.as_tensor((x - x.mean(axis=0)).astype(np.float32))
    n = len(x_t)
    k = min(int(k), n)
    rng = np.random.default_rng(seed)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.integers(n)
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2: one matrix-vector product per pick, no (n, F) temporary
    sq = (x_t * x_t).sum(1)
    dmin = (sq - 2.0 * (x_t @ x_t[idx[0]]) + sq[idx[0]]).clamp_min_(0.0)
    for i in range(1, k):
        j = int(torch.argmax(dmin))
        idx[i] = j
        torch.minimum(dmin, (sq - 2.0 * (x_t @ x_t[j]) + sq[j]).clamp_min_(0.0), out=dmin)
    return idx


def emt_pt10_datasets(sizes=(30000, 3000, 300), n_relaxations: int | None = None,
                      seed: int = 0, descriptor=None, cache=None, every: int = 1):
    """Nested EMT Pt10 training sets by farthest-point sampling of pooled ACSF fingerprints.

    Returns ``{size: (images, fingerprints (size, 380), formation energies (size,))}``.
    ``n_relaxations`` defaults to enough relaxations for a pool of about 1.3 × max(sizes)
    frames. ``cache`` (an ``.npz`` path) stores the pool's positions, energies and fingerprints so
    that a second call is fast.
    """
    descriptor = descriptor or pt10_acsf()
    cache = Path(cache) if cache is not None else None
    if cache is not None and cache.exists():
        data = np.load(cache)
        pos, e, fp = data["positions"], data["energy"], data["fingerprints"]
    else:
        target = int(1.3 * max(sizes))
        frames: list[Atoms] = []
        k = 0
        while len(frames) < target:
            batch = build_emt_pt10(n_relaxations or 20, seed=seed * 100003 + k, every=every)
            frames += batch
            k += 1
            if n_relaxations is not None:
                break
        pos = np.stack([a.positions for a in frames])
        e = np.array([a.info["formation_energy"] for a in frames])
        fp = descriptor.pooled_many(frames, PT10_POOLING)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, positions=pos, energy=e, fingerprints=fp)
    order = None
    order_file = (cache.with_name(f"{cache.stem}_fps{max(sizes)}_seed{seed}.npy")
                  if cache is not None else None)
    if order_file is not None and order_file.exists():
        order = np.load(order_file)
    if order is None or len(order) < max(sizes):
        order = farthest_point_sampling(fp, max(sizes), seed=seed)
        if order_file is not None:
            np.save(order_file, order)
    out = {}
    for size in sorted(sizes):
        sel = order[:size]
        images = [Atoms("Pt10", positions=pos[i]) for i in sel]
        for a, i in zip(images, sel):
            a.info["formation_energy"] = float(e[i])
        out[size] = (images, fp[sel], e[sel])
    return out
