"""A warm interpreter for `pytest -m tier1`: third-party libraries preloaded, one fork per run.

Why it exists: tier 1 must finish within 5 s on a 2-core machine, but importing torch and
transformers costs about 4.5 s and tearing the interpreter down another second, and no
on-disk cache can hold an import. `python -m falsify.warm start` starts a background
process that imports torch, transformers, tokenizers, hypothesis and pytest (never this
project's code, which changes on every save) and waits. `pytest -m tier1`, finding it, hands
over its arguments, directory, environment and terminal; the server forks, and the child
runs `pytest.main` as a fresh process would, importing trainer/ and falsify/ from disk.
The child's exit status becomes the run's exit status.

This is the zygote pattern (Android, Ruby's Spring). multiprocessing's forkserver preloads
modules too, but it lives only as long as its parent, and a pytest run is a new process.
A `pytest -m tier1` that finds no server runs cold and starts one in the background for the
next run, saying so (FALSIFY_WARM=0: never; FALSIFY_WARM=use: use one, never start one).
It is visible: the run's header says it was forked; a server whose packages or import-time
environment differ from the caller's refuses, says why, and the run goes cold.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import hashlib
import importlib
import io
import json
import locale
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOADED_IN_PID = os.getpid()  # a test compares it with the pid that runs the tests (fresh import)
PRELOAD = ("torch", "transformers", "transformers.models.auto.modeling_auto",
           "transformers.models.qwen2.modeling_qwen2", "transformers.models.llama.modeling_llama",
           "tokenizers", "safetensors.torch", "hypothesis", "hypothesis.strategies", "yaml", "pytest")
PROJECT_PACKAGES = ("trainer", "falsify")
# Variables that libraries read while being imported: a server started under other values
# would hand out modules configured differently from a cold start, so they are part of the key.
IMPORT_TIME_ENV = ("PYTHON", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "OMP_", "MKL", "KMP_", "OPENBLAS", "TRANSFORMERS",
                   "HF_", "TOKENIZERS", "HYPOTHESIS", "LD_", "LANG", "LC_")
SERVED_MARKEXPR = "tier1"
FORKED_ENV = "FALSIFY_WARM_FORKED"  # set in a forked run: its header says so, and it never hands off again
DEFAULT_IDLE_S = 3600
PID_REPLY_S = 10.0
STARTING_WAIT_S = 60.0  # a caller waits this long for a server that is still preloading
QUIET_REWRITE = ["-W", "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"]


class WarmError(Exception):
    """A user-facing problem with the warm interpreter (printed as one line)."""


def socket_path() -> Path:
    """One server per virtualenv, in a private directory (FALSIFY_WARM_DIR overrides, for tests)."""
    root = Path(os.environ.get("FALSIFY_WARM_DIR") or f"/tmp/falsify-warm-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root / (hashlib.sha256(sys.prefix.encode()).hexdigest()[:16] + ".sock")


def lock_path() -> Path:
    """Held (flock) by a server from its first instant to its exit: "starting or serving"."""
    return socket_path().with_suffix(".lock")


def holder() -> int | None:
    """The pid of the server that holds this virtualenv's lock (still preloading, or serving), else None."""
    try:
        fd = os.open(lock_path(), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it
    except BlockingIOError:
        return int(os.read(fd, 32) or b"0")
    finally:
        os.close(fd)


def _take_lock() -> int:
    fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode() or "?"
        os.close(fd)
        raise WarmError(f"a warm interpreter is already running for {sys.prefix} (pid {pid}); stop it first") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def environment_key() -> dict:
    """What must match between the server and a caller for the preloaded modules to be the caller's."""
    import site

    installed = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    packages = sorted(f"{d}/{name}" for d in installed if os.path.isdir(d) for name in os.listdir(d)
                      if name.endswith((".dist-info", ".egg-info", ".pth")))  # names carry the versions
    return {"server_code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16],  # this file, both sides
            "python": os.path.realpath(sys.executable), "version": sys.version, "prefix": sys.prefix, "flags": repr(sys.flags),
            "warnoptions": list(sys.warnoptions),
            "packages": hashlib.sha256("\n".join(packages).encode()).hexdigest()[:16],
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(IMPORT_TIME_ENV)}}


def key_difference(mine: dict, theirs: dict) -> str | None:
    """A short reason why two keys differ, or None."""
    for field in sorted(set(mine) | set(theirs)):
        if mine.get(field) == theirs.get(field):
            continue
        if field == "env" and field in mine and field in theirs:
            names = sorted(k for k in set(mine["env"]) | set(theirs["env"]) if mine["env"].get(k) != theirs["env"].get(k))
            return "environment variables differ: " + ", ".join(names)
        return f"{field} differs" + {"packages": " (packages were installed or upgraded)",
                                     "server_code": " (falsify/warm.py was edited)"}.get(field, "")
    return None


# --- framing: one JSON object a line; the request carries the caller's stdin/stdout/stderr -------------

def _send(sock: socket.socket, obj: dict, fds: list[int] = ()) -> None:
    data = json.dumps(obj).encode() + b"\n"
    sent = socket.send_fds(sock, [data], list(fds)) if fds else 0
    if sent < len(data):  # never a zero-length send: the peer may have answered and closed already
        sock.sendall(data[sent:])


def _recv(sock: socket.socket, buffer: bytearray, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    fds: list[int] = []
    while b"\n" not in buffer:
        if want_fds and not fds:
            chunk, fds, _, _ = socket.recv_fds(sock, 65536, want_fds)
        else:
            chunk = sock.recv(65536)
        if not chunk:
            return None, fds
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line), fds


def _connect(path: Path, timeout: float = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    sock.settimeout(None)
    return sock


def request(op: str, **fields) -> dict:
    """A control request (status, stop) to the server of this virtualenv."""
    path = socket_path()
    try:
        sock = _connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise WarmError(f"no warm interpreter is running for {sys.prefix} (socket {path})") from None
    with sock:
        _send(sock, {"op": op, **fields})
        reply, _ = _recv(sock, bytearray())
    if reply is None:
        raise WarmError(f"the warm interpreter at {path} closed the connection without answering")
    return reply


# --- the caller's side (called from the pytest plugin) ------------------------------------------------

def handoff(args: list[str], cwd: Path, restarting: bool = False) -> int | None:
    """Run this pytest invocation in a fork of the warm server; None when there is none to use.

    None means: run cold, in this process. Every reason except "no server" is printed
    (`restarting`: the caller replaces a stale server itself, so no hint to do it by hand).
    """
    path = socket_path()
    if not path.exists() and not _wait_until_serving(path):
        return None
    try:
        sock = _connect(path)
    except (TimeoutError, ConnectionRefusedError, OSError) as exc:
        print(f"falsify.warm: no server answers at {path} ({exc}); running cold", file=sys.stderr)
        if isinstance(exc, ConnectionRefusedError):
            path.unlink(missing_ok=True)
        return None
    fds = [fd if _is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    with sock:
        _send(sock, {"op": "run", "args": args, "cwd": str(cwd), "env": dict(os.environ), "sys_path": sys.path,
                     "executable": sys.executable, "argv0": sys.argv[0] if sys.argv else "pytest",
                     "key": environment_key()}, fds)
        buffer = bytearray()
        sock.settimeout(PID_REPLY_S)  # a healthy server forks at once; a stuck one must not hang the save
        try:
            reply, _ = _recv(sock, buffer)
        except TimeoutError:
            reply = {"refused": f"no answer within {PID_REPLY_S:.0f} s"}
        sock.settimeout(None)
        if reply is None or "refused" in reply:
            why = reply["refused"] if reply else "it closed the connection"
            print(f"falsify.warm: server not used ({why}); running cold"
                  + ("" if restarting else ". Restart it with: python -m falsify.warm start"), file=sys.stderr)
            return None
        child = reply["pid"]
        forward = lambda signum, frame: send_signal(child, signum)
        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            reply, _ = _recv(sock, buffer)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if reply is None:
        print(f"falsify.warm: the server died during the run (child pid {child})", file=sys.stderr)
        return 3
    code = reply["exit"]
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell reports it


def _wait_until_serving(path: Path) -> bool:
    """A server still preloading (it holds the lock, its socket is not there yet) is worth waiting for."""
    pid = holder()
    if pid is None:
        return False
    print(f"falsify.warm: waiting for the warm interpreter to finish starting (pid {pid})", file=sys.stderr)
    deadline = time.monotonic() + STARTING_WAIT_S
    while not path.exists():
        if holder() is None or time.monotonic() > deadline:
            print(f"falsify.warm: it did not start within {STARTING_WAIT_S:.0f} s (log {path.with_suffix('.log')}); "
                  "running cold", file=sys.stderr)
            return False
        time.sleep(0.1)
    return True


def start_for_next_run() -> None:
    """`pytest -m tier1` found no usable server: start one in the background (it preloads while
    this run goes cold), so that the next run is warm."""
    try:
        pid, _ = spawn(DEFAULT_IDLE_S)
    except (OSError, WarmError) as exc:
        print(f"falsify.warm: could not start a warm interpreter ({exc}); runs stay cold", file=sys.stderr)
        return
    print(f"falsify.warm: this run is cold; a warm interpreter is starting in the background (pid {pid}, log "
          f"{socket_path().with_suffix('.log')}) for the next `pytest -m {SERVED_MARKEXPR}`. "
          "FALSIFY_WARM=0 turns this off; `python -m falsify.warm stop` stops it.", file=sys.stderr)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def send_signal(pid: int, signum: int) -> None:
    """os.kill, where a process that has already gone is not an error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# --- the server ----------------------------------------------------------------------------------------

def preload() -> dict[str, str]:
    """Import the third-party libraries, then refuse to serve if anything makes forking unsafe."""
    for name in PRELOAD:
        importlib.import_module(name)
    # Pure-Python tables transformers builds on its first from_pretrained (about 0.1 s): built once here.
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    get_checkpoint_conversion_mapping("qwen2")
    from importlib.metadata import entry_points

    import _pytest.config

    for name in _pytest.config.default_plugins:
        importlib.import_module(f"_pytest.{name}")
    for ep in entry_points(group="pytest11"):
        if ep.value.split(".")[0] not in PROJECT_PACKAGES:
            ep.load()
    import threading

    import torch

    problems = []
    if threading.active_count() != 1:
        problems.append(f"{threading.active_count()} Python threads after preloading")
    if torch.cuda.is_initialized():
        problems.append("CUDA was initialised while preloading")
    ours = sorted(n for n in sys.modules if n.split(".")[0] in PROJECT_PACKAGES and n not in ("falsify", "falsify.warm"))
    if ours:
        problems.append(f"project modules were preloaded: {', '.join(ours)}")
    if "bitsandbytes" in sys.modules:
        problems.append("bitsandbytes was preloaded (it probes CUDA at import)")
    if problems:
        raise WarmError("cannot serve: " + "; ".join(problems))
    return {name: getattr(sys.modules[name], "__version__", "") for name in PRELOAD if "." not in name}


def serve(idle_timeout: float) -> int:
    """Preload, then answer requests until stopped or idle; each run's exit status goes back to its caller.

    One selector waits on the listening socket, each caller's connection (EOF: the caller was
    killed, so its run is stopped) and each child's pidfd (readable: it exited).
    """
    lock_fd = _take_lock()  # held until this process exits (its forks close their copy)
    key = environment_key()  # the conditions of the imports (torch itself sets variables while importing)
    started = time.time()
    versions = preload()
    preload_s = round(time.time() - started, 2)
    gc.freeze()  # the preloaded heap is never scanned again, in this process or its children
    path = socket_path()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    inode = os.stat(path).st_ino
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("listener", None))
    runs: dict[int, tuple[socket.socket, int, float]] = {}  # child pid -> (caller connection, pidfd, start)
    state = {"pid": os.getpid(), "started": started, "preload_s": preload_s, "versions": versions,
             "idle_timeout_s": idle_timeout, "runs": 0, "prefix": sys.prefix, "socket": str(path), "key": key}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _log(f"ready in {preload_s} s: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    last_active = time.monotonic()
    try:
        while not stopping:
            for sel_key, _ in selector.select(timeout=1.0):
                kind, pid = sel_key.data
                if kind == "listener":
                    conn, _ = listener.accept()
                    try:
                        server_fds = [lock_fd, listener, selector, *(r[0] for r in runs.values()), *(r[1] for r in runs.values())]
                        pid = _handle(conn, state, server_fds)
                    except (OSError, ValueError) as exc:  # one caller's broken request must not stop the server
                        _log(f"request failed: {exc!r}")
                        pid = None
                    if pid is None:
                        conn.close()
                        if state.get("stop"):
                            stopping.append("stop request")
                        continue
                    pidfd = os.pidfd_open(pid)
                    runs[pid] = (conn, pidfd, time.monotonic())
                    selector.register(conn, selectors.EVENT_READ, ("caller", pid))
                    selector.register(pidfd, selectors.EVENT_READ, ("child", pid))
                elif kind == "caller":  # readable means EOF: the caller was killed, its run must not go on unseen
                    selector.unregister(sel_key.fileobj)
                    _log(f"caller of child {pid} disconnected: terminating the run")
                    _killpg(pid, signal.SIGTERM)
                else:
                    conn, pidfd, t0 = runs.pop(pid)
                    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    _log(f"child {pid} exited with {code} after {time.monotonic() - t0:.2f} s")
                    selector.unregister(pidfd)
                    os.close(pidfd)
                    if conn in selector.get_map():  # still registered: its caller is waiting
                        selector.unregister(conn)
                        try:
                            _send(conn, {"exit": code})
                        except OSError:
                            pass
                    conn.close()
                    last_active = time.monotonic()
            if not runs and time.monotonic() - last_active > idle_timeout:
                stopping.append(f"idle for {idle_timeout:.0f} s")
    finally:
        for pid in runs:
            _killpg(pid, signal.SIGTERM)
        if _inode(path) == inode:  # still ours: a newer server may have replaced it
            path.unlink()
    _log(f"exiting: {stopping[0] if stopping else 'error'}")
    return 0


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _handle(conn: socket.socket, state: dict, server_fds: list) -> int | None:
    """Answer one request; for a run, fork and return the child's pid (the child closes `server_fds`)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
        return None
    req, fds = _recv(conn, bytearray(), want_fds=3)
    if req is None:
        return None
    if req.get("op") == "status":
        _send(conn, {k: v for k, v in state.items() if k != "stop"} | {"uptime_s": round(time.time() - state["started"], 1)})
        return None
    if req.get("op") == "stop":
        _send(conn, {"stopped": state["pid"]})
        state["stop"] = True
        return None
    why = key_difference(state["key"], req.get("key", {})) if len(fds) == 3 else "the request carried no terminal"
    if why:
        _send(conn, {"refused": f"{why}; the server was started under other conditions"})
        for fd in fds:
            os.close(fd)
        return None
    pid = os.fork()
    if pid == 0:
        _child(req, fds, [conn, *server_fds], state)  # never returns
    try:
        os.setpgid(pid, pid)  # as the child does: whichever runs first, the run has its group before any kill
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    state["runs"] += 1
    _log(f"child {pid}: pytest {' '.join(req['args'])} in {req['cwd']}")
    _send(conn, {"pid": pid})
    return pid


def _child(req: dict, fds: list[int], server_fds: list, state: dict) -> None:
    """Become the caller's pytest process: its fds, directory, environment and argv; fresh project code."""
    code = 3
    try:
        for obj in server_fds:  # the server's sockets, selector and other runs' connections are not this run's
            obj.close() if hasattr(obj, "close") else os.close(obj)
        os.setpgid(0, 0)  # so that the server can stop this run and everything it started
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ[FORKED_ENV] = json.dumps({"pid": os.getpid(), "server": state["pid"], "preload_s": state["preload_s"],
                                             "preloaded": list(state["versions"])})
        sys.argv = [req.get("argv0", "pytest"), *req["args"]]
        sys.executable = req.get("executable", sys.executable)  # the same interpreter (the key compares real paths)
        sys.path[:] = req["sys_path"]
        _reopen_stdio()
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        reseed()
        purge_project_modules()
        import pytest

        code = int(pytest.main([*QUIET_REWRITE, *req["args"]]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        import atexit

        atexit._run_exitfuncs()  # temp-dir finalizers and the like, then skip the slow teardown
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def reseed() -> None:
    """A fresh process draws new seeds (torch too, since 2.x); forks would share the server's."""
    import numpy
    import torch

    random.seed()
    numpy.random.seed()
    torch.seed()


def _reopen_stdio() -> None:
    encoding = locale.getpreferredencoding(False)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    for fd, name, errors in ((1, "stdout", "strict"), (2, "stderr", "backslashreplace")):
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=encoding, errors=errors,
                                  line_buffering=True, write_through=fd == 2)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def purge_project_modules() -> None:
    """Forget this project's modules (the server's own code included): the run imports them from disk."""
    for name in [n for n in sys.modules if n.split(".")[0] in PROJECT_PACKAGES]:
        del sys.modules[name]


def _killpg(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- command line ----------------------------------------------------------------------------------------

def spawn(idle_timeout: float) -> tuple[int, bool]:
    """Start a server in the background, replacing a stale one: (its pid, whether it was there already).

    A new one is still preloading when this returns.
    """
    starting = holder()
    try:
        status = request("status")
    except WarmError:
        status = None
    if status is not None:
        if key_difference(status["key"], environment_key()) is None:
            return status["pid"], True
        request("stop")
        _wait_gone(Path(status["socket"]))
    elif starting is not None:
        return starting, True
    path = socket_path()
    with open(path.with_suffix(".log"), "wb") as log_file:  # one log a server
        proc = subprocess.Popen([sys.executable, "-m", "falsify.warm", "serve", "--idle-timeout", str(idle_timeout)],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                                cwd="/")
    return proc.pid, False


def start(idle_timeout: float, wait_s: float = 120.0) -> dict:
    """Start a server in the background (replacing a stale one) and wait until it answers."""
    pid, already = spawn(idle_timeout)
    log = socket_path().with_suffix(".log")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            status = request("status")
            if status["pid"] == pid:
                return status | {"already_running": already}
        except WarmError:
            pass
        if not _alive(pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise WarmError(f"the warm interpreter exited while starting: {tail[0]} (log {log})")
        time.sleep(0.2)
    send_signal(pid, signal.SIGTERM)
    raise WarmError(f"the warm interpreter did not answer within {wait_s:.0f} s (log {log})")


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


def _wait_gone(path: Path, wait_s: float = 10.0) -> None:
    """Until the stopped server's socket is gone and its lock released (it has exited)."""
    deadline = time.monotonic() + wait_s
    while (path.exists() or holder() is not None) and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falsify.warm",
                                     description="A warm interpreter that makes `pytest -m tier1` skip the torch/transformers imports.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start it in the background (replaces a stale one)")
    p_serve = sub.add_parser("serve", help="run it in the foreground")
    for p in (p_start, p_serve):
        p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_S, metavar="S",
                       help=f"exit after S seconds without a run (default {DEFAULT_IDLE_S})")
    p_status = sub.add_parser("status", help="is it running, and would this environment use it")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("stop", help="stop it")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args.idle_timeout)
        if args.command == "start":
            status = start(args.idle_timeout)
            verb = "already running" if status.get("already_running") else f"started in {status['preload_s']} s"
            print(f"warm interpreter {verb}: pid {status['pid']}, preloaded "
                  + ", ".join(f"{k} {v}".strip() for k, v in status["versions"].items())
                  + f"; serves `pytest -m {SERVED_MARKEXPR}` from {status['prefix']}; exits after "
                  f"{status['idle_timeout_s']:.0f} s idle")
            return 0
        if args.command == "stop":
            pid = request("stop")["stopped"]
            _wait_gone(socket_path())  # so that a `start` right after never meets the exiting server
            print(f"stopped warm interpreter pid {pid}" + ("" if holder() is None else " (it is still exiting)"))
            return 0
        status = request("status")
        why = key_difference(status["key"], environment_key())
        if args.json:
            print(json.dumps(status | {"usable": why is None, "why_not": why}, indent=2))
        else:
            print(f"warm interpreter pid {status['pid']}, up {status['uptime_s']:.0f} s, {status['runs']} runs, "
                  f"preloaded in {status['preload_s']} s; " + ("usable from this environment" if why is None else f"NOT usable: {why}"))
        return 0
    except WarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from falsify import warm  # run as the module falsify.warm, not a second copy named __main__

    sys.exit(warm.main())
