"""Shared fixtures: a small, real-Rust training set and a fast tiny-model config.

The data are generated Rust functions with their unit tests (valid Rust, varied
shapes), so trainer tests run without the full corpus and in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from falsify.checks.fixtures import run_config, write_dataset  # shared with the checks


@pytest.fixture(scope="session", autouse=True)
def no_developer_warm_interpreter(tmp_path_factory):
    """The tests' own `pytest -m tier1` runs must not reach a warm interpreter the developer started
    (FALSIFY_WARM_DIR points at an empty directory); tests/test_warm.py starts its own where it needs them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FALSIFY_WARM_DIR", str(tmp_path_factory.mktemp("warm-none")))
        yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    return write_dataset(tmp_path_factory.mktemp("tiny-data"))


def fast_config(data: dict[str, Path], **sections):
    """The tiny preset, short sequences, 4 steps; `sections` override keys (see fixtures.run_config)."""
    return run_config(data, **sections)
