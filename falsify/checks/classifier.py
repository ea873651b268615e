"""Checks of the sequence classifier (`training.task: classify`) that a test critic's numbers rest on.

Each builds the classifier through the trainer's own code (`classifier_base`, `load_for_training`,
`train`, `classify.build_data`) on a small separable set: its pooling, its class weights, what its
checkpoint holds, and that validation never repeats training.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from falsify.checks.registry import Verdict, check

LABELS = ["good", "wrong_expectation", "trivial", "unrelated", "does_not_compile"]
MARKERS = ["verified", "mismatch", "empty", "elsewhere", "unresolved"]
WORDS = ["fn", "test", "assert", "value", "returns", "the", "result", "checks", "input", "crate", "case", "when", "then"]
IMBALANCED = {"good": 300, "wrong_expectation": 120, "trivial": 60, "unrelated": 40, "does_not_compile": 480}


def _records(n: int, seed: int) -> list[dict]:
    """Separable texts of uneven length (filler, then the class's marker); `good` twice as frequent as the rest."""
    rng = random.Random(seed)
    pattern = [0, 0, 1, 2, 3, 4]
    return [{"text": " ".join([*(rng.choice(WORDS) for _ in range(rng.randint(2, 12))), MARKERS[pattern[i % 6]], str(seed), str(i)]),
             "label": LABELS[pattern[i % 6]]} for i in range(n)]


def _config(root: Path, steps: int, train: list[dict], validation: list[dict]):
    from trainer.config import load_config
    from trainer.files import write_jsonl_atomic

    paths = {name: write_jsonl_atomic(root / f"{name}.jsonl", rows) for name, rows in (("train", train), ("validation", validation))}
    return load_config("tiny-critic", [f"data.train={paths['train']}", f"data.validation={paths['validation']}",
                                       f"training.max_steps={steps}", f"training.save_steps={steps}", f"training.eval_steps={steps}"])


def _classifier(root: Path):
    """A freshly built tiny classifier with its LoRA (before any training) and its tokenizer, its files under `root`."""
    import torch

    from falsify.checks import fixtures
    from trainer.models import BaseModel, classifier_base, load_for_training, load_tokenizer

    cfg = _config(root, 2, _records(12, 1), _records(6, 2))
    base_dir = fixtures.model_dir("tiny", 0)
    base = classifier_base(BaseModel(base_dir, load_tokenizer(base_dir), True, "fixture"), cfg.classify, root / "classifier_base")
    torch.manual_seed(0)
    return load_for_training(cfg, base, torch.device("cpu")).eval(), base.tokenizer


@check("classifier_pools_last_real_token")
def classifier_pools_last_real_token(*, atol: float = 1e-5) -> Verdict:
    """The head reads the last real token: each text's logits in a right-padded batch equal its logits alone."""
    import torch

    from trainer.classify import ClassExample, collate

    with tempfile.TemporaryDirectory(prefix="rtf-classifier-") as root:
        model, tok = _classifier(Path(root))
    texts = [r["text"] for r in _records(6, 3)]
    examples = [ClassExample(tok.encode(t, add_special_tokens=False), 0) for t in texts]
    with torch.no_grad():
        batch = collate(examples, tok.pad_token_id)
        together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        alone = torch.cat([model(input_ids=torch.tensor([e.input_ids])).logits for e in examples])
    diff = float((together - alone).abs().max())
    pads = int((batch["attention_mask"] == 0).sum())
    return Verdict(diff <= atol, {"max_abs_diff": diff, "pad_positions": pads, "atol": atol},
                   f"max |logits in a padded batch - logits alone| = {diff:.2e} over {len(texts)} texts ({pads} pad positions; "
                   f"tolerance {atol:g})")


@check("class_weights_keep_loss_scale")
def class_weights_keep_loss_scale(*, counts: dict = IMBALANCED, rtol: float = 1e-6) -> Verdict:
    """`auto` class weights: rarer classes weigh more, and the count-weighted mean weight is 1, so the weighted
    loss keeps the scale of the unweighted one (the learning rate means the same with or without weights)."""
    from trainer.classify import class_weights

    weights = class_weights(dict(counts), "auto")
    names = list(counts)
    mean = sum(counts[n] * w for n, w in zip(names, weights)) / sum(counts.values())
    by_count = sorted(range(len(names)), key=lambda i: counts[names[i]])
    inverse = all(weights[a] >= weights[b] for a, b in zip(by_count, by_count[1:]))
    ok = abs(mean - 1.0) <= rtol and inverse
    return Verdict(ok, {"weights": dict(zip(names, weights)), "count_weighted_mean": mean, "rarer_weighs_more": inverse},
                   f"count-weighted mean weight {mean:.6f} (expected 1); rarer classes weigh more: {inverse}; "
                   + ", ".join(f"{n} {counts[n]}: {w:.3f}" for n, w in zip(names, weights)))


@check("classifier_head_saved")
def classifier_head_saved(*, steps: int = 4, rtol: float = 1e-5) -> Verdict:
    """The final checkpoint reloads with peft's AutoPeftModelForSequenceClassification and gives the validation
    loss the run recorded: the trained head travels with the adapter (a missing one reloads at random init)."""
    with tempfile.TemporaryDirectory(prefix="rtf-classifier-run-") as tmp:
        return _reload_verdict(Path(tmp), steps, rtol)


def _reload_verdict(root: Path, steps: int, rtol: float) -> Verdict:
    import torch
    from peft import AutoPeftModelForSequenceClassification

    from trainer import classify
    from trainer.models import load_tokenizer
    from trainer.train import train

    cfg = _config(root, steps, _records(48, 1), _records(12, 2))
    try:
        metrics = train(cfg, root / "exp")
        model = AutoPeftModelForSequenceClassification.from_pretrained(metrics["final_checkpoint"]).eval()
    except Exception as exc:  # a checkpoint that cannot be reloaded (by the run's best-checkpoint step or by peft) falsifies it too
        return Verdict(False, {"error": f"{type(exc).__name__}: {exc}"},
                       f"the run's checkpoint does not reload: {type(exc).__name__}: {str(exc)[:300]}")
    tok = load_tokenizer(root / "exp" / "classifier_base")
    examples = classify.encode(tok, classify.load_records(cfg.data.validation, classes=cfg.classify), cfg.data.max_seq_len,
                               len(LABELS), False, "validation")
    batches = classify.eval_batches(examples, cfg.training.batch_size, tok.pad_token_id, classify.collate)
    val, _ = classify.evaluate_batches(classify.ClassifyLoss(model, metrics["class_weights"], False), batches,
                                       torch.device("cpu"), LABELS)
    recorded = metrics["final_val_loss"]
    ok = abs(val - recorded) <= rtol * abs(recorded)
    adapter = json.loads((Path(metrics["final_checkpoint"]) / "adapter_config.json").read_text())
    return Verdict(ok, {"reloaded_val_loss": val, "recorded_val_loss": recorded, "modules_to_save": adapter.get("modules_to_save")},
                   f"validation loss of the reloaded checkpoint {val:.6f} vs {recorded:.6f} recorded by the run "
                   f"(relative tolerance {rtol:g}; modules_to_save {adapter.get('modules_to_save')})")


@check("no_validation_text_in_training")
def no_validation_text_in_training() -> Verdict:
    """The trainer refuses classification data whose validation repeats a training text (label leakage), and
    accepts the same data without the repeat."""
    from trainer import classify
    from trainer.errors import TrainerError

    train_rows, val_rows = _records(24, 1), _records(6, 2)
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="rtf-classifier-leak-") as tmp:
        root = Path(tmp)
        _, tok = _classifier(root / "model")
        for name, validation in (("clean", val_rows), ("leaked", [*val_rows, {**train_rows[5], "text": f"  {train_rows[5]['text']} "}])):
            cfg = _config(root / name, 2, train_rows, validation)
            records = [classify.load_records(p, classes=cfg.classify) for p in (cfg.data.train, cfg.data.validation)]
            try:
                classify.build_data(cfg, tok, records[0], records[1], 1)
                outcomes[name] = None
            except TrainerError as exc:
                outcomes[name] = str(exc).replace(tmp, "<tmp>")
    ok = outcomes["clean"] is None and outcomes["leaked"] is not None and "also occur in the training data" in outcomes["leaked"]
    return Verdict(ok, outcomes, f"clean data: {outcomes['clean'] or 'accepted'}; one validation text repeated from training: "
                                 f"{outcomes['leaked'] or 'accepted (leak not caught)'}")
