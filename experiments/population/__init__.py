"""Vectorized sweeps: a population of trials trained as one batched network.

The submodules import PyTorch; this package itself imports nothing, so that a sweep can ask
whether to vectorize before paying for the import.
"""
