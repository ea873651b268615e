"""The file primitives every on-disk format here is built on: atomic writes, JSONL reads, sha256, lock files.

Why our own: each is a dozen lines, and one copy means one behaviour for every format
(temp file in the same directory + `os.replace`, so a reader or a crash never sees half a
file; JSONL errors that name the file and the line).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import TrainerError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: a written file gets the mode a plain open() would give it


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write `data` to `path` through a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it owner-only
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not reach the disk before the bytes do
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def exclusive_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the `with` block.

    Each call opens its own descriptor, so the lock excludes other threads of this process as well
    as other processes: one build or conversion per key, whoever asks.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the descriptor releases the lock


def write_json_atomic(path: Path | str, data: Any) -> Path:
    """Pretty, key-sorted JSON with a final newline, written atomically."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl_atomic(path: Path | str, records: Iterable[Any], *, sort_keys: bool = False) -> Path:
    """One compact JSON value per line (UTF-8, not escaped), written atomically."""
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=sort_keys) + "\n" for r in records))


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class JsonLine:
    """One non-blank line of a JSONL file: its decoded `value`, or the `problem` that stopped it."""

    line: int
    value: Any = None
    problem: str | None = None

    def error(self, path: Path | str, problem: str | None = None) -> JsonlError:
        """`path:line: problem` (by default this line's own problem), for a reader that stops here."""
        return JsonlError(f"{path}:{self.line}: {problem or self.problem.split(': ', 1)[1]}")


class JsonlError(TrainerError):
    """A JSONL file that cannot be read: names the file and, when it is one line's fault, the line."""


def iter_jsonl(path: Path | str) -> Iterator[JsonLine]:
    """Every non-blank line of `path`, decoded or with its problem: a bad line never ends the read."""
    path = Path(path)
    if not path.is_file():
        raise JsonlError(f"{path}: file not found")
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield JsonLine(number, problem=f"line {number}: not UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
            try:
                yield JsonLine(number, value=json.loads(text))
            except json.JSONDecodeError as exc:
                yield JsonLine(number, problem=f"line {number}: malformed JSON ({exc.msg} at column {exc.colno})")


def read_jsonl(path: Path | str, limit: int | None = None) -> list[Any]:
    """The decoded lines of `path` (at most `limit`); the first bad line raises JsonlError naming it."""
    values = []
    for item in iter_jsonl(path):
        if item.problem is not None:
            raise item.error(path)
        values.append(item.value)
        if limit is not None and len(values) >= limit:
            break
    return values
