"""Explaining downgrades: the exact attribution kernel, causes and reasons, recourse, the batch run and its reports.

The fidelity measure (which reads the simulator's truth) lives in `serving.explain.fidelity`; the nightly path never imports it.
"""
