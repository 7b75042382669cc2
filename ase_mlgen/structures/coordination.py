"""Coordination numbers from pair cutoffs, and the test "every atom has its ideal coordination".

A network solid such as SiO2 is chemically sound when every Si has four O neighbours and every O
two Si neighbours (bonds up to about 2.0 Å). Neighbours come from
:func:`ase.neighborlist.neighbor_list`, so periodic images count separately: in a small cell an
O bonded to two images of the same Si has coordination 2, as it should (a minimum-image distance
matrix would count one).

>>> from ase_mlgen.structures.coordination import coordination_defects
>>> coordination_defects(quartz, ideal={"Si": 4, "O": 2}, cutoffs={("Si", "O"): 2.0})  # doctest: +SKIP
0
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

#: bonds of silica: Si–O up to 2.0 Å (the Si–O bond is 1.6 Å, the next Si–O distance over 3 Å)
SILICA_CUTOFFS: dict[tuple[str, str], float] = {("Si", "O"): 2.0}
#: the ideal coordination of a silica network: SiO4 tetrahedra sharing every corner
SILICA_IDEAL: dict[str, int] = {"Si": 4, "O": 2}


def _check_cutoffs(cutoffs: Mapping[tuple[str, str], float]) -> dict[tuple[int, int], float]:
    if not cutoffs:
        raise ValueError("cutoffs is empty: give at least one pair, e.g. {('Si', 'O'): 2.0}")
    out = {}
    for pair, r in cutoffs.items():
        if len(pair) != 2:
            raise ValueError(f"a cutoff key is a pair of elements, got {pair!r}")
        try:
            a, b = (atomic_numbers[s] if isinstance(s, str) else int(s) for s in pair)
        except KeyError as err:
            raise ValueError(f"unknown element {err.args[0]!r} in cutoffs") from None
        if not float(r) > 0:
            raise ValueError(f"cutoff of {pair} must be positive, got {r}")
        out[(a, b)] = out[(b, a)] = float(r)
    return out


def _contacts(atoms: Atoms, pairs: dict[tuple[int, int], float], reach: float):
    """One neighbour-list pass: ``(i, d, limit)`` for every neighbour pair within ``reach`` Å
    (periodic images included) — first atom, distance, and the pair's cutoff (−inf for pairs
    of elements not in ``pairs``)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, reach)
    z = atoms.numbers
    limit = np.array([pairs.get((int(a), int(b)), -np.inf) for a, b in zip(z[i], z[j])])
    return i, d, limit


def _counts(n_atoms: int, i: np.ndarray, d: np.ndarray, limit: np.ndarray) -> np.ndarray:
    counts = np.zeros(n_atoms, dtype=int)
    np.add.at(counts, i[d < limit], 1)
    return counts


def _near(n_atoms: int, i: np.ndarray, d: np.ndarray, limit: np.ndarray,
          margin: float) -> np.ndarray:
    flagged = np.zeros(n_atoms, dtype=bool)
    flagged[i[np.abs(d - limit) <= margin]] = True
    return flagged


def coordination_numbers(atoms: Atoms, cutoffs: Mapping[tuple[str, str], float]) -> np.ndarray:
    """Number of neighbours of every atom, ``(N,)`` ints: atoms (and periodic images) of a pair
    of elements listed in ``cutoffs`` closer than that pair's cutoff (Å). Pairs not listed never
    count (``{("Si", "O"): 2.0}`` counts Si–O bonds only)."""
    pairs = _check_cutoffs(cutoffs)
    if len(atoms) < 2:
        return np.zeros(len(atoms), dtype=int)
    return _counts(len(atoms), *_contacts(atoms, pairs, max(pairs.values())))


def _check_margin(margin: float) -> float:
    if margin < 0:
        raise ValueError(f"margin must be >= 0 Å, got {margin}")
    return float(margin)


def near_cutoff(atoms: Atoms, cutoffs: Mapping[tuple[str, str], float],
                margin: float) -> np.ndarray:
    """``(N,)`` bools: atoms with a neighbour of a listed pair of elements at a distance within
    ``margin`` (Å) of that pair's cutoff, i.e. whose coordination a small displacement changes
    (a Si–O contact of 1.99 or 2.01 Å against a 2.0 Å cutoff)."""
    margin = _check_margin(margin)
    pairs = _check_cutoffs(cutoffs)
    if len(atoms) < 2 or margin == 0:
        return np.zeros(len(atoms), dtype=bool)
    return _near(len(atoms), *_contacts(atoms, pairs, max(pairs.values()) + margin), margin)


def _defects(atoms: Atoms, cn: np.ndarray, ideal: Mapping[str, int]) -> int:
    """Σ |cn − ideal| over the atoms whose element is in ``ideal``."""
    if not ideal:
        raise ValueError("ideal is empty: give each element's ideal coordination")
    want = np.full(len(atoms), -1)
    for symbol, n in ideal.items():
        if symbol not in atomic_numbers:
            raise ValueError(f"unknown element {symbol!r} in ideal")
        want[atoms.numbers == atomic_numbers[symbol]] = int(n)
    listed = want >= 0
    return int(np.abs(cn[listed] - want[listed]).sum())


def coordination_defects(atoms: Atoms, ideal: Mapping[str, int],
                         cutoffs: Mapping[tuple[str, str], float], margin: float = 0.0) -> int:
    """Σ |coordination − ideal| over the atoms whose element is in ``ideal`` (0 = every such
    atom has exactly its ideal coordination). With ``margin`` > 0 (Å) every such atom with a
    contact within ``margin`` of its cutoff (:func:`near_cutoff`) counts one defect more: for
    unrelaxed candidates, whose borderline bonds may break or form on relaxation."""
    margin = _check_margin(margin)
    if margin == 0 or len(atoms) < 2:
        return _defects(atoms, coordination_numbers(atoms, cutoffs), ideal)
    pairs = _check_cutoffs(cutoffs)
    contacts = _contacts(atoms, pairs, max(pairs.values()) + margin)   # one pass for both
    defects = _defects(atoms, _counts(len(atoms), *contacts), ideal)
    listed = np.isin(atoms.numbers, [atomic_numbers[s] for s in ideal])
    return defects + int(np.sum(_near(len(atoms), *contacts, margin) & listed))


def coordination_summary(atoms: Atoms, ideal: Mapping[str, int],
                         cutoffs: Mapping[tuple[str, str], float]) -> dict:
    """Per element: how many atoms have their ideal coordination, of how many
    (``{"Si": [4, 4], "O": [7, 8], "defects": 1, "all_ideal": False}``)."""
    cn = coordination_numbers(atoms, cutoffs)
    out: dict = {}
    for symbol, n in ideal.items():
        mask = atoms.numbers == atomic_numbers[symbol]
        out[symbol] = [int(np.sum(cn[mask] == int(n))), int(mask.sum())]
    out["defects"] = _defects(atoms, cn, ideal)
    out["all_ideal"] = out["defects"] == 0
    return out


def has_ideal_coordination(ideal: Mapping[str, int] = SILICA_IDEAL,
                           cutoffs: Mapping[tuple[str, str], float] = SILICA_CUTOFFS
                           ) -> Callable[[Atoms], bool]:
    """A test ``accept(atoms) -> bool`` for :func:`ase_mlgen.select.representatives`: True when
    every atom of an element in ``ideal`` has exactly its ideal coordination (default: silica,
    Si 4 and O 2 within 2.0 Å)."""
    _check_cutoffs(cutoffs)

    def accept(atoms: Atoms) -> bool:
        return coordination_defects(atoms, ideal, cutoffs) == 0

    return accept
