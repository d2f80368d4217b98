"""Vectorized sweeps: a population of trials that share their shapes, trained as one batched
network (``python -m experiments.sweep SWEEP.yaml --population P``).

Nothing heavy is imported here: :mod:`experiments.sweep.cli` reads this package's names before
it knows whether a population will train.
"""
