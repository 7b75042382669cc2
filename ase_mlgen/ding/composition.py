"""Chemical compositions as DING vectors: per element a one-hot over the atom counts 0–10.

A composition (``{"Ba": 1, "Pt": 1, "U": 1}``) becomes a 979-long vector: for each of the 89
elements of :data:`ELEMENTS`, 11 entries (count 0, 1, …, 10) of which exactly one is 1. This is
the representation of DING (Pathak, Juneja, Varma, Ehara, Priyakumar; github.com/devalab/DING,
``element_list`` and ``onehot`` of its notebooks). The round trip composition → vector →
composition is exact; a count above :data:`MAX_COUNT` or an element outside :data:`ELEMENTS` cannot
be represented and raises :class:`CompositionError` (a ``ValueError``) saying which.

Accepted inputs everywhere: OQMD strings such as ``"Ba1Pt1U1"``, any formula ASE parses
(``"Fe2O3"``), :class:`ase.formula.Formula`, :class:`ase.Atoms` and ``{symbol: count}`` mappings.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from ase.formula import Formula

#: The 89 elements of the DING paper, in its order: H to Pu (Z = 1–94) without Po, At, Rn, Fr and
#: Ra (no OQMD compound in the paper's data contains them). The noble gases He–Xe are kept. Every
#: one of the 85 elements that occur in ``oqmd_27k.csv`` is in this list.
ELEMENTS: tuple[str, ...] = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In",
    "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb",
    "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl",
    "Pb", "Bi", "Ac", "Th", "Pa", "U", "Np", "Pu",
)
N_ELEMENTS = len(ELEMENTS)  # 89
MAX_COUNT = 10  # largest number of atoms of one element in a composition (paper)
N_LEVELS = MAX_COUNT + 1  # one-hot over counts 0, 1, ..., 10
VECTOR_SIZE = N_ELEMENTS * N_LEVELS  # 979

_INDEX = {symbol: i for i, symbol in enumerate(ELEMENTS)}


class CompositionError(ValueError):
    """A composition that the DING representation cannot hold (unknown element, count > 10, …)."""


def _count_dict(composition: Any) -> dict[str, int]:
    """``{symbol: count}`` of any accepted input (not yet checked against :data:`ELEMENTS`)."""
    if isinstance(composition, Formula):
        return dict(composition.count())
    if isinstance(composition, str):
        text = composition.strip()
        if not text:
            raise CompositionError("empty formula: a composition needs at least one atom")
        try:
            return dict(Formula(text, strict=True).count())
        except ValueError as exc:
            raise CompositionError(f"cannot parse formula {composition!r}: {exc}") from None
    if isinstance(composition, Mapping):
        return {str(k): composition[k] for k in composition}
    if hasattr(composition, "get_chemical_symbols"):  # ase.Atoms
        out: dict[str, int] = {}
        for s in composition.get_chemical_symbols():
            out[s] = out.get(s, 0) + 1
        return out
    raise CompositionError(f"cannot read a composition from {type(composition).__name__} "
                           f"{composition!r}; give a formula string ('Ba1Pt1U1'), an "
                           "ase.formula.Formula, ase.Atoms or a {symbol: count} dict")


def parse(composition: Any) -> dict[str, int]:
    """Checked ``{symbol: count}`` (zero counts dropped) of a formula, Formula, Atoms or dict.

    Raises :class:`CompositionError` for an element outside :data:`ELEMENTS`, a count that is
    negative, not an integer or above :data:`MAX_COUNT`, or a composition without atoms.
    """
    counts = _count_dict(composition)
    out: dict[str, int] = {}
    for symbol, count in counts.items():
        if symbol not in _INDEX:
            raise CompositionError(
                f"element {symbol!r} of {_describe(composition)} is not one of the 89 elements "
                "DING represents (H to Pu without Po, At, Rn, Fr, Ra)")
        if isinstance(count, float) and not float(count).is_integer():
            raise CompositionError(f"count {count} of {symbol} in {_describe(composition)} is "
                                   "not a whole number")
        count = int(count)
        if count < 0:
            raise CompositionError(f"negative count {count} of {symbol} in "
                                   f"{_describe(composition)}")
        out[symbol] = out.get(symbol, 0) + count
    for symbol, count in out.items():
        if count > MAX_COUNT:
            raise CompositionError(
                f"{_describe(composition)} has {count} {symbol} atoms; DING represents at most "
                f"{MAX_COUNT} atoms of each element (use a smaller formula unit)")
    out = {s: c for s, c in out.items() if c}
    if not out:
        raise CompositionError(f"{_describe(composition)} has no atoms")
    return out


def _describe(composition: Any) -> str:
    if isinstance(composition, (str, Formula)):
        return f"formula {str(composition)!r}"
    if isinstance(composition, Mapping):
        return f"composition {dict(composition)!r}"
    return f"composition {composition!r}"


def to_counts(composition: Any) -> np.ndarray:
    """Counts per element of :data:`ELEMENTS`, an ``int64`` array of length 89."""
    counts = np.zeros(N_ELEMENTS, dtype=np.int64)
    for symbol, count in parse(composition).items():
        counts[_INDEX[symbol]] = count
    return counts


def counts_to_vector(counts: np.ndarray) -> np.ndarray:
    """One-hot vectors of count arrays: ``(89,)`` → ``(979,)``, ``(N, 89)`` → ``(N, 979)``."""
    counts = np.asarray(counts)
    if counts.shape[-1] != N_ELEMENTS:
        raise CompositionError(f"expected counts of {N_ELEMENTS} elements, got shape "
                               f"{counts.shape}")
    if counts.min(initial=0) < 0 or counts.max(initial=0) > MAX_COUNT:
        raise CompositionError(f"counts must lie in 0..{MAX_COUNT}")
    eye = np.eye(N_LEVELS, dtype=np.float32)
    onehot = eye[counts.astype(np.int64)]  # (..., 89, 11)
    return onehot.reshape(*counts.shape[:-1], VECTOR_SIZE)


def encode(composition: Any) -> np.ndarray:
    """The 979-long one-hot vector (``float32``) of one composition."""
    return counts_to_vector(to_counts(composition))


def encode_many(compositions: Iterable[Any]) -> np.ndarray:
    """``(N, 979)`` vectors of several compositions (raises on the first bad one)."""
    items = [to_counts(c) for c in compositions]
    if not items:
        return np.zeros((0, VECTOR_SIZE), dtype=np.float32)
    return counts_to_vector(np.stack(items))


def vector_to_counts(vectors: np.ndarray) -> np.ndarray:
    """Counts from one-hot vectors or decoder probabilities/logits (argmax per element).

    ``(979,)`` → ``(89,)``; ``(N, 979)`` or ``(N, 89, 11)`` → ``(N, 89)``.
    """
    vectors = np.asarray(vectors)
    if vectors.shape[-1] == VECTOR_SIZE:
        vectors = vectors.reshape(*vectors.shape[:-1], N_ELEMENTS, N_LEVELS)
    if vectors.shape[-2:] != (N_ELEMENTS, N_LEVELS):
        raise CompositionError(f"expected vectors of length {VECTOR_SIZE} or shape "
                               f"(..., {N_ELEMENTS}, {N_LEVELS}); got {vectors.shape}")
    return vectors.argmax(axis=-1)


def counts_to_dict(counts: np.ndarray) -> dict[str, int]:
    """``{symbol: count}`` of the non-zero counts, in :data:`ELEMENTS` order."""
    counts = np.asarray(counts)
    return {ELEMENTS[i]: int(counts[i]) for i in np.flatnonzero(counts)}


def counts_to_formula(counts: np.ndarray) -> Formula:
    """:class:`ase.formula.Formula` of a counts array, symbols in alphabetical order (as OQMD)."""
    d = counts_to_dict(counts)
    return Formula.from_dict({s: d[s] for s in sorted(d)})


def decode(vector: np.ndarray) -> Formula:
    """Formula of one vector (one-hot, probabilities or logits). Raises on an all-zero vector."""
    counts = vector_to_counts(vector)
    if counts.ndim != 1:
        raise CompositionError("decode takes one vector; use decode_many for a batch")
    if not counts.any():
        raise CompositionError("the vector decodes to zero atoms of every element")
    return counts_to_formula(counts)


def decode_many(vectors: np.ndarray) -> list[Formula | None]:
    """Formulas of a batch of vectors; ``None`` where a vector decodes to no atoms."""
    return [counts_to_formula(c) if c.any() else None for c in vector_to_counts(vectors)]


def oqmd_string(composition: Any) -> str:
    """OQMD spelling: symbols in alphabetical order, every count written (``"Ba1Pt1U1"``)."""
    d = parse(composition)
    return "".join(f"{s}{d[s]}" for s in sorted(d))


def key(counts: np.ndarray) -> bytes:
    """A hashable identity of a counts array (for uniqueness and novelty checks)."""
    return np.asarray(counts, dtype=np.uint8).tobytes()
