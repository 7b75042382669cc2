"""OQMD compositions with their DFT properties, as DING trains on them.

The shared file ``../shared/data/oqmd/oqmd_27k.csv`` (27,207 rows; the held-out split of the DING
paper's OQMD set, github.com/devalab/DING ``Data/oqmd_test.csv``, MIT; OQMD: Saal et al. 2013,
Kirklin et al. 2015, CC BY 4.0) has the columns ``comp`` (``Ba1Pt1U1``), ``energy_pa`` (eV/atom),
``volume_pa`` (Å³/atom), ``magmom_pa``, ``bandgap``, ``delta_e`` (formation enthalpy, eV/atom) and
``stability``; the text ``None`` marks a missing value.

:func:`load_oqmd` reads it into an :class:`OQMDTable` (counts per element, properties as float
arrays with NaN for missing), skipping rows whose composition DING cannot represent or that lack
a required property (and saying how many). :func:`split` gives the fixed 80/10/10 split of a seed.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

#: the properties DING conditions on and predicts (units: eV/atom, eV/atom, Å³/atom)
PROPERTIES: tuple[str, ...] = ("delta_e", "energy_pa", "volume_pa")
UNITS = {"delta_e": "eV/atom", "energy_pa": "eV/atom", "volume_pa": "Å³/atom"}

RELATIVE_PATH = "oqmd/oqmd_27k.csv"


def default_path() -> Path:
    """``$ASE_MLGEN_SHARED_DATA/oqmd/oqmd_27k.csv``, else ``../shared/data/oqmd/oqmd_27k.csv``
    next to the repository checkout."""
    root = os.environ.get("ASE_MLGEN_SHARED_DATA")
    if root:
        return Path(root) / RELATIVE_PATH
    return Path(__file__).resolve().parents[3] / "shared" / "data" / RELATIVE_PATH


@dataclass
class OQMDTable:
    """Compositions (``counts``: ``(N, 89)`` ints over :data:`ase_mlgen.ding.ELEMENTS`) with
    their properties (``properties[name]``: ``(N,)`` floats, NaN = missing)."""

    formulas: list[str]
    counts: np.ndarray
    properties: dict[str, np.ndarray]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    source: str | None = None

    def __len__(self) -> int:
        return len(self.formulas)

    def __repr__(self) -> str:
        return (f"OQMDTable({len(self)} compositions, properties={list(self.properties)}, "
                f"skipped={len(self.skipped)})")

    def subset(self, index: Sequence[int] | np.ndarray) -> "OQMDTable":
        index = np.asarray(index, dtype=np.int64)
        return OQMDTable([self.formulas[i] for i in index], self.counts[index],
                         {k: v[index] for k, v in self.properties.items()}, [], self.source)

    def targets(self, names: Sequence[str] = PROPERTIES) -> np.ndarray:
        """``(N, len(names))`` property matrix."""
        missing = [n for n in names if n not in self.properties]
        if missing:
            raise KeyError(f"table has no propert{'y' if len(missing) == 1 else 'ies'} "
                           f"{missing}; it has {list(self.properties)}")
        return np.stack([self.properties[n] for n in names], axis=1)

    def vectors(self) -> np.ndarray:
        """``(N, 979)`` one-hot composition vectors."""
        from ase_mlgen.ding.composition import counts_to_vector

        return counts_to_vector(self.counts)

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the table (``.npz``) atomically."""
        from ase_mlgen.utils.io import atomic_write

        arrays = {"formulas": np.array(self.formulas, dtype=str),
                  "counts": self.counts.astype(np.uint8),
                  **{f"prop_{k}": v for k, v in self.properties.items()}}
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> "OQMDTable":
        with np.load(path) as data:
            props = {k[5:]: data[k].astype(np.float64) for k in data.files if k.startswith("prop_")}
            return cls([str(f) for f in data["formulas"]], data["counts"].astype(np.int64), props,
                       [], str(path))

    @classmethod
    def from_compositions(cls, compositions: Sequence, **properties) -> "OQMDTable":
        """A table from formulas (any input :func:`ase_mlgen.ding.composition.parse` takes) and
        property arrays given by name, e.g. ``delta_e=[...], energy_pa=[...], volume_pa=[...]``."""
        from ase_mlgen.ding.composition import oqmd_string, to_counts

        counts = np.stack([to_counts(c) for c in compositions]) if len(compositions) else \
            np.zeros((0, 89), dtype=np.int64)
        props = {k: np.asarray(v, dtype=np.float64) for k, v in properties.items()}
        for k, v in props.items():
            if v.shape != (len(compositions),):
                raise ValueError(f"property {k!r} has {v.shape} values for "
                                 f"{len(compositions)} compositions")
        return cls([oqmd_string(c) for c in compositions], counts, props)


def _float(text: str) -> float:
    text = text.strip()
    if text in ("", "None", "nan", "NaN"):
        return float("nan")
    return float(text)


def load_oqmd(path: str | os.PathLike | None = None, properties: Sequence[str] = PROPERTIES,
              require: Sequence[str] | None = None, verbose: bool = False) -> OQMDTable:
    """Read an OQMD CSV (default :func:`default_path`).

    ``properties``: the columns to keep. ``require`` (default: ``properties``): rows with a
    missing value in any of these are skipped. Rows whose composition DING cannot represent
    (unknown element, more than 10 atoms of one element) are skipped too; ``table.skipped`` lists
    ``(line number, reason)`` and ``verbose=True`` prints how many were skipped.
    """
    from ase_mlgen.ding.composition import CompositionError, to_counts

    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise FileNotFoundError(f"OQMD data {path} not found; it lives in the shared data folder "
                                f"(../shared/data/{RELATIVE_PATH}; set ASE_MLGEN_SHARED_DATA)")
    require = list(properties if require is None else require)
    formulas, counts, skipped = [], [], []
    values: dict[str, list[float]] = {p: [] for p in properties}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for col in ["comp", *properties]:
            if col not in header:
                raise ValueError(f"{path} has no column {col!r} (columns: {header})")
        for line, row in enumerate(reader, start=2):
            try:
                c = to_counts(row["comp"])
            except CompositionError as exc:
                skipped.append((line, str(exc)))
                continue
            row_values = {p: _float(row[p]) for p in properties}
            missing = [p for p in require if np.isnan(row_values[p])]
            if missing:
                skipped.append((line, f"missing {', '.join(missing)}"))
                continue
            formulas.append(row["comp"].strip())
            counts.append(c)
            for p in properties:
                values[p].append(row_values[p])
    table = OQMDTable(formulas, np.stack(counts) if counts else np.zeros((0, 89), np.int64),
                      {p: np.asarray(v, dtype=np.float64) for p, v in values.items()}, skipped,
                      str(path))
    if verbose:
        print(f"{path}: {len(table)} compositions read, {len(skipped)} rows skipped")
    return table


def split_indices(n: int, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation/test indices of ``n`` rows: a permutation by ``seed`` cut by
    ``fractions`` (the test part takes the remainder)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got "
                         f"{fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def split(table: OQMDTable, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
          ) -> tuple[OQMDTable, OQMDTable, OQMDTable]:
    """The fixed train/validation/test split (80/10/10 by default) of ``table`` for ``seed``."""
    return tuple(table.subset(i) for i in split_indices(len(table), seed, fractions))
