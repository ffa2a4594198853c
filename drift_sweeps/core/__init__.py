"""Pure math core: kernels, drift operators, schedules, targets, metrics, linear theory.

Submodules import torch and the standard library only; `theory` imports neither torch nor numpy
so that the analysis package can use it. This file imports nothing on purpose.
"""
