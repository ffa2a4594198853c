"""The torch-free spine: config, record names, linear theory, torus modes, schedules, registries.

Both sides import it: the torch math (`core`), the trial loop and the sweep runner on one side,
the analysis on the other.  Nothing here imports torch, numpy or ray (tests/test_architecture.py).
This file imports nothing on purpose.
"""
