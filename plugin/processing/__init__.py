"""Processing provider "Sentinel Densify" (id densify) and its algorithms (alg_*.py)."""
