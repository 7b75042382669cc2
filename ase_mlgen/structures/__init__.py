"""Structure identity: molecules by bond graph, crystals by symmetry and descriptor distance."""
