"""Compute kernels, one file per backend; launching and allocation live in dropkit.backends."""
