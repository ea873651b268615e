"""What a sandboxed run leaves on the host: nothing of its uid in the temp dirs, no process, no more than its disk cap.

Calls sandbox.run_sandboxed directly (no cargo): a shell stands in for the test binary.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from falsify.evaluate.run import claimed_uid
from falsify.evaluate.sandbox import PRIVATE_TMP, Limits, RunResult, run_sandboxed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

MB = 1 << 20
LIMITS = Limits(wall_s=20, tmp_bytes=64 * MB, disk_bytes=8 * MB, file_bytes=64 * MB)
WORLD_WRITABLE = (*PRIVATE_TMP, Path("/run/lock"))  # where any uid may create files on a stock host


@pytest.fixture
def uid() -> Iterator[int]:
    with claimed_uid() as claimed:
        yield claimed


@pytest.fixture
def sample_dir(tmp_path: Path, uid: int) -> Path:
    """A sample's directory as Workspace.prepare leaves it: root's, with the uid's run and profile dirs."""
    os.chmod(tmp_path, 0o755)
    for sub in ("run", "prof"):
        (tmp_path / sub).mkdir()
        os.chown(tmp_path / sub, uid, uid)
    return tmp_path


def _run_test(script: str, sample_dir: Path, uid: int, limits: Limits = LIMITS) -> RunResult:
    """Like libtest.run_test_binary: cwd run/, profiles in prof/, the two the only writable dirs."""
    return run_sandboxed(["/bin/sh", "-c", script], cwd=sample_dir / "run", uid=uid, limits=limits,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(sample_dir / "run")},
                         scratch=(sample_dir / "run", sample_dir / "prof"))


def _owned_by(uid: int, roots: tuple[Path, ...], *, outside: Path, newer: Path) -> list[str]:
    """Files of `uid` under `roots` changed after `newer` was (a killed evaluator's older leftovers are not this run's)."""
    found = subprocess.run(["find", *map(str, roots), "-xdev", "-uid", str(uid), "-newer", str(newer)],
                           capture_output=True, text=True).stdout
    return [p for p in found.splitlines() if not Path(p).is_relative_to(outside)]


def test_files_written_to_the_temp_dirs_do_not_outlive_the_run(sample_dir, uid, tmp_path_factory):
    writes = "; ".join(f"head -c {50 * MB} /dev/zero > {d}/rtf-leak-$$ && stat -c %s {d}/rtf-leak-$$" for d in PRIVATE_TMP)
    started = tmp_path_factory.mktemp("started") / "marker"
    started.write_text("")
    time.sleep(0.01)
    run = _run_test(writes, sample_dir, uid)
    assert run.returncode == 0 and run.stdout.split() == [str(50 * MB)] * 3, (run.stdout, run.stderr)
    pytest_dirs = tmp_path_factory.getbasetemp().parent  # earlier tests' sample dirs, the uid's by design
    assert _owned_by(uid, WORLD_WRITABLE, outside=pytest_dirs, newer=started) == []


def test_temp_dirs_are_size_limited(sample_dir, uid):
    run = _run_test(f"head -c {40 * MB} /dev/zero > /tmp/a && head -c {40 * MB} /dev/zero > /tmp/b", sample_dir, uid)
    assert run.returncode != 0 and "No space left on device" in run.stderr


def test_writing_past_the_disk_cap_ends_as_disk_limit(sample_dir, uid):
    run = _run_test(f"head -c {5 * MB} /dev/zero > a; head -c {5 * MB} /dev/zero > ../prof/b", sample_dir, uid)
    assert run.disk_exceeded and not run.ok
    assert "8 MiB" in run.problem(LIMITS)
    written = sum(f.stat().st_size for d in ("run", "prof") for f in (sample_dir / d).iterdir())
    assert written <= LIMITS.disk_bytes


def test_a_run_within_the_cap_keeps_what_it_wrote_for_the_next(sample_dir, uid):
    first = _run_test("echo ran > marker && echo p > ../prof/p.profraw", sample_dir, uid)
    assert first.ok and not first.disk_exceeded, first.stderr
    assert (sample_dir / "prof" / "p.profraw").read_text() == "p\n"
    second = _run_test("cat marker", sample_dir, uid)
    assert second.stdout == "ran\n"


def test_the_rest_of_the_host_is_read_only(sample_dir, uid):
    (sample_dir / "src").mkdir()
    os.chown(sample_dir / "src", uid, uid)  # the uid's own, yet outside the run's scratch dirs
    run = _run_test("touch ../src/x /run/lock/rtf-x ok", sample_dir, uid)
    assert run.stderr.count("Read-only file system") == 2, run.stderr
    assert not (sample_dir / "src" / "x").exists() and (sample_dir / "run" / "ok").exists()


def test_a_daemon_does_not_outlive_the_run(sample_dir, uid):
    daemon = "(setsid sh -c 'sleep 60; touch late' </dev/null >/dev/null 2>&1 &); echo started"
    start = time.monotonic()
    run = _run_test(daemon, sample_dir, uid)
    assert run.stdout == "started\n" and time.monotonic() - start < 10
    survivors = [p.info["pid"] for p in psutil.process_iter(["pid", "uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    assert survivors == []


def test_a_disk_limit_below_one_mib_is_exit_2(tmp_path, capsys):
    from falsify.evaluate.__main__ import main

    samples = tmp_path / "samples.jsonl"
    samples.write_text("")
    assert main(["--samples", str(samples), "--out", str(tmp_path / "out"), "--disk-limit-mb", "0"]) == 2
    assert "--disk-limit-mb must be at least 1" in capsys.readouterr().err


def test_a_run_reaches_its_own_loopback_and_nothing_else(sample_dir, uid):
    """Honest tests serve and call 127.0.0.1 (tokio's net tests); the namespace's loopback is theirs alone."""
    serve_and_call = ("python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
                      "c = socket.create_connection(s.getsockname(), timeout=2); print('loopback ok')\"; "
                      "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\" 2>&1 | tail -1")
    run = _run_test(serve_and_call, sample_dir, uid)
    assert run.stdout.splitlines()[0] == "loopback ok", (run.stdout, run.stderr)
    assert "unreachable" in run.stdout.splitlines()[-1], run.stdout
