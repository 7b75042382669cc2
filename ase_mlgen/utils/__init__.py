"""Small helpers shared by every part of ase_mlgen (devices, atomic file writes, input checks)."""
