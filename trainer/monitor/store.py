"""The live metric store: SQLite in WAL mode, written by the trainer, read by the monitor.

WAL lets a reader hold a snapshot while the writer appends, so the monitor never blocks
training; each write is one short transaction, so a kill of either side leaves a store
that opens and reads (the last complete transaction wins). The schema version lives in
`PRAGMA user_version`, set in the same transaction that creates the tables: version 0
means "nothing written yet", never a half-made schema.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import TrainerError

SCHEMA_VERSION = 1  # bump on any incompatible change; StoreReader refuses other versions
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY, epoch REAL, loss REAL, lr REAL, grad_norm REAL,
    tokens INTEGER, tokens_per_s REAL, wall_time REAL, ts REAL);
CREATE TABLE IF NOT EXISTS evals (step INTEGER PRIMARY KEY, val_loss REAL, ts REAL);
CREATE TABLE IF NOT EXISTS samples (
    step INTEGER PRIMARY KEY, input TEXT, target TEXT, generated TEXT, ts REAL);
CREATE TABLE IF NOT EXISTS hardware (
    ts REAL PRIMARY KEY, cpu_percent REAL, ram_used_mb REAL, ram_total_mb REAL,
    gpu_util REAL, vram_used_mb REAL, vram_total_mb REAL, gpu_temp_c REAL);
CREATE TABLE IF NOT EXISTS eval_metrics (step INTEGER PRIMARY KEY, metrics TEXT NOT NULL, ts REAL);
"""
# eval_metrics (a classifier's accuracy, F1, ... as JSON per evaluation) came after version 1 without a bump: it is an
# added table, so older readers ignore it, this reader treats a store without it as having none, and the writer adds it.
_EVAL_METRICS_SQL = "SELECT step, metrics FROM eval_metrics ORDER BY step"
# The run's curves, read by the trainer at the end of a run and by the readers after it.
_LOSS_CURVE_SQL = "SELECT step, loss FROM steps ORDER BY step"
_EVAL_CURVE_SQL = "SELECT step, val_loss FROM evals ORDER BY step"


class MetricStore:
    """Writer side. One connection, owned by the training process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise TrainerError(f"{self.path}: metric store schema version {version} is newer than this trainer "
                               f"writes ({SCHEMA_VERSION}); use a newer trainer or a fresh experiment directory")
        # Tables and version in one transaction: readers see all or nothing. Run on every open (IF NOT EXISTS): a store
        # written before eval_metrics existed gets it when a run resumes there.
        self.db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        # host (with the pid the trainer records) lets a monitor on this machine tell "trainer died" from "trainer is slow"
        self.set_meta(schema_version=SCHEMA_VERSION, host=socket.gethostname())

    def _write(self, sql: str, params: tuple) -> None:
        with self.db:  # one short transaction
            self.db.execute(sql, params)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('updated_at', ?)", (json.dumps(time.time()),))

    def set_meta(self, **values: Any) -> None:
        with self.db:
            for key, value in values.items():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('updated_at', ?)", (json.dumps(time.time()),))

    def hardware_due(self, every: float = 2.0) -> bool:
        """Hardware telemetry on the wall clock (every 2 s), whatever a step takes."""
        now = time.monotonic()
        if now - getattr(self, "_hardware_at", -float("inf")) < every:
            return False
        self._hardware_at = now
        return True

    def sample_due(self, step: int, sample_steps: int, eval_steps: int, min_interval: float = 60.0) -> bool:
        """Whether to log a sample peek now. sample_steps > 0: every that many steps. 0 (the
        default): at an evaluation step, once `min_interval` seconds have passed since the
        last peek or the start, so a long run shows a fresh sample about once a minute and
        short runs (tests) pay nothing for generation."""
        if sample_steps:
            return step % sample_steps == 0
        now = time.monotonic()
        last = getattr(self, "_sample_at", None)
        if last is None:
            last = self._sample_at = now
        if step % eval_steps or now - last < min_interval:
            return False
        self._sample_at = now
        return True

    def end_run(self, status: str, stop_reason: str | None) -> None:
        """Record how the run ended. Called from the loop's `finally`: an exception still
        propagating there means the run failed, whatever `status` the loop had reached."""
        exc = sys.exc_info()[1]
        if exc is not None:
            status, stop_reason = "failed", f"{type(exc).__name__}: {exc}"
        self.set_meta(status=status, stop_reason=stop_reason, finished_at=time.time())

    def log_step(self, step: int, epoch: float, loss: float, lr: float, grad_norm: float, tokens: int, tokens_per_s: float,
                 wall_time: float) -> None:
        self._write("INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?,?)",
                    (step, epoch, loss, lr, grad_norm, tokens, tokens_per_s, wall_time, time.time()))

    def log_eval(self, step: int, val_loss: float) -> None:
        self._write("INSERT OR REPLACE INTO evals VALUES (?,?,?)", (step, val_loss, time.time()))

    def log_eval_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        """An evaluation's metrics beyond the loss (a classifier's: trainer.classify.classification_metrics), as JSON."""
        self._write("INSERT OR REPLACE INTO eval_metrics VALUES (?,?,?)", (step, json.dumps(metrics), time.time()))

    def log_sample(self, step: int, input_text: str, target: str, generated: str) -> None:
        self._write("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?)", (step, input_text, target, generated, time.time()))

    def log_hardware(self, **values: float | None) -> None:
        cols = ("cpu_percent", "ram_used_mb", "ram_total_mb", "gpu_util", "vram_used_mb", "vram_total_mb", "gpu_temp_c")
        self._write("INSERT OR REPLACE INTO hardware VALUES (?,?,?,?,?,?,?,?)", (time.time(), *(values.get(c) for c in cols)))

    def truncate_after(self, step: int) -> None:
        """On resume: rows past the checkpoint are replayed, so drop them first."""
        with self.db:
            for table in ("steps", "evals", "samples", "eval_metrics"):
                self.db.execute(f"DELETE FROM {table} WHERE step > ?", (step,))

    def loss_curve(self) -> list[tuple[int, float]]:
        return self.db.execute(_LOSS_CURVE_SQL).fetchall()

    def eval_curve(self) -> list[tuple[int, float]]:
        return self.db.execute(_EVAL_CURVE_SQL).fetchall()

    def eval_metrics(self) -> list[tuple[int, dict[str, Any]]]:
        return [(step, json.loads(text)) for step, text in self.db.execute(_EVAL_METRICS_SQL)]

    def close(self) -> None:
        self.db.close()


class StoreError(TrainerError):
    """The store cannot be read (corrupt, locked, other schema): `<path>: <problem>`."""


STEP_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "wall_time", "ts")
HARDWARE_COLUMNS = ("ts", "cpu_percent", "ram_used_mb", "ram_total_mb", "gpu_util", "vram_used_mb", "vram_total_mb", "gpu_temp_c")


@dataclass
class StoreSnapshot:
    """What one short read transaction saw. `steps` holds only rows after the caller's `after_step`."""

    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple] = field(default_factory=list)  # rows in STEP_COLUMNS order
    last_step: int = 0  # MAX(step): below what the caller has seen means a resume rewound the run
    evals: list[tuple[int, float]] = field(default_factory=list)
    sample: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    eval_metrics: dict[str, Any] | None = None  # the latest evaluation's metrics beyond the loss, with its "step"; None: none


class StoreReader:
    """Reader side, for the monitor: a read-only connection that never blocks the writer.

    `mode=ro` means the monitor cannot write (or checkpoint) the trainer's database; each
    `read` is one short transaction, so the WAL the writer appends to is never pinned for
    long. A busy store fails fast (`timeout`) instead of queueing behind a lock.
    """

    def __init__(self, path: Path, timeout: float = 0.5):
        self.path = Path(path)
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            problem = f"metric store is locked by another process ({text}); the trainer never holds it locked, so another tool does"
        elif "not a database" in text or "malformed" in text or "corrupt" in text:
            problem = f"corrupt metric store ({text})"
        else:
            problem = f"cannot read metric store ({text})"
        return StoreError(f"{self.path}: {problem}")

    def schema_version(self) -> int | None:
        """The store's schema version; None while the trainer has not created the schema yet.

        Raises StoreError for a version this reader does not understand, so the caller shows
        one clear line instead of misreading columns.
        """
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            has_tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] > 0
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if version == SCHEMA_VERSION:
            return version
        if version == 0 and not has_tables:
            return None
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: metric store schema version {version} is newer than this monitor reads "
                             f"({SCHEMA_VERSION}); upgrade the trainer package")
        raise StoreError(f"{self.path}: metric store schema version {version} is older than this monitor reads "
                         f"({SCHEMA_VERSION}); re-run the training with this trainer to get a readable store")

    def changed(self) -> bool:
        """True when another connection committed since the last call (PRAGMA data_version: no table reads)."""
        try:
            version = self.db.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        changed, self._data_version = version != getattr(self, "_data_version", None), version
        return changed

    def read(self, after_step: int = 0) -> StoreSnapshot:
        """One consistent snapshot (a single read transaction, a handful of indexed queries)."""
        snap = StoreSnapshot()
        try:
            self.db.execute("BEGIN")
            try:
                raw_meta = dict(self.db.execute("SELECT key, value FROM meta"))
                snap.steps = self.db.execute(
                    f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE step > ? ORDER BY step", (after_step,)).fetchall()
                snap.last_step = self.db.execute("SELECT COALESCE(MAX(step), 0) FROM steps").fetchone()[0]
                snap.evals = self.db.execute(_EVAL_CURVE_SQL).fetchall()
                row = self.db.execute("SELECT step, input, target, generated, ts FROM samples ORDER BY step DESC LIMIT 1").fetchone()
                snap.sample = dict(zip(("step", "input", "target", "generated", "ts"), row)) if row else None
                row = self.db.execute(f"SELECT {', '.join(HARDWARE_COLUMNS)} FROM hardware ORDER BY ts DESC LIMIT 1").fetchone()
                snap.hardware = dict(zip(HARDWARE_COLUMNS, row)) if row else None
                row = None
                if self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='eval_metrics'").fetchone():
                    row = self.db.execute("SELECT step, metrics FROM eval_metrics ORDER BY step DESC LIMIT 1").fetchone()
            finally:
                self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        for key, value in raw_meta.items():
            try:
                snap.meta[key] = json.loads(value)
            except (TypeError, json.JSONDecodeError):
                raise StoreError(f"{self.path}: corrupt metric store (meta value for {key!r} is not JSON)") from None
        if row is not None:
            try:
                snap.eval_metrics = {"step": row[0], **json.loads(row[1])}
            except (TypeError, json.JSONDecodeError):
                raise StoreError(f"{self.path}: corrupt metric store (eval_metrics of step {row[0]} is not JSON)") from None
        return snap

    def curves(self) -> RunCurves:
        """The whole run's curves in one read transaction: what reports and checks read after a run."""
        try:
            self.db.execute("BEGIN")
            try:
                loss = self.db.execute(_LOSS_CURVE_SQL).fetchall()
                evals = self.db.execute(_EVAL_CURVE_SQL).fetchall()
                peak = self.db.execute("SELECT MAX(vram_used_mb) FROM hardware").fetchone()[0]
            finally:
                self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return RunCurves(loss, evals, peak)

    def close(self) -> None:
        self.db.close()


@dataclass
class RunCurves:
    """A finished (or running) run's loss and validation curves and its peak VRAM reading."""

    loss: list[tuple[int, float]]
    evals: list[tuple[int, float]]
    peak_vram_mb: float | None

    @property
    def last_step(self) -> int:
        return self.loss[-1][0] if self.loss else 0


def read_curves(path: Path) -> RunCurves:
    """Open, read and close: the curves of the store at `path` (StoreError names the file on failure)."""
    reader = StoreReader(path)
    try:
        return reader.curves()
    finally:
        reader.close()


def last_step(path: Path) -> int:
    """The newest step in the store at `path`; 0 while it is missing, has no schema yet, or cannot be read.

    For watchers of a run that may still be starting (benchmarks, tests, checks).
    """
    if not Path(path).exists():
        return 0
    try:
        reader = StoreReader(path)
        try:
            return reader.read().last_step if reader.schema_version() else 0
        finally:
            reader.close()
    except StoreError:
        return 0
