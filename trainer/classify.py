"""Sequence classification (`training.task: classify`): labelled texts, class weights, the loss and the eval metrics.

Data are JSONL, one text per line: `{"text": str, "label": "<name>"}` (single-label) or
`{"text": str, "labels": ["<name>", ...]}` (multi-label, `classify.multi_label: true`),
the names taken from `classify.labels`. A bad line is an error naming the file, the line
and the field, like the generation data's (trainer.data.load_jsonl).

The model (trainer.models, `classifier=True`) is the decoder with a linear head `score`
on the hidden state of the last non-pad token: transformers pools at the rightmost token
that is not `config.pad_token_id`, so batches are right-padded with exactly that id
(`collate`) and a text must not end in it (`encode`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainer.config import ClassifyConfig, Config
from trainer.data import BatchStream, TrainingData, eval_batches
from trainer.errors import TrainerError
from trainer.files import iter_jsonl
from trainer.hparams import enforce
from trainer.runtime import autocast

log = logging.getLogger("trainer")

# ------------------------------------------------------------------------------- data


def load_records(path: str | Path, limit: int | None = None, *, classes: ClassifyConfig) -> list[dict]:
    """`{"text", "classes", "line"}` per record: `classes` holds label indices into `classes.labels`."""
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"data file not found: {path}")
    index = {name: i for i, name in enumerate(classes.labels)}
    known = ", ".join(classes.labels)
    field, other = ("labels", "label") if classes.multi_label else ("label", "labels")
    records = []
    for item in iter_jsonl(path):
        if item.problem is not None:
            raise item.error(path)
        value = item.value
        if not isinstance(value, dict):
            raise item.error(path, f"expected a JSON object with 'text' and '{field}', got {type(value).__name__}")
        text = value.get("text")
        if not isinstance(text, str) or not text:
            got = "it is missing" if "text" not in value else f"got {text!r}"
            raise item.error(path, f"field 'text' must be a non-empty string ({got})")
        if field not in value:
            hint = (f"; the record has '{other}': set classify.multi_label={str(not classes.multi_label).lower()} "
                    f"if the data are {'multi' if other == 'labels' else 'single'}-label") if other in value else ""
            raise item.error(path, f"field '{field}' is missing{hint}")
        names = value[field] if classes.multi_label else [value[field]]
        if classes.multi_label and not isinstance(names, list):
            raise item.error(path, f"field 'labels' must be a list of label names, got {type(names).__name__}")
        for name in names:
            if not isinstance(name, str):
                raise item.error(path, f"field '{field}' must hold label names (strings), got {name!r} ({type(name).__name__})")
            if name not in index:
                raise item.error(path, f"field '{field}': unknown label {name!r} (classify.labels: {known})")
        if len(set(names)) != len(names):
            raise item.error(path, f"field 'labels' names a label twice: {names}")
        records.append({"text": text, "classes": sorted(index[n] for n in names), "line": item.line})
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise TrainerError(f"{path}: no records")
    return records


def class_counts(records: list[dict], labels: Sequence[str]) -> dict[str, int]:
    """Examples per class (multi-label: records where the class is positive), every label listed."""
    counts = dict.fromkeys(labels, 0)
    for rec in records:
        for i in rec["classes"]:
            counts[labels[i]] += 1
    return counts


def inverse_frequency_weights(counts: Sequence[int]) -> list[float]:
    """Per-class weights w_c = N / (K * n_c): inverse frequency, normalised so that the count-weighted mean weight is 1.

    n_c is class c's count, N = sum_c n_c, K the number of classes. Then sum_c n_c * w_c = N,
    i.e. sum_c n_c * w_c / sum_c n_c == 1: over the training set the weighted loss has the
    scale of the unweighted one, while every class contributes the same total weight (N / K).
    Every count must be positive (an absent class has no finite inverse frequency).
    """
    if not counts or any(n <= 0 for n in counts):
        raise ValueError(f"inverse-frequency weights need a positive count for every class, got {list(counts)}")
    total, k = sum(counts), len(counts)
    return [total / (k * n) for n in counts]


def class_weights(counts: dict[str, int], mode: str) -> list[float] | None:
    """`classify.class_weights` from the training-set counts: auto -> `inverse_frequency_weights`; none -> None (all 1)."""
    if mode == "none":
        return None
    absent = [name for name, n in counts.items() if n == 0]
    if absent:
        raise TrainerError(f"classify.class_weights=auto: label(s) {', '.join(absent)} have no training examples in data.train, "
                           "so they have no inverse frequency; add examples, remove the label(s), or set classify.class_weights=none")
    return inverse_frequency_weights(list(counts.values()))


@dataclass
class ClassExample:
    input_ids: list[int]
    target: int | list[float]  # single-label: the class index; multi-label: a 0/1 indicator per class


def encode(tokenizer, records: list[dict], max_seq_len: int, n_classes: int, multi_label: bool, source: str) -> list[ClassExample]:
    """Token ids of each text (truncated to `max_seq_len`, no special tokens added) and its target."""
    pad = tokenizer.pad_token_id
    if pad is None:
        raise TrainerError("training.task=classify: the tokenizer has no pad token; the classifier pools at the last non-pad "
                           "token, so it needs one")
    examples = []
    for rec in records:
        ids = tokenizer.encode(rec["text"], add_special_tokens=False)[:max_seq_len]
        if ids[-1] == pad:
            raise TrainerError(f"{source}:{rec['line']}: the text ends in the pad token {tokenizer.pad_token!r}; the classifier "
                               "pools at the last non-pad token, so it would read an earlier one")
        target = [1.0 if i in rec["classes"] else 0.0 for i in range(n_classes)] if multi_label else rec["classes"][0]
        examples.append(ClassExample(ids, target))
    return examples


def leaked_texts(train_records: list[dict], val_records: list[dict]) -> list[int]:
    """Lines of validation records whose text (whitespace aside) is also a training text: label leakage."""
    seen = {" ".join(r["text"].split()) for r in train_records}
    return [r["line"] for r in val_records if " ".join(r["text"].split()) in seen]


def build_data(cfg: Config, tokenizer, train_records: list[dict], val_records: list[dict], world_size: int) -> TrainingData:
    """Refuse leaked validation texts; encode the texts, weigh the classes by their training counts, check the
    hyperparameter rules, batch."""
    t, d, c = cfg.training, cfg.data, cfg.classify
    leaked = leaked_texts(train_records, val_records)
    if leaked:
        raise TrainerError(f"{d.validation}:{leaked[0]}: {len(leaked)} validation text(s) also occur in the training data {d.train}; "
                           "the validation metrics would measure memory. Split by crate (python -m trainer corpus critic does)")
    train_examples = encode(tokenizer, train_records, d.max_seq_len, len(c.labels), c.multi_label, d.train)
    val_examples = encode(tokenizer, val_records, d.max_seq_len, len(c.labels), c.multi_label, d.validation)
    counts = class_counts(train_records, c.labels)
    weights = class_weights(counts, c.class_weights)
    log.info("classes (training examples): %s; loss weights: %s", ", ".join(f"{k} {n}" for k, n in counts.items()),
             "none" if weights is None else ", ".join(f"{k} {w:.3f}" for k, w in zip(c.labels, weights)))
    enforce(cfg, [len(e.input_ids) for e in train_examples], world_size, counts)
    stream = BatchStream(train_examples, t.batch_size, t.seed, tokenizer.pad_token_id, collate_fn=collate)
    return TrainingData(stream, eval_batches(val_examples, t.batch_size, tokenizer.pad_token_id, collate), val_records,
                        len(train_examples), len(val_examples), 0, weights)


def collate(examples: list[ClassExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest text with `pad_id` (the model's `pad_token_id`); `targets`: [B] class indices or [B, K] indicators."""
    width = max(len(ex.input_ids) for ex in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        input_ids[row, : len(ex.input_ids)] = torch.tensor(ex.input_ids)
        attention_mask[row, : len(ex.input_ids)] = 1
    multi = isinstance(examples[0].target, list)
    targets = torch.tensor([ex.target for ex in examples], dtype=torch.float32 if multi else torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "targets": targets}



# ------------------------------------------------------------------------------- loss


def loss_sum(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None, multi_label: bool) -> torch.Tensor:
    """Summed loss of a batch (the caller divides by `targets.numel()`): cross-entropy with class weights (single-label),
    or BCE-with-logits with per-class `pos_weight` (multi-label, summed over examples and classes)."""
    logits = logits.float()
    weights = weights.to(logits.device) if weights is not None else None
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=weights, reduction="sum")
    return F.cross_entropy(logits, targets, weight=weights, reduction="sum")


class ClassifyLoss(torch.nn.Module):
    """The classifier's training forward: summed loss of a batch (`loss_sum`) from the model's pooled logits.

    The classification counterpart of trainer.lm_loss.LabelLoss: it wraps the (peft) model,
    so DDP, autocast and the train step treat both tasks alike.
    """

    def __init__(self, model: torch.nn.Module, weights: list[float] | None, multi_label: bool):
        super().__init__()
        self.model = model
        self.weights = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
        self.multi_label = multi_label

    def forward(self, targets: torch.Tensor, **inputs) -> torch.Tensor:
        return loss_sum(self.model(**inputs).logits, targets, self.weights, self.multi_label)


def evaluate(model: torch.nn.Module, data: TrainingData, device: torch.device, classes: ClassifyConfig) -> tuple[float, dict]:
    """The validation loss (with the training loss's class weights) and metrics of a run's classifier."""
    return evaluate_batches(ClassifyLoss(model, data.class_weights, classes.multi_label), data.val_batches, device, classes.labels)


@torch.no_grad()
def evaluate_batches(loss: ClassifyLoss, batches: list[dict], device: torch.device, labels: Sequence[str]) -> tuple[float, dict]:
    """Mean loss per target (example, or example x class when multi-label) and `classification_metrics`, in eval mode."""
    was_training = loss.model.training
    loss.eval()
    total, count, trues, preds = 0.0, 0, [], []
    for batch in batches:
        targets = batch["targets"].to(device)
        with autocast(device):
            logits = loss.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                                use_cache=False).logits.float()
        total += loss_sum(logits, targets, loss.weights, loss.multi_label).item()
        count += targets.numel()
        trues.append(targets.cpu())
        preds.append((logits > 0) if loss.multi_label else logits.argmax(-1))
    loss.train(was_training)
    true, pred = torch.cat(trues).numpy(), torch.cat(preds).cpu().numpy()
    return total / count, classification_metrics(true, pred, labels, loss.multi_label)


# ------------------------------------------------------------------------------- metrics


def classification_metrics(true: np.ndarray, pred: np.ndarray, labels: Sequence[str], multi_label: bool) -> dict:
    """Accuracy, macro-F1 and per-class precision / recall / support; the confusion matrix when single-label.

    `true`, `pred`: class indices of shape [N] (single-label), or 0/1 indicators of shape
    [N, K] (multi-label). Per class c with TP, FP, FN counts: precision TP / (TP + FP) and
    recall TP / (TP + FN), None where the denominator is 0 (never predicted / never true);
    F1 = 2 TP / (2 TP + FP + FN). macro_f1 averages F1 over the classes that occur in `true`
    or `pred` (sklearn's default label set; None if there is none). accuracy: the fraction
    of examples predicted exactly (multi-label: every class right, i.e. subset accuracy).
    confusion_matrix[i][j]: examples of true class i predicted as class j.
    """
    k = len(labels)
    out: dict = {}
    if multi_label:
        t, p = np.asarray(true).astype(bool), np.asarray(pred).astype(bool)
        tp, fp, fn = (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)
        accuracy = float((t == p).all(axis=1).mean())
    else:
        t, p = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (t, p), 1)
        tp = np.diag(confusion)
        fp, fn = confusion.sum(axis=0) - tp, confusion.sum(axis=1) - tp
        accuracy = float(tp.sum() / len(t))
        out["confusion_matrix"] = confusion.tolist()

    def ratio(num: int, den: int) -> float | None:
        return float(num / den) if den else None

    seen = [c for c in range(k) if tp[c] + fp[c] + fn[c] > 0]
    f1 = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in seen]
    out.update(
        accuracy=accuracy,
        macro_f1=float(np.mean(f1)) if f1 else None,
        precision={labels[c]: ratio(tp[c], tp[c] + fp[c]) for c in range(k)},
        recall={labels[c]: ratio(tp[c], tp[c] + fn[c]) for c in range(k)},
        support={labels[c]: int(tp[c] + fn[c]) for c in range(k)},
    )
    return out


def summary(metrics: dict) -> str:
    """One line for the log and the CLI: accuracy and macro-F1."""
    f1 = metrics.get("macro_f1")
    return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {'n/a' if f1 is None else format(f1, '.4f')}"


def final_metrics(classes: ClassifyConfig, weights: list[float] | None, evaluations: list[tuple[int, dict]]) -> dict:
    """metrics.json's classification keys: the setup, and the last evaluation's metrics (the metric store's last row)."""
    step, last = evaluations[-1] if evaluations else (None, {})
    return {"task": "classify", "labels": list(classes.labels), "multi_label": classes.multi_label, "class_weights": weights,
            "final_eval_step": step, **last}
