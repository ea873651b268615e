"""Mutant schemata give the same verdict per mutant as one build per mutant (runs cargo)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from eval_cases import (
    CLAMP,
    CLAMP_GOOD,
    GENERIC_MAX,
    GENERIC_MAX_TESTS,
    NOT_DEFAULT,
    NOT_DEFAULT_TESTS,
    SIGN,
    SIGN_TESTS,
    SUM_EVEN,
    SUM_EVEN_TESTS,
)

from falsify.evaluate.crate import Workspace, assemble
from falsify.evaluate.mutation_runner import run_schema, run_separately
from falsify.evaluate.run import Options
from falsify.evaluate.sandbox import sandbox_uid
from falsify.evaluate.toolchain import find_toolchain

CASES = {"sign": (SIGN, SIGN_TESTS), "sum_even": (SUM_EVEN, SUM_EVEN_TESTS), "largest": (GENERIC_MAX, GENERIC_MAX_TESTS),
         "to_meters": (NOT_DEFAULT, NOT_DEFAULT_TESTS), "clamp": (CLAMP, CLAMP_GOOD.split("proptest!")[0])}


@pytest.fixture(scope="module")
def workspace():
    ws = Workspace(find_toolchain(), cargo_jobs=os.cpu_count() or 1)
    ws.warm()
    root = Path(tempfile.mkdtemp(prefix="rtf-equiv-"))
    os.chmod(root, 0o711)
    yield ws, root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_schema_verdicts_equal_one_build_per_mutant(workspace, name):
    ws, root = workspace
    code, tests = CASES[name]
    uid = sandbox_uid(0)
    limits = Options(test_timeout=20).test_limits
    schema_dir, plain_dir = root / f"{name}-schema", root / f"{name}-plain"
    ws.prepare(schema_dir, assemble(code, tests).source, uid)
    ws.prepare(plain_dir, assemble(code, tests).source, uid)
    schema = run_schema(ws, schema_dir, code, tests, uid=uid, limits=limits, original_seconds=0.5)
    plain = run_separately(ws, plain_dir, code, tests, uid=uid, limits=limits, original_seconds=0.5)
    assert schema.ran, schema.reason
    assert schema.verdicts == plain.verdicts
    assert len(schema.verdicts) >= 2
    assert plain.builds == len(plain.verdicts)  # the reference really built each mutant alone
    if name == "to_meters":  # Meters has no Default: the body->default mutant cannot compile
        assert "unviable" in schema.verdicts.values()
    assert "killed" in schema.verdicts.values()
