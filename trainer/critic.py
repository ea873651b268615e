"""`python -m trainer critic score`: a trained test critic's class probabilities on samples, and how well it ranks.

The critic is an experiment trained with `training.task: classify` on the data of
`python -m trainer corpus critic`. Scoring reads each sample's function and tests through
`corpus.critic.critic_text` (or a critic-data row's own `text`), and adds
`"critic": {label: probability}`. With `--metrics FILE` (inputs that carry a `label`), it also
writes what the critic issue asks to see: accuracy, macro-F1 and the confusion matrix, and the
AUROC of P(good) between `good` and each bad class, with a bootstrap 95% CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from trainer.corpus.critic import critic_text
from trainer.errors import TrainerError
from trainer.files import iter_jsonl, write_atomic, write_jsonl_atomic

GOOD = "good"


class Critic:
    """A classify experiment's adapter (with its head), tokenizer and labels, ready to score texts."""

    def __init__(self, experiment: Path, checkpoint: str = "best"):
        from peft import AutoPeftModelForSequenceClassification

        from trainer.config import load_config
        from trainer.experiment import ExperimentPaths
        from trainer.generate import pick_checkpoint
        from trainer.models import load_tokenizer

        paths = ExperimentPaths(Path(experiment))
        if not paths.config.is_file():
            raise TrainerError(f"{experiment}: not an experiment directory (no config.yaml)")
        cfg = load_config(paths.config)
        if cfg.training.task != "classify":
            raise TrainerError(f"{paths.config}: training.task is {cfg.training.task!r}; a critic is a classify experiment")
        self.labels = list(cfg.classify.labels)
        self.multi_label = cfg.classify.multi_label
        self.max_seq_len = cfg.data.max_seq_len
        self.checkpoint = pick_checkpoint(paths, checkpoint)
        self.tokenizer = load_tokenizer(paths.classifier_base)
        self.model = AutoPeftModelForSequenceClassification.from_pretrained(self.checkpoint).eval()
        self.precision = cfg.training.precision  # score in the compute dtype its validation ran in (bf16 where native)

    @torch.no_grad()
    def probabilities(self, texts: list[str], batch_size: int = 8, source: str = "samples", lines: list[int] | None = None) -> np.ndarray:
        """[N, K] class probabilities (softmax; sigmoid per class for a multi-label critic), the texts encoded and
        batched as training encoded and batched its validation set."""
        from trainer.classify import collate, encode
        from trainer.data import eval_batches
        from trainer.runtime import autocast, precision

        records = [{"text": t, "classes": [], "line": n} for t, n in zip(texts, lines or range(1, len(texts) + 1))]
        examples = encode(self.tokenizer, records, self.max_seq_len, len(self.labels), True, source)
        out = []
        cpu = torch.device("cpu")
        for batch in eval_batches(examples, batch_size, self.tokenizer.pad_token_id, collate):
            with precision(self.precision), autocast(cpu):
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            out.append(torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1))
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.labels)))


def text_of(row: dict, where: str) -> str:
    """A critic-data row's `text`, or a sample's function and tests as the critic was trained to read them."""
    if isinstance(row.get("text"), str):
        return row["text"]
    code, tests = row.get("function_code"), row.get("generated_tests")
    if not isinstance(code, str) or not isinstance(tests, str):
        raise TrainerError(f"{where}: a sample needs string fields 'function_code' and 'generated_tests' (or a critic-data 'text')")
    return critic_text(code, tests)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half (Mann-Whitney U / n1 n2)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative)))


def auroc_ci(positive: np.ndarray, negative: np.ndarray, resamples: int = 2000, seed: int = 0) -> list[float]:
    """Bootstrap 95% CI of `auroc`, each side resampled with replacement on its own."""
    rng = np.random.default_rng(seed)
    values = sorted(auroc(rng.choice(positive, len(positive)), rng.choice(negative, len(negative))) for _ in range(resamples))
    return [values[int(0.025 * resamples)], values[int(0.975 * resamples) - 1]]


def ranking_metrics(labels: list[str], names: list[str], probs: np.ndarray) -> dict:
    """Accuracy, macro-F1, per class, the confusion matrix; AUROC of P(good), good vs each other class present."""
    from trainer.classify import classification_metrics

    index = {n: i for i, n in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise TrainerError(f"labels {unknown} are not the critic's ({', '.join(labels)})")
    true = np.array([index[n] for n in names])
    out = {"rows": len(names), **classification_metrics(true, probs.argmax(axis=1), labels, False), "auroc_good_vs": {}}
    if GOOD in index:
        p_good = probs[:, index[GOOD]]
        pos = p_good[true == index[GOOD]]
        for bad in labels:
            neg = p_good[true == index[bad]]
            if bad != GOOD and len(pos) and len(neg):
                out["auroc_good_vs"][bad] = {"auroc": auroc(pos, neg), "ci95": auroc_ci(pos, neg), "n_good": len(pos), "n_other": len(neg)}
    return out


def score_file(experiment: Path, samples: Path, out: Path, *, checkpoint: str = "best", metrics: Path | None = None,
               batch_size: int = 8) -> dict | None:
    """`out`: each sample with `critic` added; `metrics` (when asked): ranking_metrics over the labelled rows."""
    rows = []
    for item in iter_jsonl(samples):
        if item.problem is not None:
            raise item.error(samples)
        if not isinstance(item.value, dict):
            raise item.error(samples, "expected a JSON object")
        rows.append((item.line, item.value))
    critic = Critic(experiment, checkpoint)
    probs = critic.probabilities([text_of(row, f"{samples}:{line}") for line, row in rows], batch_size, str(samples),
                                 [line for line, _ in rows])
    write_jsonl_atomic(out, [{**row, "critic": dict(zip(critic.labels, map(float, p)))} for (_, row), p in zip(rows, probs)])
    if metrics is None:
        return None
    missing = [line for line, row in rows if not isinstance(row.get("label"), str)]
    if missing:
        raise TrainerError(f"{samples}:{missing[0]}: --metrics needs a 'label' on every row ({len(missing)} rows lack one)")
    result = {"experiment": str(experiment), "checkpoint": str(critic.checkpoint), "samples": str(samples),
              **ranking_metrics(critic.labels, [row["label"] for _, row in rows], probs)}
    write_atomic(metrics, json.dumps(result, indent=1))
    return result


def main(argv: list[str]) -> int:
    """`critic score ...` (argv after `critic`)."""
    parser = argparse.ArgumentParser(prog="python -m trainer critic")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("score", help="add the critic's class probabilities to each sample")
    p.add_argument("--experiment", required=True, type=Path, help="a training.task=classify experiment")
    p.add_argument("--samples", required=True, type=Path, help="JSONL: samples (function_code, generated_tests) or critic-data rows (text)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--checkpoint", default="best", help="best | last | step-N")
    p.add_argument("--metrics", type=Path, help="also write accuracy, macro-F1 and AUROC of good vs each class here (rows need 'label')")
    p.add_argument("--batch-size", type=int, default=8)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        result = score_file(args.experiment, args.samples, args.out, checkpoint=args.checkpoint, metrics=args.metrics,
                            batch_size=args.batch_size)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {args.out}")
    if result is not None:
        aurocs = ", ".join(f"{k} {v['auroc']:.3f} ({v['ci95'][0]:.3f}-{v['ci95'][1]:.3f})" for k, v in result["auroc_good_vs"].items())
        print(f"accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}; AUROC good vs: {aurocs}; wrote {args.metrics}")
    return 0
