"""Benchmarks: each module prints one JSON line per figure (name, value, unit, baseline, ratio)."""
