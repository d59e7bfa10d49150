"""Benchmarks of sufd against its targets and against ccusage (see BENCHMARKS.md).

Run one with ``python -m benchmarks.<name> --help``.
"""
