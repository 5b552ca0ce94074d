"""Run machinery: the LightningCLI, rank launching, checkpoints, resume, callbacks, profiling.

The LightningModules live in :mod:`selip.tasks`; this package runs them.
"""
