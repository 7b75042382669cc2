"""A BKS-type classical potential for SiO2, as an ASE calculator (fast relaxer for benchmarks).

Pair potential of van Beest, Kramer and van Santen (Phys. Rev. Lett. 64, 1955, 1990): partial
charges q_Si = +2.4 e, q_O = -1.2 e and a Buckingham term per pair,

    phi_ab(r) = A_ab exp(-b_ab r) - C_ab / r^6          (O-O and Si-O; none for Si-Si)

    O-O :  A = 1388.7730 eV, b = 2.76000 1/Å, C = 175.0000 eV Å^6
    Si-O:  A = 18003.7572 eV, b = 4.87318 1/Å, C = 133.5381 eV Å^6

with two practical changes, as usual in simulations with BKS:

* the Buckingham term turns over and dives to minus infinity at short range (below about 1 Å
  for Si-O, 1.2 Å for O-O); a steep repulsion ``eps (sigma / r)^24`` (Si-O: sigma = 1.3 Å,
  O-O: sigma = 1.4 Å, eps = 1 eV; 0.007 eV at the Si-O bond length of 1.6 Å) removes the collapse,
  which random starting structures would otherwise fall into;
* the Coulomb sum uses the damped shifted force (DSF) form of Fennell and Gezelter (J. Chem. Phys.
  124, 234104, 2006) with ``alpha = 0.2 / Å`` and a cutoff of 10 Å instead of an Ewald sum, and
  the Buckingham terms are cut at 5.5 Å in the shifted-force form (energy and force both go to
  zero there), so that energy and forces stay consistent and continuous. (A plain energy shift
  leaves a force step of ~0.006 eV/Å per pair at the cutoff.) Relax with a line-search
  optimiser (``ase.optimize.BFGSLineSearch``) or FIRE: plain ``BFGS`` stalls, with forces of
  0.5–1 eV/Å left, on some generated silica candidates.

Energies are in eV for the whole cell; forces in eV/Å. No stress (relax positions in a fixed
cell). Good enough to rank SiO2 candidates (corner-sharing SiO4 tetrahedra are its minima) at
milliseconds per call; not a substitute for DFT.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from scipy.special import erfc

#: Coulomb constant e^2 / (4 pi eps0) in eV Å
KE = 14.399645
CHARGES = {14: 2.4, 8: -1.2}
#: (A [eV], b [1/Å], C [eV Å^6], sigma of the r^-24 core [Å]) per unordered pair of atomic numbers
BUCKINGHAM = {(8, 8): (1388.7730, 2.76000, 175.0000, 1.4),
              (8, 14): (18003.7572, 4.87318, 133.5381, 1.3)}


class BKS(Calculator):
    """BKS SiO2 pair potential with DSF Coulomb (see the module docstring).

    ``coulomb_cutoff`` (10 Å), ``alpha`` (0.2 / Å), ``short_cutoff`` (5.5 Å), ``core_eps``
    (1 eV). Works for periodic and non-periodic structures of Si and O only.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, coulomb_cutoff: float = 10.0, alpha: float = 0.2,
                 short_cutoff: float = 5.5, core_eps: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.rc = float(coulomb_cutoff)
        self.alpha = float(alpha)
        self.rs = float(short_cutoff)
        self.core_eps = float(core_eps)

    def _buckingham(self, r, a, b, c, sigma):
        """Pair energy (eV) and its derivative (eV/Å) of the short-range part, uncut."""
        e = a * np.exp(-b * r) - c / r ** 6 + self.core_eps * (sigma / r) ** 24
        de = -a * b * np.exp(-b * r) + 6 * c / r ** 7 - 24 * self.core_eps * sigma ** 24 / r ** 25
        return e, de

    def _short(self, r, a, b, c, sigma):
        """The short-range pair term in shifted-force form: phi(rs) = phi'(rs) = 0."""
        e, de = self._buckingham(r, a, b, c, sigma)
        e_s, de_s = self._buckingham(self.rs, a, b, c, sigma)
        return e - e_s - (r - self.rs) * de_s, de - de_s

    def _coulomb(self, r, qq):
        a, rc = self.alpha, self.rc
        erfc_rc = erfc(a * rc) / rc
        force_rc = erfc_rc / rc + 2 * a / np.sqrt(np.pi) * np.exp(-(a * rc) ** 2) / rc
        e = qq * KE * (erfc(a * r) / r - erfc_rc + force_rc * (r - rc))
        de = qq * KE * (-erfc(a * r) / r ** 2
                        - 2 * a / np.sqrt(np.pi) * np.exp(-(a * r) ** 2) / r + force_rc)
        return e, de

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ase.neighborlist import neighbor_list

        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        numbers = atoms.numbers
        if not set(np.unique(numbers)) <= {8, 14}:
            raise ValueError("the BKS potential knows only Si and O")
        q = np.array([CHARGES[int(z)] for z in numbers])
        i, j, d, vec = neighbor_list("ijdD", atoms, max(self.rc, self.rs))
        d = np.maximum(d, 1e-3)
        e_pair = np.zeros(len(d))
        de_pair = np.zeros(len(d))
        inside = d < self.rc
        ec, dec = self._coulomb(d[inside], q[i[inside]] * q[j[inside]])
        e_pair[inside] += ec
        de_pair[inside] += dec
        zi, zj = numbers[i], numbers[j]
        lo, hi = np.minimum(zi, zj), np.maximum(zi, zj)
        for (za, zb), (a, b, c, sigma) in BUCKINGHAM.items():
            mask = (lo == za) & (hi == zb) & (d < self.rs)
            if mask.any():
                es, des = self._short(d[mask], a, b, c, sigma)
                e_pair[mask] += es
                de_pair[mask] += des
        a, rc = self.alpha, self.rc
        self_term = -(erfc(a * rc) / (2 * rc) + a / np.sqrt(np.pi)) * KE * np.sum(q * q)
        energy = 0.5 * e_pair.sum() + self_term
        forces = np.zeros((len(atoms), 3))
        # F_i = sum_j phi'(r_ij) * (r_j - r_i) / r_ij; both orders of each pair are listed
        np.add.at(forces, i, (de_pair / d)[:, None] * vec)
        self.results["energy"] = float(energy)
        self.results["free_energy"] = float(energy)
        self.results["forces"] = forces
