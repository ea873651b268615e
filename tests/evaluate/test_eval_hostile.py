"""Hostile generated tests: each gets a verdict in time, nothing outside the sandbox changes,
and the harness goes on to evaluate a normal sample afterwards (runs cargo)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from eval_cases import CLAMP, CLAMP_GOOD, sample

from falsify.evaluate import evaluate_samples

HOSTILE = Path(__file__).parent / "hostile"
TEST_TIMEOUT, BUILD_TIMEOUT = 5.0, 20.0
EXPECTED = {  # the verdict each hostile sample must get
    "infinite_loop": {"timeout"}, "fork_bomb": {"timeout", "test_failure"},
    "delete_canary": {"test_failure", None}, "open_socket": {"test_failure"}, "print_gigabytes": {"output"},
    "include_etc": {"forbidden_construct"}, "include_huge": {"forbidden_construct"}, "compile_bomb": {"timeout", "compile"},
    "const_eval_loop": {"compile", "timeout"}, "memory_hog": {"test_failure", "timeout"},
    "build_script_attempt": {"test_failure"}, "proc_macro_attempt": {None, "compile", "test_failure"},
}


@pytest.mark.slow
def test_hostile_samples_are_contained(tmp_path):
    canary_dir = Path(tempfile.mkdtemp(prefix="rtf-canary-"))
    try:
        os.chmod(canary_dir, 0o755)  # reachable, as a user's files would be
        canary = canary_dir / "canary.txt"
        canary.write_text("alive\n")
        rows = [sample(f.stem, CLAMP, f.read_text().replace("{CANARY_DIR}", str(canary_dir)).replace("{CANARY}", str(canary)))
                for f in sorted(HOSTILE.glob("*.rs"))]
        assert set(EXPECTED) == {r["id"] for r in rows}
        rows.append(sample("after", CLAMP, CLAMP_GOOD))
        summary = evaluate_samples(rows, tmp_path, jobs=2, mutation=False, timeout=TEST_TIMEOUT, build_timeout=BUILD_TIMEOUT)
        assert canary.read_text() == "alive\n"
        records = {r["id"]: r for r in map(json.loads, (tmp_path / "samples.jsonl").read_text().splitlines())}
        for name, kinds in EXPECTED.items():
            rec = records[name]
            assert rec["failure"] in kinds, (name, rec["failure"], rec["reasons"])
            # builds, runs, coverage and clippy each stay within their limit (+ slack for a loaded machine)
            assert rec["seconds"] < 2 * BUILD_TIMEOUT + 4 * TEST_TIMEOUT + 30, (name, rec["seconds"])
        assert records["open_socket"]["failing_tests"] == ["tests::phones_home"]
        assert records["after"]["passes"] and records["after"]["failure"] is None
        assert summary["n"] == len(EXPECTED) + 1
        leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) in range(61000, 61000 + 64)]
        assert leftovers == []
    finally:
        shutil.rmtree(canary_dir, ignore_errors=True)


def _uid(proc: Path) -> int | None:
    try:
        return proc.stat().st_uid
    except OSError:
        return None
