"""The live metric store: SQLite in WAL mode, written by the trainer, read by the monitor.

WAL lets a reader hold a snapshot while the writer appends, so the monitor never blocks
training; each write is one short transaction, so a kill of either side leaves a store
that opens and reads (the last complete transaction wins).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
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
"""


class MetricStore:
    """Writer side. One connection, owned by the training process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.set_meta(schema_version=SCHEMA_VERSION)

    def _write(self, sql: str, params: tuple) -> None:
        with self.db:  # one short transaction
            self.db.execute(sql, params)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('updated_at', ?)", (json.dumps(time.time()),))

    def set_meta(self, **values: Any) -> None:
        with self.db:
            for key, value in values.items():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('updated_at', ?)", (json.dumps(time.time()),))

    def log_step(self, step: int, epoch: float, loss: float, lr: float, grad_norm: float, tokens: int, tokens_per_s: float, wall_time: float) -> None:
        self._write("INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?,?)",
                    (step, epoch, loss, lr, grad_norm, tokens, tokens_per_s, wall_time, time.time()))

    def log_eval(self, step: int, val_loss: float) -> None:
        self._write("INSERT OR REPLACE INTO evals VALUES (?,?,?)", (step, val_loss, time.time()))

    def log_sample(self, step: int, input_text: str, target: str, generated: str) -> None:
        self._write("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?)", (step, input_text, target, generated, time.time()))

    def log_hardware(self, **values: float | None) -> None:
        cols = ("cpu_percent", "ram_used_mb", "ram_total_mb", "gpu_util", "vram_used_mb", "vram_total_mb", "gpu_temp_c")
        self._write("INSERT OR REPLACE INTO hardware VALUES (?,?,?,?,?,?,?,?)", (time.time(), *(values.get(c) for c in cols)))

    def truncate_after(self, step: int) -> None:
        """On resume: rows past the checkpoint are replayed, so drop them first."""
        with self.db:
            for table in ("steps", "evals", "samples"):
                self.db.execute(f"DELETE FROM {table} WHERE step > ?", (step,))

    def loss_curve(self) -> list[tuple[int, float]]:
        return [tuple(r) for r in self.db.execute("SELECT step, loss FROM steps ORDER BY step")]

    def eval_curve(self) -> list[tuple[int, float]]:
        return [tuple(r) for r in self.db.execute("SELECT step, val_loss FROM evals ORDER BY step")]

    def close(self) -> None:
        self.db.close()
