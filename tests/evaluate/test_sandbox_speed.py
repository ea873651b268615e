"""The cheaper per-run bookkeeping of the sandbox keeps what the dearer one guaranteed (no timing asserted here).

- The uid's processes are found by the real uid in /proc/<pid>/status, not by who owns the files there: those of a
  non-dumpable process show as root's, and it must still be found and killed.
- A kill goes through a pidfd and checks the uid again, so a pid that now belongs to another user is not hit.
- The uid's state dir is kept between runs: one dir per uid, and a run's disk account never leaks into the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from falsify.evaluate.run import claimed_uid
from falsify.evaluate.sandbox import (
    STATE_ROOT,
    Limits,
    _kill_everything,
    _kill_pid,
    _uid_processes,
    run_sandboxed,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

MB = 1 << 20
NON_DUMPABLE = "import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); print('ready', flush=True); time.sleep(60)"


@pytest.fixture
def uid() -> Iterator[int]:
    with claimed_uid() as claimed:
        yield claimed


def _as_uid(uid: int, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv],
                            stdout=subprocess.PIPE, text=True)


def test_a_non_dumpable_process_of_the_uid_is_found_and_killed(uid):
    proc = _as_uid(uid, [sys.executable, "-c", NON_DUMPABLE])
    try:
        assert proc.stdout.readline() == "ready\n"
        assert os.stat(f"/proc/{proc.pid}/status").st_uid == 0  # why owners of files under /proc cannot be trusted
        assert proc.pid in _uid_processes(uid)
        _kill_everything(None, uid)
        assert proc.wait(timeout=5) == -9 and _uid_processes(uid) == []
    finally:
        proc.kill()
        proc.wait()


def test_a_pid_of_another_uid_is_not_killed(uid):
    other = subprocess.Popen(["sleep", "30"])  # root's: as if the pid had been reused since the scan
    try:
        _kill_pid(other.pid, uid)
        time.sleep(0.1)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_state_dir_is_kept_per_uid_and_a_full_disk_does_not_leak_into_the_next_run(tmp_path, uid):
    os.chmod(tmp_path, 0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chown(run_dir, uid, uid)
    limits = Limits(wall_s=20, disk_bytes=1 * MB, file_bytes=8 * MB)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(run_dir)}

    def run(script: str):
        return run_sandboxed(["/bin/sh", "-c", script], cwd=run_dir, uid=uid, limits=limits, env=env, scratch=(run_dir,))

    before = set(os.listdir(STATE_ROOT)) if STATE_ROOT.exists() else set()
    full = run("head -c 2000000 /dev/zero > big; echo done")
    assert full.disk_exceeded
    after = set(os.listdir(STATE_ROOT))
    assert after - before <= {str(uid)} and (STATE_ROOT / str(uid)).is_dir()
    light = run("rm -f big; echo small > x")
    assert light.ok and not light.disk_exceeded and (run_dir / "x").read_text() == "small\n"
    assert set(os.listdir(STATE_ROOT)) == after
    state = STATE_ROOT / str(uid)
    assert (state / "status").stat().st_uid == 0 and (state.stat().st_mode & 0o077) == 0
    assert not any((state / "real").iterdir().__next__().iterdir())  # the host's mount points stay empty
    assert not list((state / "disk").iterdir())
