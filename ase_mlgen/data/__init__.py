"""Training data built with any teacher calculator (:func:`build_cluster_dataset`) and read back
from ase.db (:func:`load_dataset`)."""
from ase_mlgen.data.clusters import build_cluster_dataset, load_dataset, parse_sizes

__all__ = ["build_cluster_dataset", "load_dataset", "parse_sizes"]
