"""The server: preload the third-party libraries, then fork one child per `pytest -m tier1` run.

One selector waits on the listening socket, each caller's connection (EOF: the caller was
killed, so its run is stopped) and each child's pidfd (readable: it exited).
"""

from __future__ import annotations

import gc
import importlib
import io
import json
import locale
import os
import random
import selectors
import signal
import socket
import sys
import time
from pathlib import Path

from falsify.warm import protocol

PRELOAD = ("torch", "transformers", "transformers.models.auto.modeling_auto",
           "transformers.models.qwen2.modeling_qwen2", "transformers.models.llama.modeling_llama",
           "tokenizers", "safetensors.torch", "hypothesis", "hypothesis.strategies", "yaml", "pytest")
QUIET_REWRITE = ["-W", "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"]


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
        if ep.value.split(".")[0] not in protocol.PROJECT_PACKAGES:
            ep.load()
    import threading

    import torch

    problems = []
    if threading.active_count() != 1:
        problems.append(f"{threading.active_count()} Python threads after preloading")
    if torch.cuda.is_initialized():
        problems.append("CUDA was initialised while preloading")
    ours = sorted(n for n in sys.modules if n.split(".")[0] in protocol.PROJECT_PACKAGES and n != "falsify"
                  and not (n == "falsify.warm" or n.startswith("falsify.warm.")))
    if ours:
        problems.append(f"project modules were preloaded: {', '.join(ours)}")
    if "bitsandbytes" in sys.modules:
        problems.append("bitsandbytes was preloaded (it probes CUDA at import)")
    if problems:
        raise protocol.WarmError("cannot serve: " + "; ".join(problems))
    return {name: getattr(sys.modules[name], "__version__", "") for name in PRELOAD if "." not in name}


class Server:
    """The listening socket, the runs in flight, and what `status` reports."""

    def __init__(self, idle_timeout: float):
        self.lock_fd = protocol.take_lock()  # held until this process exits (its forks close their copy)
        key = protocol.environment_key()  # the conditions of the imports (torch itself sets variables while importing)
        started = time.time()
        versions = preload()
        gc.freeze()  # the preloaded heap is never scanned again, in this process or its children
        self.path = protocol.socket_path()
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.listener.listen(16)
        self.inode = os.stat(self.path).st_ino
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, ("listener", None))
        self.runs: dict[int, tuple[socket.socket, int, float]] = {}  # child pid -> (caller connection, pidfd, start)
        self.idle_timeout = idle_timeout
        self.stopping: list[str] = []
        self.state = {"pid": os.getpid(), "started": started, "preload_s": round(time.time() - started, 2),
                      "versions": versions, "idle_timeout_s": idle_timeout, "runs": 0, "prefix": sys.prefix,
                      "socket": str(self.path), "key": key}

    def serve(self) -> int:
        """Answer requests until stopped or idle; each run's exit status goes back to its caller."""
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.append("SIGTERM"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _log(f"ready in {self.state['preload_s']} s: " + ", ".join(f"{k} {v}" for k, v in self.state["versions"].items()))
        last_active = time.monotonic()
        try:
            while not self.stopping:
                for sel_key, _ in self.selector.select(timeout=1.0):
                    kind, pid = sel_key.data
                    if kind == "listener":
                        self._accept()
                    elif kind == "caller":  # readable means EOF: the caller was killed, its run must not go on unseen
                        self.selector.unregister(sel_key.fileobj)
                        _log(f"caller of child {pid} disconnected: terminating the run")
                        _killpg(pid, signal.SIGTERM)
                    else:
                        self._child_exited(pid)
                        last_active = time.monotonic()
                if not self.runs and time.monotonic() - last_active > self.idle_timeout:
                    self.stopping.append(f"idle for {self.idle_timeout:.0f} s")
        finally:
            for pid in self.runs:
                _killpg(pid, signal.SIGTERM)
            if _inode(self.path) == self.inode:  # still ours: a newer server may have replaced it
                self.path.unlink()
        _log(f"exiting: {self.stopping[0] if self.stopping else 'error'}")
        return 0

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            pid = self._answer(conn)
        except (OSError, ValueError) as exc:  # one caller's broken request must not stop the server
            _log(f"request failed: {exc!r}")
            pid = None
        if pid is None:
            conn.close()
            return
        pidfd = os.pidfd_open(pid)
        self.runs[pid] = (conn, pidfd, time.monotonic())
        self.selector.register(conn, selectors.EVENT_READ, ("caller", pid))
        self.selector.register(pidfd, selectors.EVENT_READ, ("child", pid))

    def _child_exited(self, pid: int) -> None:
        conn, pidfd, t0 = self.runs.pop(pid)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        _log(f"child {pid} exited with {code} after {time.monotonic() - t0:.2f} s")
        self.selector.unregister(pidfd)
        os.close(pidfd)
        if conn in self.selector.get_map():  # still registered: its caller is waiting
            self.selector.unregister(conn)
            try:
                protocol.send(conn, {"exit": code})
            except OSError:
                pass
        conn.close()

    def _answer(self, conn: socket.socket) -> int | None:
        """Answer one request; for a run, fork and return the child's pid."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
            return None
        req, fds = protocol.receive(conn, bytearray(), want_fds=3)
        if req is None:
            return None
        if req.get("op") == "status":
            protocol.send(conn, self.state | {"uptime_s": round(time.time() - self.state["started"], 1)})
            return None
        if req.get("op") == "stop":
            protocol.send(conn, {"stopped": self.state["pid"]})
            self.stopping.append("stop request")
            return None
        why = protocol.key_difference(self.state["key"], req.get("key", {})) if len(fds) == 3 else "the request carried no terminal"
        if why:
            protocol.send(conn, {"refused": f"{why}; the server was started under other conditions"})
            for fd in fds:
                os.close(fd)
            return None
        pid = os.fork()
        if pid == 0:  # the child closes what is the server's: its sockets, selector and other runs' connections
            server_fds = [conn, self.lock_fd, self.listener, self.selector, *(r[0] for r in self.runs.values()),
                          *(r[1] for r in self.runs.values())]
            _child(req, fds, server_fds, self.state)  # never returns
        try:
            os.setpgid(pid, pid)  # as the child does: whichever runs first, the run has its group before any kill
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        self.state["runs"] += 1
        _log(f"child {pid}: pytest {' '.join(req['args'])} in {req['cwd']}")
        protocol.send(conn, {"pid": pid})
        return pid


def serve(idle_timeout: float) -> int:
    return Server(idle_timeout).serve()


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _child(req: dict, fds: list[int], server_fds: list, state: dict) -> None:
    """Become the caller's pytest process: its fds, directory, environment and argv; fresh project code."""
    code = 3
    try:
        for obj in server_fds:
            obj.close() if hasattr(obj, "close") else os.close(obj)
        os.setpgid(0, 0)  # so that the server can stop this run and everything it started
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ[protocol.FORKED_ENV] = json.dumps({"pid": os.getpid(), "server": state["pid"], "preload_s": state["preload_s"],
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
    for name in [n for n in sys.modules if n.split(".")[0] in protocol.PROJECT_PACKAGES]:
        del sys.modules[name]


def _killpg(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
