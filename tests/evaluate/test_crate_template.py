"""Which failed template builds are remembered across runs: only those cargo or rustc explained."""

from __future__ import annotations

from falsify.evaluate.crate import BuildResult
from falsify.evaluate.crate_template import failure_is_lasting
from falsify.evaluate.sandbox import Limits, RunResult

LIMITS = Limits(wall_s=60)


def build(stderr: str, returncode: int | None = 101, timed_out: bool = False) -> BuildResult:
    return BuildResult(RunResult(returncode, "", stderr, timed_out, False, 1.0), False, None, [])


def test_an_error_cargo_reported_is_remembered():
    assert failure_is_lasting(build("error: no matching package named `loom` found\nlocation searched: ..."), LIMITS)


def test_a_build_killed_from_outside_is_not_remembered():
    """The wrapper's own words when the build's processes were killed (a slot shared by two runs, the OOM killer):
    nothing cargo said, so the next run must try the crate again instead of failing it for good."""
    killed = build("   Compiling tokio v1.24.2 (/tmp/x)\nunshare: sigprocmask unblock failed: Invalid argument", returncode=1)
    assert not failure_is_lasting(killed, LIMITS)


def test_a_timeout_is_not_remembered():
    assert not failure_is_lasting(build("error: could not compile", returncode=None, timed_out=True), LIMITS)
