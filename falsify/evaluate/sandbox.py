"""Run one untrusted command: no network, unprivileged, resource-limited, time- and output-capped.

Layers, each closing a hole the others leave open:
- `unshare --net --mount --pid --fork`: a network namespace with no interface up (no
  sockets reach anything), a private mount table (so the toolchain can be bind-mounted
  where the sandbox user can read it) and a PID namespace (when its first process dies,
  the kernel kills every process left in it).
- `setpriv` to a per-slot unprivileged uid with no capabilities and no-new-privs: root
  ignores RLIMIT_NPROC and can delete anything, so nothing untrusted runs as root. Each
  parallel slot gets its own uid so one sample's fork bomb cannot starve another's.
- `prlimit`: CPU seconds, address space, file size, open files, processes.
- here: a wall-clock deadline and an output cap (pipes read in chunks; the first
  `output_bytes` are kept and the run is killed once it exceeds them); on the way out
  every process still owned by the slot's uid is killed.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SANDBOX_UID_BASE = 61000  # slot k runs as uid/gid 61000 + k (no passwd entry needed)

# Mounts `src dst` pairs given as arguments up to `--`, then execs the rest.
_MOUNT_SCRIPT = 'while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; shift; exec "$@"'


@dataclass(frozen=True)
class Limits:
    wall_s: float = 60.0
    cpu_s: int = 60
    memory_bytes: int = 4 << 30
    file_bytes: int = 512 << 20
    open_files: int = 1024
    processes: int = 256
    output_bytes: int = 1 << 20


@dataclass
class RunResult:
    returncode: int | None      # None when the harness killed it
    stdout: str
    stderr: str
    timed_out: bool
    output_exceeded: bool
    seconds: float
    disk_exceeded: bool = False  # the run wrote more than its directory's cap (reason `disk_limit`)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_exceeded and not self.disk_exceeded

    def problem(self, limits: Limits) -> str | None:
        """A one-line reason when the harness had to stop the run, else None."""
        if self.timed_out:
            return f"timeout after {limits.wall_s:g} s wall time"
        if self.output_exceeded:
            return f"output exceeded {limits.output_bytes} bytes; killed"
        if self.disk_exceeded:
            return "disk limit: the run wrote more than its directory's cap"
        return None


def sandbox_uid(slot: int) -> int:
    return SANDBOX_UID_BASE + slot


def command_line(argv: list[str], *, uid: int, limits: Limits, binds: tuple[tuple[Path, Path], ...] = ()) -> list[str]:
    """The full wrapper command (exposed so tests and docs can show exactly what runs)."""
    cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "--propagation", "private", "--"]
    if binds:
        cmd += ["/bin/sh", "-c", _MOUNT_SCRIPT, "sh"]
        for src, dst in binds:
            cmd += [str(src), str(dst)]
        cmd += ["--"]
    cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]
    cmd += ["prlimit", f"--cpu={limits.cpu_s}", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}", f"--nproc={limits.processes}", "--core=0", "--"]
    # A shell stays PID 1 of the namespace: the kernel shields a namespace's init from
    # signals it has no handler for, which would change how a crashing test dies.
    cmd += ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
    return cmd + [str(a) for a in argv]


def run_sandboxed(argv: list[str], *, cwd: Path, uid: int, limits: Limits, env: dict[str, str],
                  binds: tuple[tuple[Path, Path], ...] = ()) -> RunResult:
    """Run `argv` in `cwd` as `uid` under the limits; never raises for what the command does."""
    cmd = command_line(argv, uid=uid, limits=limits, binds=binds)
    _kill_everything(None, uid)  # leftovers of an earlier run in this slot would eat its process quota
    private_tmp = Path(tempfile.mkdtemp(prefix=f"rtf-tmp-{uid}-"))  # TMPDIR: the linker's and the tests' temp files
    os.chown(private_tmp, uid, uid)
    try:
        return _run(cmd, cwd=cwd, uid=uid, limits=limits, env={**env, "TMPDIR": str(private_tmp)})
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)  # after every process of the uid is gone: nothing stays behind


def _run(cmd: list[str], *, cwd: Path, uid: int, limits: Limits, env: dict[str, str]) -> RunResult:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    timed_out = exceeded = False
    deadline = start + limits.wall_s
    with selectors.DefaultSelector() as sel:
        for stream in bufs:
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map() and not exceeded:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(remaining, 0.5)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fileobj]
                room = limits.output_bytes - len(buf)
                buf += chunk[:max(room, 0)]
                if len(chunk) > room:
                    exceeded = True
    if not (timed_out or exceeded):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
    _kill_everything(proc, uid)
    returncode = None if (timed_out or exceeded) else proc.returncode
    for stream in bufs:
        stream.close()
    return RunResult(returncode, bufs[proc.stdout].decode("utf-8", "replace"),
                     bufs[proc.stderr].decode("utf-8", "replace"), timed_out, exceeded,
                     time.monotonic() - start)


def _kill_everything(proc: subprocess.Popen | None, uid: int) -> None:
    """Kill the wrapper's process group, then every process the sandbox uid still owns."""
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for _ in range(50):  # a fork bomb keeps spawning until its parents are gone
        victims = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] is not None and p.info["uids"].real == uid]
        if not victims:
            break
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        time.sleep(0.01)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
