"""The dropout family beyond plain dropout, one concept per file.

Functions here are re-exported from :mod:`dropkit.functional` and modules (the ``nn_*``
files) from :mod:`dropkit.nn`; those are the public names. Every random decision comes from
the mask spec's Philox stream (``dropkit.rng``), served by the current backend where it is a
keep mask, and every function takes ``seed=`` / ``generator=`` like :func:`dropout`.
"""
