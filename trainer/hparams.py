"""Hyperparameter diagnostics: each finding cites the rule it applies (from the seeds' playbook).

Rules are advice with a stated basis, not hard limits, except C-HP-000 (values that
cannot train at all), which is an error. The trainer logs the findings at start.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from trainer.config import Config
from trainer.errors import TrainerError

log = logging.getLogger("trainer")

RULES = {
    "C-HP-000": "learning rate > 0 and batch size >= 1 (anything else cannot train)",
    "C-HP-001": "QLoRA/LoRA learning rate about 2e-4 for models up to 13B (warn outside [5e-5, 1e-3]; tiny models may go higher)",
    "C-HP-002": "effective batch (batch x accumulation x world size) about 16 (warn outside [8, 64])",
    "C-HP-003": "LoRA alpha = 2 x rank",
    "C-HP-004": "max_seq_len not above 2 x the p99 token length of the data",
    "C-HP-006": "gradient clipping on",
    "C-HP-008": "at least 2 epochs when class imbalance exceeds 5:1",
}


@dataclass
class Finding:
    rule: str
    level: str  # ok | warn | error
    message: str


def p99(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def diagnose(cfg: Config, *, token_lengths: list[int] | None = None, class_counts: dict[str, int] | None = None,
             world_size: int = 1) -> list[Finding]:
    t, lora = cfg.training, cfg.lora
    out: list[Finding] = []

    def add(rule: str, ok: bool, message: str, level: str = "warn") -> None:
        out.append(Finding(rule, "ok" if ok else level, message))

    add("C-HP-000", t.learning_rate > 0 and t.batch_size >= 1,
        f"learning_rate={t.learning_rate}, batch_size={t.batch_size}", level="error")
    if t.mode in ("lora", "qlora"):
        small = (cfg.model.preset == "tiny")
        high = 5e-3 if small else 1e-3
        add("C-HP-001", 5e-5 <= t.learning_rate <= high,
            f"learning_rate={t.learning_rate:g} (rule: ~2e-4; accepted [5e-05, {high:g}]{' for the tiny preset' if small else ''})")
        add("C-HP-003", lora.alpha == 2 * lora.rank, f"lora.alpha={lora.alpha:g}, lora.rank={lora.rank} (rule: alpha = 2 x rank)")
    effective = t.batch_size * t.gradient_accumulation_steps * world_size
    add("C-HP-002", 8 <= effective <= 64, f"effective batch {effective} (rule: ~16)")
    if token_lengths:
        limit = 2 * p99(token_lengths)
        add("C-HP-004", cfg.data.max_seq_len <= limit,
            f"data.max_seq_len={cfg.data.max_seq_len}, 2 x p99 token length = {limit} (longer only pads)")
    add("C-HP-006", t.gradient_clipping is not None and t.gradient_clipping > 0,
        f"training.gradient_clipping={t.gradient_clipping}")
    if class_counts:  # training.task=classify passes its training-set counts; generation pairs have no classes
        ratio = max(class_counts.values()) / max(1, min(class_counts.values()))
        add("C-HP-008", ratio <= 5 or t.epochs >= 2, f"class imbalance {ratio:.1f}:1 with epochs={t.epochs}")
    return out


def enforce(cfg: Config, token_lengths: list[int], world_size: int, class_counts: dict[str, int] | None = None) -> None:
    """`diagnose` on the run's real data, as the trainer applies it at start: an error stops the run, a warning is logged."""
    for finding in diagnose(cfg, token_lengths=token_lengths, class_counts=class_counts, world_size=world_size):
        if finding.level == "error":
            raise TrainerError(f"{finding.rule} ({RULES[finding.rule]}): {finding.message}")
        if finding.level == "warn":
            log.warning("hyperparameter rule %s (%s): %s", finding.rule, RULES[finding.rule], finding.message)
