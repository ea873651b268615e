"""pytest plugin: registers the falsifier tier markers (contract collection lands with issue 3)."""

from __future__ import annotations


def pytest_configure(config) -> None:
    for name, text in (
        ("tier1", "falsifier tier 1: CPU, seconds, on every save"),
        ("tier2", "falsifier tier 2: CPU integration, minutes, on every commit"),
        ("tier3", "falsifier tier 3: GPU, nightly; skipped with a reason without CUDA"),
        ("gpu", "needs CUDA"),
    ):
        config.addinivalue_line("markers", f"{name}: {text}")
