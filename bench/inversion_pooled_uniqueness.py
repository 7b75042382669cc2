"""How well does a pooled (max, min) ACSF vector pin down its cluster?

Writes ``bench/results/inversion_pooled_uniqueness.json``.

For every cluster of the reconstruction benchmark (``bench/inversion.py`` part ``recon``), two
measurements at the original structure:

* **rank**: the rank of the Jacobian of the fingerprint with respect to the 3N coordinates
  (singular values above 1e-8 of the largest), against the 3N - 6 internal coordinates, for the
  pooled vector (the benchmark's small ACSF and its rich variant) and, for contrast, for the
  per-atom fingerprint. A rank below 3N - 6 leaves directions along which the fingerprint does
  not change to first order (at symmetric structures the per-atom fingerprint also loses rank,
  yet its second-order change still pins the structure: the rank alone proves nothing).
* **move and return**: start from the original moved along a random direction of that null
  space (rigid motions projected out) to an RMSD of ``--step`` Å, minimise the squared pooled
  difference (L-BFGS, float64) from there, and record where it ends: the RMSD to the original
  (over rotations, reflections, translations and permutations) and the largest pooled
  difference relative to the mean pooled magnitude. Ending more than 0.1 Å away (the success
  threshold of the benchmark) with a tiny difference means the pooled vector barely tells that
  structure from the original; ``twin_found`` flags an end below ``--same``.

Usage: ``python bench/inversion_pooled_uniqueness.py [--tries 3] [--step 0.3]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from inversion import G2, G5, RICH_G2, RICH_G5, RESULTS, _machine, recon_cases, save  # noqa: E402


def _jacobian(fp_fn, positions: np.ndarray, n_out: int):
    """Rows d fp_k / d positions (n_out, 3N): one batched backward pass, batch k -> output k."""
    import torch

    pos = torch.tensor(positions, dtype=torch.float64)[None].repeat(n_out, 1, 1)
    pos.requires_grad_(True)
    out = fp_fn(pos)  # (n_out, n_out)
    out.diagonal().sum().backward()
    return pos.grad.reshape(n_out, -1).numpy()


def _rigid_basis(positions: np.ndarray) -> np.ndarray:
    """Orthonormal basis (6, 3N) of infinitesimal translations and rotations."""
    c = positions - positions.mean(0)
    vecs = []
    for k in range(3):
        t = np.zeros_like(c)
        t[:, k] = 1.0
        vecs.append(t.ravel())
        axis = np.zeros(3)
        axis[k] = 1.0
        vecs.append(np.cross(axis, c).ravel())
    q, _ = np.linalg.qr(np.array(vecs).T)
    return q.T


def _twin(atoms, fp_fn, null: np.ndarray, step: float, rng, iterations: int):
    """Move along a random null-space direction and minimise the pooled difference again."""
    import torch
    from ase import Atoms
    from scipy.optimize import minimize

    from ase_mlgen.inversion.compare import structure_rmsd

    target = fp_fn(torch.tensor(atoms.positions, dtype=torch.float64)[None])[0].detach()
    scale = float(target.abs().mean())
    direction = null.T @ rng.normal(size=null.shape[0])
    direction = direction.reshape(-1, 3)
    direction *= step / np.sqrt((direction ** 2).sum(1).mean())
    x0 = (atoms.positions + direction).ravel()

    def fun(flat):
        pos = torch.tensor(flat.reshape(1, -1, 3), requires_grad=True)
        d = (fp_fn(pos)[0] - target) / scale
        f = (d * d).sum()
        f.backward()
        return float(f.detach()), pos.grad.numpy().ravel()

    res = minimize(fun, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": iterations, "gtol": 1e-14, "ftol": 1e-20})
    twin = atoms.copy()
    twin.positions = res.x.reshape(-1, 3)
    with torch.no_grad():
        diff = (fp_fn(torch.tensor(twin.positions)[None])[0] - target).abs()
    start = Atoms(atoms.numbers, positions=x0.reshape(-1, 3))
    return {"rmsd_start": float(structure_rmsd(atoms, start)),
            "rmsd": float(structure_rmsd(atoms, twin)),
            "max_relative_difference": float(diff.max()) / scale,
            "mean_relative_difference": float(diff.mean()) / scale}


def main(argv=None):
    import torch

    from ase_mlgen.descriptors.acsf import ACSF
    from ase_mlgen.inversion.inverter import pool_fingerprint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS / "inversion_pooled_uniqueness.json"))
    p.add_argument("--categories", default="EMT Pt10 minima,Pt clusters")
    p.add_argument("--tries", type=int, default=3, help="twin searches per structure")
    p.add_argument("--step", type=float, default=0.3, help="Å RMSD of the null-space move")
    p.add_argument("--same", type=float, default=1e-6,
                   help="largest pooled difference, relative to the mean magnitude, of a twin")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    cases = recon_cases()
    rows = []
    result = {"settings": vars(args), "machine": _machine(), "rows": rows,
              "acsf": {"small": {"r_cut": 6.0, "g2": G2, "g5": G5},
                       "rich": {"r_cut": 6.0, "g2": RICH_G2, "g5": RICH_G5}}}
    t_all = time.perf_counter()
    for cat in [c.strip() for c in args.categories.split(",")]:
        for name, atoms in cases[cat]:
            n = len(atoms)
            row = {"category": cat, "name": name, "n_atoms": n, "internal_dof": 3 * n - 6}
            for label, g2, g5 in (("small", G2, G5), ("rich", RICH_G2, RICH_G5)):
                desc = ACSF(sorted(set(atoms.get_chemical_symbols())), r_cut=6.0,
                            g2_params=g2, g5_params=g5)

                def pooled(pos, desc=desc):
                    return pool_fingerprint(desc.forward_batch(pos, atoms.numbers, None, False),
                                            ("max", "min"))

                def per_atom(pos, desc=desc):
                    return desc.forward_batch(pos, atoms.numbers, None, False).flatten(1)

                jac = _jacobian(pooled, atoms.positions, 2 * desc.n_features)
                sv = np.linalg.svd(jac, compute_uv=False)
                rank = int((sv > sv[0] * 1e-8).sum())
                row[f"pooled_{label}_numbers"] = 2 * desc.n_features
                row[f"pooled_{label}_rank"] = rank
                row[f"pooled_{label}_rank_full"] = rank >= 3 * n - 6
                if label == "small":
                    jac_pa = _jacobian(per_atom, atoms.positions, n * desc.n_features)
                    sv_pa = np.linalg.svd(jac_pa, compute_uv=False)
                    row["per_atom_rank"] = int((sv_pa > sv_pa[0] * 1e-8).sum())
                # null space of the pooled Jacobian without the rigid motions
                _, _, vt = np.linalg.svd(jac)
                null = vt[rank:]
                rigid = _rigid_basis(atoms.positions)
                null = null - (null @ rigid.T) @ rigid
                keep = np.linalg.norm(null, axis=1) > 1e-6
                null = null[keep]
                twins = []
                if len(null):
                    q, _ = np.linalg.qr(null.T)
                    null = q.T
                    for _ in range(args.tries):
                        twins.append(_twin(atoms, pooled, null, args.step, rng, args.iterations))
                row[f"pooled_{label}_twins"] = twins
                row[f"pooled_{label}_twin_found"] = any(
                    t["rmsd"] > 0.1 and t["max_relative_difference"] < args.same for t in twins)
            rows.append(row)
            print(f"{cat:16s} {name:8s} N={n:3d} 3N-6={3 * n - 6:3d} per-atom rank "
                  f"{row['per_atom_rank']:3d} | pooled rank small {row['pooled_small_rank']:3d} "
                  f"twin {row['pooled_small_twin_found']} | rich {row['pooled_rich_rank']:3d} "
                  f"twin {row['pooled_rich_twin_found']}", flush=True)
            save(result, Path(args.out))
    result["seconds"] = time.perf_counter() - t_all
    result["summary"] = {
        cat: {f"{label}_{what}": int(sum(r[f"pooled_{label}_{key}"] for r in rows
                                         if r["category"] == cat))
              for label in ("small", "rich")
              for what, key in (("full_rank", "rank_full"), ("twins", "twin_found"))}
        for cat in {r["category"] for r in rows}}
    save(result, Path(args.out))


if __name__ == "__main__":
    main()
