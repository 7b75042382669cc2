"""Choosing structures: representatives of many generated candidates (PCA + k-means), generated
molecules by their unrelaxed bond graphs, and one structure per predicted-energy bin (the DART
screening step)."""
from ase_mlgen.select.energy_bins import energy_bins
from ase_mlgen.select.molecules import molecule_representatives
from ase_mlgen.select.representatives import representatives, structure_features, too_close

__all__ = ["energy_bins", "molecule_representatives", "representatives", "structure_features",
           "too_close"]
