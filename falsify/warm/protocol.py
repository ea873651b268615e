"""What the caller and the server agree on: where the socket and the lock live, the environment
key that must match, and the wire format (one JSON object a line, the caller's fds alongside)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

PROJECT_PACKAGES = ("trainer", "falsify")
# Variables that libraries read while being imported: a server started under other values
# would hand out modules configured differently from a cold start, so they are part of the key.
IMPORT_TIME_ENV = ("PYTHON", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "OMP_", "MKL", "KMP_", "OPENBLAS", "TRANSFORMERS",
                   "HF_", "TOKENIZERS", "HYPOTHESIS", "LD_", "LANG", "LC_")
SERVED_MARKEXPR = "tier1"
FORKED_ENV = "FALSIFY_WARM_FORKED"  # set in a forked run: its header says so, and it never hands off again
DEFAULT_IDLE_S = 3600
START_COMMAND = "python -m falsify.warm start"


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


def log_path() -> Path:
    return socket_path().with_suffix(".log")


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


def take_lock() -> int:
    """The server's claim on this virtualenv (its fd, held until the server exits)."""
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


def server_code_hash() -> str:
    """This package's source, both sides: a server running older code is refused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def environment_key() -> dict:
    """What must match between the server and a caller for the preloaded modules to be the caller's."""
    import site

    installed = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    packages = sorted(f"{d}/{name}" for d in installed if os.path.isdir(d) for name in os.listdir(d)
                      if name.endswith((".dist-info", ".egg-info", ".pth")))  # names carry the versions
    return {"server_code": server_code_hash(),
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
                                     "server_code": " (falsify/warm/ was edited)"}.get(field, "")
    return None


def send(sock: socket.socket, obj: dict, fds: list[int] = ()) -> None:
    data = json.dumps(obj).encode() + b"\n"
    sent = socket.send_fds(sock, [data], list(fds)) if fds else 0
    if sent < len(data):  # never a zero-length send: the peer may have answered and closed already
        sock.sendall(data[sent:])


def receive(sock: socket.socket, buffer: bytearray, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    """The next JSON line (None at EOF) and the fds that came with it."""
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


def connect(path: Path, timeout: float = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    sock.settimeout(None)
    return sock


def request(op: str, **fields) -> dict:
    """A control request (status, stop) to the server of this virtualenv."""
    path = socket_path()
    try:
        sock = connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise WarmError(f"no warm interpreter is running for {sys.prefix} (socket {path})") from None
    with sock:
        send(sock, {"op": op, **fields})
        reply, _ = receive(sock, bytearray())
    if reply is None:
        raise WarmError(f"the warm interpreter at {path} closed the connection without answering")
    return reply


def send_signal(pid: int, signum: int) -> None:
    """os.kill, where a process that has already gone is not an error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
