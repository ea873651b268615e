"""The caller's side: hand a `pytest -m tier1` run to the server, and start, stop or query it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from falsify.warm import protocol

PID_REPLY_S = 10.0  # a healthy server forks at once; a stuck one must not hang the save


def handoff(args: list[str], cwd: Path) -> int | None:
    """Run this pytest invocation in a fork of the warm server: its exit status, or None to run cold.

    Every reason to run cold is one line on stderr, with what to do about it.
    """
    path = protocol.socket_path()
    if not path.exists():
        starting = protocol.holder()
        state = f"a warm interpreter is still starting (pid {starting})" if starting else "no warm interpreter is running"
        print(f"falsify.warm: {state}; this run is cold. `{protocol.START_COMMAND}` (or `make tier1`) makes the next runs "
              "skip the imports", file=sys.stderr)
        return None
    try:
        sock = protocol.connect(path)
    except (TimeoutError, ConnectionRefusedError, OSError) as exc:
        print(f"falsify.warm: no server answers at {path} ({exc}); running cold", file=sys.stderr)
        if isinstance(exc, ConnectionRefusedError):
            path.unlink(missing_ok=True)
        return None
    fds = [fd if _is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    with sock:
        protocol.send(sock, {"op": "run", "args": args, "cwd": str(cwd), "env": dict(os.environ), "sys_path": sys.path,
                    "executable": sys.executable, "argv0": sys.argv[0] if sys.argv else "pytest",
                    "key": protocol.environment_key()}, fds)
        buffer = bytearray()
        sock.settimeout(PID_REPLY_S)
        try:
            reply, _ = protocol.receive(sock, buffer)
        except TimeoutError:
            reply = {"refused": f"no answer within {PID_REPLY_S:.0f} s"}
        sock.settimeout(None)
        if reply is None or "refused" in reply:
            why = reply["refused"] if reply else "it closed the connection"
            print(f"falsify.warm: server not used ({why}); running cold. Restart it with: {protocol.START_COMMAND}", file=sys.stderr)
            return None
        child = reply["pid"]
        forward = lambda signum, frame: protocol.send_signal(child, signum)
        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            reply, _ = protocol.receive(sock, buffer)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if reply is None:
        print(f"falsify.warm: the server died during the run (child pid {child})", file=sys.stderr)
        return 3
    code = reply["exit"]
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell reports it


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def start(idle_timeout: float, wait_s: float = 120.0) -> dict:
    """Start a server in the background (replacing one started under other conditions) and wait
    until it answers: its status, with `already_running`."""
    pid, already = _spawn(idle_timeout)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            status = protocol.request("status")
            if status["pid"] == pid:
                return status | {"already_running": already}
        except protocol.WarmError:
            pass
        if not _alive(pid):
            tail = protocol.log_path().read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise protocol.WarmError(f"the warm interpreter exited while starting: {tail[0]} (log {protocol.log_path()})")
        time.sleep(0.2)
    protocol.send_signal(pid, signal.SIGTERM)
    raise protocol.WarmError(f"the warm interpreter did not answer within {wait_s:.0f} s (log {protocol.log_path()})")


def _spawn(idle_timeout: float) -> tuple[int, bool]:
    """(the pid of the server to wait for, whether it was there already): a usable or starting
    one stays; one started under other conditions is stopped and replaced."""
    starting = protocol.holder()
    try:
        status = protocol.request("status")
    except protocol.WarmError:
        status = None
    if status is not None:
        if protocol.key_difference(status["key"], protocol.environment_key()) is None:
            return status["pid"], True
        stop()
    elif starting is not None:
        return starting, True  # another `start` got there first: wait for its server
    with open(protocol.log_path(), "wb") as log_file:  # one log a server
        proc = subprocess.Popen([sys.executable, "-m", "falsify.warm", "serve", "--idle-timeout", str(idle_timeout)],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                                cwd="/")
    return proc.pid, False


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop(wait_s: float = 10.0) -> tuple[int, bool]:
    """Stop the server and wait until it has exited (its socket gone, its lock released), so that
    a `start` right after never meets it: (its pid, whether it is still exiting)."""
    pid = protocol.request("stop")["stopped"]
    deadline = time.monotonic() + wait_s
    while (protocol.socket_path().exists() or protocol.holder() is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid, protocol.holder() is not None


def status() -> dict:
    """The server's own status, with whether this environment may use it (`usable`, `why_not`)."""
    reply = protocol.request("status")
    why = protocol.key_difference(reply["key"], protocol.environment_key())
    return reply | {"usable": why is None, "why_not": why}
