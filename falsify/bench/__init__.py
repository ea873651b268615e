"""Benchmarks: scripts that print ratios against a peer measured in the same run (never tests).

One entry point, `python -m falsify.bench NAME` (falsify/bench/__main__.py lists the names).
"""
