"""``ase-mlgen compare out*.json --png curves.png``: a table over methods and seeds, and
best-energy-versus-relaxations curves (median and min–max spread over seeds)."""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_reports(paths) -> list[dict]:
    reports = []
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        for report in data if isinstance(data, list) else [data]:
            if "history" not in report or "method" not in report:
                raise ValueError(f"{path} is not an 'ase-mlgen search' report")
            reports.append(report)
    return reports


def best_curve(report: dict, budget: int) -> np.ndarray:
    """Best energy after 1..budget relaxations (NaN before the first)."""
    curve = np.full(budget, np.nan)
    for entry in report["history"]:
        k = int(entry["relaxations"]) - 1
        if k < budget:
            curve[k:] = entry["energy"]
    return curve


def table(reports: list[dict], tol: float = 1e-3) -> list[dict]:
    """One row per (system, method): seeds, success against the best energy any method found,
    median relaxations/calls/seconds to reach it."""
    groups = defaultdict(list)
    for r in reports:
        groups[(r["system"], r["method"])].append(r)
    best_by_system = {}
    for r in reports:
        if r["best_energy"] is not None:
            best_by_system[r["system"]] = min(best_by_system.get(r["system"], np.inf),
                                              r["best_energy"])
    rows = []
    for (system, method), group in sorted(groups.items()):
        target = best_by_system.get(system, np.inf)
        hits = []
        for r in group:
            hit = next((h for h in r["history"] if h["energy"] <= target + tol), None)
            hits.append(hit)
        found = [h for h in hits if h is not None]
        rows.append({"system": system, "method": method, "seeds": len(group),
                     "target": target, "success": len(found),
                     "median_best": float(np.median([r["best_energy"] for r in group
                                                     if r["best_energy"] is not None])),
                     "median_relaxations": float(np.median([h["relaxations"] for h in found]))
                     if found else None,
                     "median_calls": float(np.median([h["calls"] for h in found]))
                     if found else None,
                     "median_seconds": float(np.median([h["seconds"] for h in found]))
                     if found else None,
                     "median_n_minima": float(np.median([r["n_minima"] for r in group])),
                     "median_overhead": float(np.median([r.get("overhead_fraction", 0.0)
                                                         for r in group]))})
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'system':8s} {'method':8s} {'success':>8s} {'best(med)':>12s} {'relax':>7s} "
            f"{'calls':>8s} {'seconds':>8s} {'minima':>7s} {'ovh%':>5s}")
    lines = [head, "-" * len(head)]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        lines.append(f"{r['system']:8s} {r['method']:8s} {r['success']:>3d}/{r['seeds']:<4d} "
                     f"{r['median_best']:12.4f} {fmt(r['median_relaxations'], '7.0f')} "
                     f"{fmt(r['median_calls'], '8.0f')} {fmt(r['median_seconds'], '8.1f')} "
                     f"{r['median_n_minima']:7.0f} {100 * r['median_overhead']:5.1f}")
    return "\n".join(lines)


def plot(reports: list[dict], png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({r["system"] for r in reports})
    fig, axes = plt.subplots(1, len(systems), figsize=(5 * len(systems), 4), squeeze=False)
    for ax, system in zip(axes[0], systems):
        group = defaultdict(list)
        for r in reports:
            if r["system"] == system:
                group[r["method"]].append(r)
        budget = max(r["relaxations"] for r in reports if r["system"] == system)
        x = np.arange(1, budget + 1)
        for method, rs in sorted(group.items()):
            curves = np.array([best_curve(r, budget) for r in rs])
            # a finished run keeps its last best to the common budget
            for c in curves:
                last = np.where(np.isfinite(c))[0]
                if len(last):
                    c[last[-1]:] = c[last[-1]]
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(curves, axis=0)
                    lo, hi = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
            line, = ax.plot(x, med, label=f"{method} ({len(rs)} seeds)")
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
        known = next((r.get("known_minimum") for r in reports
                      if r["system"] == system and r.get("known_minimum") is not None), None)
        if known is not None:
            ax.axhline(known, color="k", ls=":", lw=1, label="known minimum")
        unit = next((r.get("energy_unit", "eV") for r in reports if r["system"] == system), "eV")
        ax.set_xscale("log")
        ax.set_xlabel("local relaxations")
        ax.set_ylabel(f"best energy ({unit})")
        ax.set_title(system)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def run(args: argparse.Namespace) -> int:
    reports = load_reports(args.reports)
    if not reports:
        raise ValueError("no reports given")
    rows = table(reports, tol=args.tol)
    print(format_table(rows))
    if args.png:
        print(f"curves written to {plot(reports, args.png)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="table and curves from 'ase-mlgen search' reports")
    p.add_argument("reports", nargs="+", help="JSON files written by ase-mlgen search --json")
    p.add_argument("--png", default=None, help="draw best energy vs relaxations here")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="energy tolerance for 'reached the best' (eV)")
    p.set_defaults(func=run)
