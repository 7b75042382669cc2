"""Choosing structures: representatives of many generated candidates (PCA + k-means) and one
structure per predicted-energy bin (the DART screening step)."""
from ase_mlgen.select.energy_bins import energy_bins
from ase_mlgen.select.representatives import representatives, structure_features, too_close

__all__ = ["energy_bins", "representatives", "structure_features", "too_close"]
