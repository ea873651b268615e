"""Run one untrusted command: no network, unprivileged, resource-limited, time-, output- and disk-capped.

Layers, each closing a hole the others leave open:
- `unshare --net --mount`: a network namespace whose only interface is its own loopback (a
  test may serve and call 127.0.0.1 within the run; nothing outside is reachable) and a
  private mount table, set up by a root script (`_root_script`) before
  anything untrusted runs: the toolchain bind-mounted where the sandbox user can read it;
  fresh size-limited tmpfs on /tmp, /var/tmp and /dev/shm (what the run writes there
  vanishes with the namespace; the host's entries the run needs are bound back in); with
  `writable`, every host filesystem read-only except those dirs; with `scratch`, those
  dirs on one tmpfs of `disk_bytes` (their contents carried in before, back after the run).
- `unshare --pid --fork` inside it: when the command's shell (PID 1 there) exits, the kernel
  kills every process left in its namespace, daemons included, before the root script goes on.
- `setpriv` to a per-slot unprivileged uid with no capabilities and no-new-privs: root
  ignores RLIMIT_NPROC and can delete anything, so nothing untrusted runs as root. Each
  parallel slot gets its own uid so one sample's fork bomb cannot starve another's.
- `prlimit`: CPU seconds, address space, file size, open files, processes.
- here: a wall-clock deadline and an output cap (pipes read in chunks; the first
  `output_bytes` are kept and the run is killed once it exceeds them); the disk cap read from
  what the root script wrote where only root can; on the way out every process still owned by
  the slot's uid is killed (found by the real uid in /proc/<pid>/status, signalled through a
  pidfd taken before the uid is checked again, so a reused pid is never hit).
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID_BASE = 61000  # slot k runs as uid/gid 61000 + k (no passwd entry needed)
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # each a fresh tmpfs of `tmp_bytes` in the run
STATE_ROOT = Path("/run/rtf-sandbox")  # root-only: one state dir per uid (outside PRIVATE_TMP, so never hidden)
SETUP_FAILED = 97  # the root script's exit status when a mount fails
_KERNEL_FS = (Path("/proc"), Path("/sys"), Path("/dev"))  # never remounted read-only


@dataclass(frozen=True)
class Limits:
    wall_s: float = 60.0
    cpu_s: int = 60
    memory_bytes: int = 4 << 30
    file_bytes: int = 512 << 20
    open_files: int = 1024
    processes: int = 256
    output_bytes: int = 1 << 20
    tmp_bytes: int = 64 << 20     # each of /tmp, /var/tmp, /dev/shm (a build's linker needs under 4 KiB: README)
    disk_bytes: int = 256 << 20   # the `scratch` dirs of a run together (reason `disk_limit`)


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
            return f"disk limit: the run filled its {limits.disk_bytes >> 20} MiB of writable space ({limits.disk_bytes} bytes)"
        return None


def sandbox_uid(slot: int) -> int:
    return SANDBOX_UID_BASE + slot


def command_line(script: str) -> list[str]:
    """The full wrapper command around the root script (exposed so tests and docs can show exactly what runs)."""
    return ["unshare", "--net", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"]


def confined_command(argv: list[str], *, uid: int, limits: Limits) -> list[str]:
    """What the root script runs once the mounts are in place: the command, unprivileged, in its own PID namespace."""
    cmd = ["unshare", "--pid", "--fork", "--kill-child", "--"]
    cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]
    cmd += ["prlimit", f"--cpu={limits.cpu_s}", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}", f"--nproc={limits.processes}", "--core=0", "--"]
    # A shell stays PID 1 of the namespace: the kernel shields a namespace's init from
    # signals it has no handler for, which would change how a crashing test dies.
    cmd += ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
    return cmd + [str(a) for a in argv]


@dataclass(frozen=True)
class Mounts:
    """What the root script mounts for one run (see run_sandboxed)."""

    binds: tuple[tuple[Path, Path], ...] = ()
    writable: tuple[Path, ...] | None = None
    scratch: tuple[Path, ...] = ()


def run_sandboxed(argv: list[str], *, cwd: Path, uid: int, limits: Limits, env: dict[str, str],
                  binds: tuple[tuple[Path, Path], ...] = (), writable: tuple[Path, ...] | None = None,
                  scratch: tuple[Path, ...] = ()) -> RunResult:
    """Run `argv` in `cwd` as `uid` under the limits; never raises for what the command does.

    `writable`: every host filesystem is read-only to the run except these dirs (None: as permissions allow).
    `scratch`: dirs the run may write although read-only around them (so `writable` defaults to none), all on one
    tmpfs of `limits.disk_bytes`: filling it ends the run with `disk_exceeded`.
    """
    mounts = Mounts(binds, () if scratch and writable is None else writable, scratch)
    _kill_everything(None, uid)  # leftovers of an earlier run in this slot would eat its process quota
    state = _state_dir(uid, len(scratch))
    os.truncate(state / "status", 0)  # this run's disk account, written by root alone; an earlier run's is gone
    script = _root_script(confined_command(argv, uid=uid, limits=limits), cwd=cwd, limits=limits, env=env,
                          mounts=mounts, state=state)
    result = _run(command_line(script), cwd=Path("/"), uid=uid, limits=limits, env={**env, "TMPDIR": "/tmp"})
    result.disk_exceeded = _filled(state / "status")
    return result


def _state_dir(uid: int, n_scratch: int) -> Path:
    """The uid's state dir, kept between runs (a slot runs one command at a time: see run.claim_slots).

    It holds only empty mount points (`real/<k>`, `disk`: the run mounts on them inside its own mount namespace,
    so the host's copies stay empty) and the status file, emptied before each run; root's alone, out of the
    sandbox's reach.
    """
    state = STATE_ROOT / str(uid)
    if not ((state / "real" / str(max(n_scratch - 1, 0))).is_dir() and (state / "status").is_file()):
        STATE_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
        state.mkdir(mode=0o700, exist_ok=True)
        (state / "real").mkdir(mode=0o700, exist_ok=True)
        for k in range(max(n_scratch, 1)):
            (state / "real" / str(k)).mkdir(mode=0o700, exist_ok=True)
        (state / "disk").mkdir(mode=0o700, exist_ok=True)
        (state / "status").touch(mode=0o600)
    return state


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def _root_script(inner: list[str], *, cwd: Path, limits: Limits, env: dict[str, str], mounts: Mounts, state: Path) -> str:
    """The shell script root runs in the new mount namespace: mounts, the command, then the disk account."""
    fail = f" || exit {SETUP_FAILED}"
    # loopback only: a test may talk to itself on 127.0.0.1 (tokio's net tests do); nothing else is reachable
    lines = [f"ip link set lo up{fail}"]
    lines += [f"mount --bind {_q(src)} {_q(dst)}{fail}" for src, dst in mounts.binds]
    lines += _scratch_setup(mounts.scratch, limits, state)
    if mounts.writable is not None:
        lines += [f"mount --rbind {_q(w)} {_q(w)}{fail}" for w in mounts.writable]  # keeps the binds under it
        lines += [f"mount -o remount,bind,ro {_q(m)}{fail}" for m in _host_rw_mounts()]
    needed = [cwd, *mounts.scratch, *(mounts.writable or ()), *(p for pair in mounts.binds for p in pair),
              *_absolute_paths(env.values()), *_absolute_paths(inner)]
    lines += _private_tmp(needed, limits)
    lines += [f"cd {_q(cwd)}{fail}", "rc=0", " ".join(map(_q, inner)) + " || rc=$?"]
    if mounts.scratch:  # every process of the command is gone (its PID namespace died with its shell)
        lines.append(f"stat -f -c '%b %f %c %d' {_q(state / 'disk')} > {_q(state / 'status')}")
        for k in range(len(mounts.scratch)):
            real, disk = state / "real" / str(k), state / "disk" / str(k)
            lines += [f"find {_q(real)} -mindepth 1 -delete", f"cp -a {_q(disk)}/. {_q(real)}/"]
    return "\n".join([*lines, 'exit "$rc"'])


def _scratch_setup(scratch: tuple[Path, ...], limits: Limits, state: Path) -> list[str]:
    """One tmpfs of `disk_bytes` under `state`; each scratch dir's contents copied onto it and it bound over the dir."""
    if not scratch:
        return []
    fail = f" || exit {SETUP_FAILED}"
    disk = state / "disk"
    lines = [f"mount --bind {_q(state)} {_q(state)}{fail}",
             f"mount -t tmpfs -o {_tmpfs_options(limits.disk_bytes, '0700')} rtf-disk {_q(disk)}{fail}"]
    for k, path in enumerate(scratch):
        real, copy = state / "real" / str(k), disk / str(k)
        # `cp -a real copy` makes `copy` (absent) a copy of the dir itself: its contents, owner and mode
        lines += [f"mount --bind {_q(path)} {_q(real)}{fail}", f"cp -a {_q(real)} {_q(copy)}{fail}",
                  f"mount --bind {_q(copy)} {_q(path)}{fail}"]
    return lines


def _tmpfs_options(size: int, mode: str) -> str:
    size = max(size, 4096)  # tmpfs reads size=0 as "no limit"
    return f"size={size},nr_inodes={max(1024, size >> 14)},mode={mode}"


def _private_tmp(needed: list[Path], limits: Limits) -> list[str]:
    """A fresh tmpfs on each of PRIVATE_TMP; the host's entries the run names (its crate, say) are bound back in.

    Each such entry is opened before the tmpfs hides it and bound from the open descriptor.
    """
    fail = f" || exit {SETUP_FAILED}"
    lines = []
    for tmp in PRIVATE_TMP:
        if not tmp.is_dir() or tmp.is_symlink():
            continue
        entries = sorted({tmp / p.relative_to(tmp).parts[0] for p in needed if p.is_relative_to(tmp) and p != tmp})
        entries = [e for e in entries if e.exists()][:7]  # descriptors 3 to 9
        lines += [f"exec {3 + i}<{_q(e)}{fail}" for i, e in enumerate(entries)]
        lines.append(f"mount -t tmpfs -o {_tmpfs_options(limits.tmp_bytes, '1777')} rtf-tmp {_q(tmp)}{fail}")
        for i, e in enumerate(entries):
            lines += [("mkdir " if e.is_dir() else "touch ") + _q(e) + fail,
                      f"mount -c --rbind /proc/self/fd/{3 + i} {_q(e)}{fail}", f"exec {3 + i}<&-"]
    return lines


def _absolute_paths(values) -> list[Path]:
    return [Path(part) for v in values for part in str(v).split(":") if part.startswith("/")]


def _host_rw_mounts() -> list[str]:
    """The host's writable mount points, but the kernel's (/proc, /sys, /dev): read-only in a confined run."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = Path(fields[4].encode().decode("unicode_escape"))
        if "rw" in fields[5].split(",") and not any(point == k or point.is_relative_to(k) for k in _KERNEL_FS):
            found.append(str(point))
    return list(dict.fromkeys(found))


def _filled(status: Path) -> bool:
    """Whether the run's scratch tmpfs ended full (no block or no inode left), as root measured it."""
    try:
        blocks, free, inodes, free_inodes = (int(x) for x in status.read_text().split())
    except (OSError, ValueError):
        return False
    return blocks > 0 and (free == 0 or free_inodes == 0)


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


def _uid_processes(uid: int) -> list[int]:
    """The pids whose real uid is `uid`, read from /proc/<pid>/status (who owns the files under /proc/<pid> would
    not do: those of a process that makes itself non-dumpable show as root's)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _real_uid(name) == uid:
            found.append(int(name))
    return found


def _real_uid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            data = f.read()
    except OSError:  # gone
        return None
    at = data.find(b"\nUid:")
    return int(data[at + 5:].split(None, 1)[0]) if at >= 0 else None


def _kill_pid(pid: int, uid: int) -> None:
    """SIGKILL `pid` if it still runs as `uid`: the pidfd pins the process, then its uid is checked again."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone
        return
    try:
        if _real_uid(str(pid)) == uid:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _kill_everything(proc: subprocess.Popen | None, uid: int) -> None:
    """Kill the wrapper's process group, then every process the sandbox uid still owns."""
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for _ in range(50):  # a fork bomb keeps spawning until its parents are gone
        victims = _uid_processes(uid)
        if not victims:
            break
        for pid in victims:
            _kill_pid(pid, uid)
        time.sleep(0.01)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
