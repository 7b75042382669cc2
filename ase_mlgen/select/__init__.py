"""Choosing structures: representatives of many generated candidates (PCA + k-means)."""
from ase_mlgen.select.representatives import representatives, structure_features, too_close

__all__ = ["representatives", "structure_features", "too_close"]
