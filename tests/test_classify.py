"""training.task=classify: config and data errors, class weights, metrics, last-token pooling, real tiny runs,
and the saved adapter reloading with peft's AutoPeftModelForSequenceClassification."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import classify
from trainer.config import ClassifyConfig, load_config
from trainer.errors import TrainerError
from trainer.files import write_jsonl_atomic

LABELS = ["good", "wrong_expectation", "trivial", "unrelated", "does_not_compile"]  # tiny-critic's classes
MARKERS = {"good": "verified", "wrong_expectation": "mismatch", "trivial": "empty", "unrelated": "elsewhere",
           "does_not_compile": "unresolved"}
FILLER = ["fn", "test", "assert", "value", "returns", "the", "result", "checks", "input", "crate", "case", "when", "then"]
PATTERN = [0, 0, 1, 2, 3, 4]  # class of record i: PATTERN[i % 6], so `good` is twice as frequent as the others


def critic_records(n: int, seed: int, multi_label: bool = False) -> list[dict]:
    """Trivially separable texts: filler words, then the class's marker word last (multi-label: each positive's marker)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        if multi_label:
            chosen = [name for name in LABELS if rng.random() < 0.35]
            records.append({"text": " ".join(words + [MARKERS[name] for name in chosen]), "labels": chosen})
        else:
            name = LABELS[PATTERN[i % len(PATTERN)]]
            records.append({"text": " ".join([*words, MARKERS[name]]), "label": name})
    return records


def write_critic_data(root: Path, multi_label: bool = False) -> dict[str, Path]:
    return {"train": write_jsonl_atomic(root / "train.jsonl", critic_records(80, 1, multi_label)),
            "validation": write_jsonl_atomic(root / "validation.jsonl", critic_records(20, 2, multi_label))}


def critic_config(data: dict[str, Path], *overrides: str):
    return load_config("tiny-critic", [f"data.train={data['train']}", f"data.validation={data['validation']}", *overrides])


# --------------------------------------------------------------------------- config


def test_packaged_critic_config_is_a_classifier_and_the_default_task_is_generation():
    cfg = load_config("tiny-critic")
    assert cfg.training.task == "classify" and cfg.classify.labels == LABELS and not cfg.classify.multi_label
    assert cfg.classify.class_weights == "auto" and cfg.model.preset == "tiny" and cfg.training.device == "cpu"
    default = load_config("tiny-lora")
    assert default.training.task == "generate" and default.classify == ClassifyConfig()
    real = load_config("smollm2-critic")  # the real base's critic reads what `corpus critic` writes
    assert real.training.task == "classify" and real.classify.labels == LABELS and str(real.model.path).endswith("smollm2-135m-instruct")
    assert all(str(c.data.train).endswith("experiments/critic-data/train.jsonl") for c in (real, cfg))


@pytest.mark.parametrize("config, override, message", [
    ("tiny-critic", "training.task=regress", r"key 'training.task' expects generate \| classify, got 'regress'"),
    ("tiny-critic", "classify.class_weights=balanced", r"key 'classify.class_weights' expects auto \| none, got 'balanced'"),
    ("tiny-critic", "classify.labels=[good]", r"key 'classify.labels' expects a list of at least 2 class names"),
    ("tiny-critic", "classify.labels=[a, b, a]", r"key 'classify.labels' expects distinct class names \(a repeated\)"),
    ("tiny-critic", "classify.labels=[a, '']", r"key 'classify.labels' expects non-empty class names"),
    ("tiny-critic", "classify.labels=[1, 2]", r"key 'classify.labels' expects str, got 1 \(int\)"),
    ("tiny-critic", "classify.multi_label=maybe", r"key 'classify.multi_label' expects bool"),
    ("tiny-critic", "classify.threshold=0.5", r"key 'classify.threshold' is unknown"),
    ("tiny-critic", "training.mode=pretrain", r"key 'training.mode' expects lora \| qlora \| full with training.task=classify"),
    ("tiny-critic", "data.packing=true", r"key 'data.packing' expects false with training.task=classify"),
    ("tiny-critic", "training.sample_steps=5", r"key 'training.sample_steps' expects 0 with training.task=classify"),
    ("tiny-lora", "classify.labels=[a, b]", r"the classify section is set but training.task is 'generate'"),
])
def test_config_errors_name_the_key(config, override, message):
    with pytest.raises(TrainerError, match=message):
        load_config(config, [override])


def test_one_label_is_enough_when_multi_label():
    cfg = load_config("tiny-critic", ["classify.multi_label=true", "classify.labels=[flaky]"])
    assert cfg.classify.labels == ["flaky"] and cfg.classify.multi_label


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("multi_label, bad, message", [
    (False, {"text": "x", "label": "great"},
     "field 'label': unknown label 'great' (classify.labels: good, wrong_expectation, trivial, unrelated, does_not_compile)"),
    (False, {"label": "good"}, "field 'text' must be a non-empty string (it is missing)"),
    (False, {"text": 5, "label": "good"}, "field 'text' must be a non-empty string (got 5)"),
    (False, {"text": "", "label": "good"}, "field 'text' must be a non-empty string (got '')"),
    (False, {"text": "x"}, "field 'label' is missing"),
    (False, {"text": "x", "label": 3}, "field 'label' must hold label names (strings), got 3 (int)"),
    (False, {"text": "x", "labels": ["good"]}, "field 'label' is missing; the record has 'labels': set classify.multi_label=true"),
    (False, ["x", "good"], "expected a JSON object with 'text' and 'label', got list"),
    (True, {"text": "x", "labels": "good"}, "field 'labels' must be a list of label names, got str"),
    (True, {"text": "x", "labels": ["good", "nope"]}, "field 'labels': unknown label 'nope'"),
    (True, {"text": "x", "labels": ["wrong_expectation", "wrong_expectation"]}, "field 'labels' names a label twice"),
    (True, {"text": "x", "label": "wrong_expectation"},
     "field 'labels' is missing; the record has 'label': set classify.multi_label=false"),
])
def test_bad_records_name_file_line_and_field(tmp_path, multi_label, bad, message):
    good = {"text": "fine", "labels": ["good"]} if multi_label else {"text": "fine", "label": "good"}
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")  # the bad record is on line 3 (blank lines count)
    with pytest.raises(TrainerError) as caught:
        classify.load_records(path, classes=ClassifyConfig(labels=LABELS, multi_label=multi_label))
    assert str(caught.value).startswith(f"{path}:3: {message}"), str(caught.value)


def test_good_records_and_malformed_json(tmp_path):
    single = write_jsonl_atomic(tmp_path / "s.jsonl", [{"text": "a b", "label": "wrong_expectation"}, {"text": "c", "label": "good"}])
    assert classify.load_records(single, classes=ClassifyConfig(labels=LABELS)) == [{"text": "a b", "classes": [1], "line": 1},
                                                                           {"text": "c", "classes": [0], "line": 2}]
    assert len(classify.load_records(single, classes=ClassifyConfig(labels=LABELS), limit=1)) == 1
    multi = write_jsonl_atomic(tmp_path / "m.jsonl", [{"text": "c", "labels": ["does_not_compile", "good"]}, {"text": "d", "labels": []}])
    assert [r["classes"] for r in classify.load_records(multi, classes=ClassifyConfig(labels=LABELS, multi_label=True))] == [[0, 4], []]
    single.write_text('{"text": "a", "label": "wrong_expectation"}\n{"text": "b", "label": \n')
    with pytest.raises(TrainerError, match=rf"^{single}:2: malformed JSON"):
        classify.load_records(single, classes=ClassifyConfig(labels=LABELS))


@pytest.mark.slow  # importing the trainer (transformers, peft) takes most of its ~4 s
def test_a_bad_record_stops_the_cli_with_one_line(tmp_path, capsys):
    from trainer.__main__ import main

    data = write_critic_data(tmp_path)
    lines = data["validation"].read_text().splitlines()
    lines[6] = json.dumps({"text": "assert", "label": "flaky"})
    data["validation"].write_text("\n".join(lines) + "\n")
    code = main(["train", "--config", "tiny-critic", "--output", str(tmp_path / "exp"),
                 "--set", f"data.train={data['train']}", "--set", f"data.validation={data['validation']}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"error: {data['validation']}:7: field 'label': unknown label 'flaky' " \
                                    "(classify.labels: good, wrong_expectation, trivial, unrelated, does_not_compile)"


def test_generate_refuses_a_classifier_experiment(tmp_path):
    from trainer.config import save_config
    from trainer.generate import load_experiment

    save_config(critic_config(write_critic_data(tmp_path)), tmp_path / "exp" / "config.yaml")
    with pytest.raises(TrainerError, match=r"trained a classifier \(training.task=classify\); it generates no text"):
        load_experiment(tmp_path / "exp")


# --------------------------------------------------------------------------- class weights and loss


def test_inverse_frequency_weights_keep_the_count_weighted_mean_at_one():
    counts = [10, 30, 60]
    weights = classify.inverse_frequency_weights(counts)
    assert weights == pytest.approx([100 / 30, 100 / 90, 100 / 180])  # N / (K n_c)
    assert sum(n * w for n, w in zip(counts, weights)) / sum(counts) == pytest.approx(1.0)
    assert len({round(n * w, 9) for n, w in zip(counts, weights)}) == 1  # every class carries the same total weight
    assert classify.inverse_frequency_weights([7, 7]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="positive count"):
        classify.inverse_frequency_weights([3, 0])


def test_class_weights_modes_and_a_class_without_examples(tmp_path):
    assert classify.class_weights({"a": 1, "b": 3}, "auto") == pytest.approx([2.0, 2 / 3])
    assert classify.class_weights({"a": 1, "b": 0}, "none") is None
    with pytest.raises(TrainerError, match="label.s. b have no training examples in data.train"):
        classify.class_weights({"a": 1, "b": 0}, "auto")
    records = classify.load_records(write_jsonl_atomic(tmp_path / "r.jsonl", critic_records(20, 0)),
                                    classes=ClassifyConfig(labels=LABELS))
    assert classify.class_counts(records, LABELS) == {"good": 8, "wrong_expectation": 3, "trivial": 3, "unrelated": 3,
                                                     "does_not_compile": 3}


def test_loss_applies_the_class_weights_and_pos_weight():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
    targets = torch.tensor([0, 2, 1])
    weights = torch.tensor([0.5, 2.0, 4.0])
    nll = -torch.log_softmax(logits, -1)[torch.arange(3), targets]
    assert classify.loss_sum(logits, targets, weights, False).item() == pytest.approx((weights[targets] * nll).sum().item())
    indicators = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = torch.sigmoid(logits)
    manual = -(weights * indicators * torch.log(p) + (1 - indicators) * torch.log(1 - p)).sum()
    assert classify.loss_sum(logits, indicators, weights, True).item() == pytest.approx(manual.item(), rel=1e-5)


# --------------------------------------------------------------------------- metrics


def test_metrics_of_a_hand_made_confusion():
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2])
    m = classify.classification_metrics(true, pred, ["a", "b", "c", "d"], multi_label=False)
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert m["precision"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 3 / 4, "d": None})
    assert m["recall"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 3 / 4, "d": None})
    assert m["support"] == {"a": 3, "b": 2, "c": 4, "d": 0}
    # F1 per class: 2/3, 1/2, 3/4; d occurs in neither truth nor prediction and is left out of the mean
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_a_class_never_predicted_counts_zero_in_macro_f1():
    m = classify.classification_metrics(np.array([0, 1, 1]), np.array([0, 0, 0]), ["a", "b"], multi_label=False)
    assert m["precision"] == pytest.approx({"a": 1 / 3, "b": None}) and m["recall"] == {"a": 1.0, "b": 0.0}
    assert m["macro_f1"] == pytest.approx((2 * 1 / (2 * 1 + 2 + 0) + 0.0) / 2)


def test_multi_label_metrics_of_hand_made_indicators():
    true = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    pred = np.array([[1, 0], [1, 0], [1, 1], [0, 0]])
    m = classify.classification_metrics(true, pred, ["x", "y"], multi_label=True)
    assert "confusion_matrix" not in m
    assert m["accuracy"] == pytest.approx(2 / 4)  # subset accuracy: rows 0 and 3 are exactly right
    assert m["precision"] == pytest.approx({"x": 2 / 3, "y": 1.0}) and m["recall"] == pytest.approx({"x": 1.0, "y": 1 / 2})
    assert m["macro_f1"] == pytest.approx((4 / 5 + 2 / 3) / 2)


# --------------------------------------------------------------------------- the model: pooling


def test_pooling_reads_the_last_non_pad_token_whatever_the_right_padding(tmp_path):
    from falsify.checks import fixtures
    from trainer.models import BaseModel, classifier_base, load_pretrained

    tok = fixtures.tokenizer()
    base = classifier_base(BaseModel(fixtures.model_dir("tiny"), tok, True, "fixture"), ClassifyConfig(labels=LABELS[:3]),
                           tmp_path / "classifier_base")
    model = load_pretrained(base.path, classifier=True).eval()
    assert model.config.pad_token_id == tok.pad_token_id and model.config.num_labels == 3
    assert model.config.problem_type == "single_label_classification"
    records = [{"text": "pub fn add_1_i32(x: i32) -> i32 { x + 1 }", "classes": [0], "line": 1},
               {"text": "pub fn mul_3_u64(x: u64) -> u64 {\n    x * 3\n}\n#[test]\nfn t() { assert_eq!(mul_3_u64(2), 6); }",
                "classes": [1], "line": 2}]
    short, long = classify.encode(tok, records, 96, 3, False, "memory")
    assert len(long.input_ids) > len(short.input_ids) + 5

    def logits(batch: dict) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    alone = logits(classify.collate([short], tok.pad_token_id))[0]
    padded = classify.collate([short, long], tok.pad_token_id)
    assert (padded["input_ids"][0] == tok.pad_token_id).sum() == len(long.input_ids) - len(short.input_ids)
    wider = {k: torch.cat([v, torch.full((2, 9), tok.pad_token_id if k == "input_ids" else 0)], 1) for k, v in padded.items()
             if k != "targets"}
    torch.testing.assert_close(logits(padded)[0], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits(wider)[0], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits(wider)[1], logits(classify.collate([long], tok.pad_token_id))[0], atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # what pooling at the last position (a pad) would give instead: not the same, so the check can fail
        hidden = model.model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).last_hidden_state
    assert not torch.allclose(model.score(hidden[0, -1]), alone, atol=1e-3)


def test_a_text_ending_in_the_pad_token_is_refused():
    from falsify.checks import fixtures

    tok = fixtures.tokenizer()
    with pytest.raises(TrainerError, match=r"data.jsonl:4: the text ends in the pad token"):
        classify.encode(tok, [{"text": f"fn x() {{}}{tok.pad_token}", "classes": [0], "line": 4}], 64, 2, False, "data.jsonl")


# --------------------------------------------------------------------------- the metric store and the monitor


def test_store_keeps_eval_metrics_and_reads_a_store_written_before_them(tmp_path):
    import sqlite3

    from trainer.monitor.store import MetricStore, StoreReader

    store = MetricStore(tmp_path / "metrics.sqlite")
    store.log_eval(4, 1.0)
    store.log_eval_metrics(4, {"accuracy": 0.5, "macro_f1": 0.25})
    store.log_eval_metrics(8, {"accuracy": 0.75, "macro_f1": 0.5})
    assert store.eval_metrics() == [(4, {"accuracy": 0.5, "macro_f1": 0.25}), (8, {"accuracy": 0.75, "macro_f1": 0.5})]
    store.truncate_after(4)
    assert [s for s, _ in store.eval_metrics()] == [4]
    store.close()
    assert StoreReader(tmp_path / "metrics.sqlite").read().eval_metrics == {"step": 4, "accuracy": 0.5, "macro_f1": 0.25}
    db = sqlite3.connect(tmp_path / "metrics.sqlite")
    db.execute("DROP TABLE eval_metrics")  # a store from before the table: no metrics, no error
    db.commit()
    db.close()
    assert StoreReader(tmp_path / "metrics.sqlite").read().eval_metrics is None
    store = MetricStore(tmp_path / "metrics.sqlite")  # a writer opening it (a resume) adds the table again
    store.log_eval_metrics(12, {"accuracy": 1.0})
    store.close()
    assert StoreReader(tmp_path / "metrics.sqlite").read().eval_metrics == {"step": 12, "accuracy": 1.0}


# --------------------------------------------------------------------------- real runs (slow)


@pytest.fixture(scope="module")
def critic_run(tmp_path_factory):
    from trainer.train import train

    root = tmp_path_factory.mktemp("critic")
    data = write_critic_data(root)
    cfg = critic_config(data)
    return root / "exp", train(cfg, root / "exp"), data, cfg


@pytest.mark.slow
def test_tiny_classifier_learns_a_separable_set_and_writes_its_metrics(critic_run):
    from trainer.monitor.store import read_curves

    exp, metrics, data, cfg = critic_run
    written = json.loads((exp / "metrics.json").read_text())
    assert written["status"] == "finished" and written["task"] == "classify" and written["labels"] == LABELS
    assert written["steps"] == cfg.training.max_steps == written["final_eval_step"]
    curves = read_curves(exp / "metrics.sqlite")
    first, last = [loss for _, loss in curves.loss[:4]], [loss for _, loss in curves.loss[-4:]]
    assert sum(last) < 0.5 * sum(first), curves.loss
    assert written["final_val_loss"] < 0.5 * written["initial_val_loss"]
    majority = max(PATTERN.count(c) for c in set(PATTERN)) / len(PATTERN)  # predicting `good` always: 1/3
    assert written["accuracy"] > majority and written["accuracy"] >= 0.9, written["accuracy"]
    assert 0 < written["macro_f1"] <= 1 and set(written["precision"]) == set(written["recall"]) == set(LABELS)
    matrix = written["confusion_matrix"]
    assert len(matrix) == len(LABELS) and all(len(row) == len(LABELS) for row in matrix)
    assert sum(map(sum, matrix)) == written["validation_examples"] == 20
    assert [sum(row) for row in matrix] == [8, 3, 3, 3, 3]  # rows are the true classes of the validation set
    assert sum(matrix[i][i] for i in range(len(LABELS))) / 20 == pytest.approx(written["accuracy"])
    assert written["class_weights"] == pytest.approx(classify.inverse_frequency_weights([28, 13, 13, 13, 13]))
    assert "classifier over 5 labels" in written["model"]


@pytest.mark.slow
def test_final_checkpoint_reloads_with_autopeft_and_reproduces_the_recorded_metrics(critic_run):
    from peft import AutoPeftModelForSequenceClassification

    from trainer.models import load_tokenizer

    exp, metrics, data, cfg = critic_run
    model = AutoPeftModelForSequenceClassification.from_pretrained(metrics["final_checkpoint"]).eval()
    tok = load_tokenizer(exp / "classifier_base")
    records = classify.load_records(data["validation"], classes=cfg.classify)
    examples = classify.encode(tok, records, cfg.data.max_seq_len, 4, False, "v")
    batches = classify.eval_batches(examples, 8, tok.pad_token_id, classify.collate)
    loss = classify.ClassifyLoss(model, metrics["class_weights"], False)
    val, scores = classify.evaluate_batches(loss, batches, torch.device("cpu"), LABELS)
    assert val == pytest.approx(metrics["final_val_loss"], rel=1e-5)
    assert scores["accuracy"] == metrics["accuracy"] and scores["confusion_matrix"] == metrics["confusion_matrix"]


@pytest.mark.slow
def test_saved_adapter_reloads_with_autopeft_and_gives_the_same_logits_head_included(critic_run, tmp_path):
    from peft import AutoPeftModelForSequenceClassification
    from safetensors.torch import load_file

    from trainer import checkpoint as ckpt
    from trainer.checkpoint import TrainingState
    from trainer.experiment import ExperimentPaths
    from trainer.models import BaseModel, load_for_training, load_tokenizer
    from trainer.train import build_optimizer, train_step

    exp, _, data, cfg = critic_run
    tok = load_tokenizer(exp / "classifier_base")
    torch.manual_seed(3)
    model = load_for_training(cfg, BaseModel(exp / "classifier_base", tok, True, "the run's classifier base"), torch.device("cpu"))
    records = classify.load_records(data["train"], classes=cfg.classify)
    batch = classify.collate(classify.encode(tok, records[:8], 64, 4, False, "t"), tok.pad_token_id)
    optimizer, scheduler = build_optimizer(model, cfg.training, total_steps=3)
    for step in range(1, 4):
        train_step(classify.ClassifyLoss(model, None, False), optimizer, scheduler, [batch], torch.device("cpu"), 1.0, step)
    model.eval()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        before = model(**inputs).logits
    head = model.base_model.model.score
    assert not torch.equal(head.modules_to_save["default"].weight, head.original_module.weight)  # the head was trained
    saved = ckpt.save_checkpoint(ExperimentPaths(tmp_path / "exp"), model, TrainingState(step=3, rng_per_rank=[{}]))
    tensors = load_file(saved / "adapter_model.safetensors")
    stored_head = [v for k, v in tensors.items() if "score" in k]
    assert len(stored_head) == 1 and torch.equal(stored_head[0], head.modules_to_save["default"].weight)
    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(saved).eval()
    with torch.no_grad():
        after = reloaded(**inputs).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_monitor_shows_accuracy_and_macro_f1(critic_run, capsys):
    from trainer.monitor import live as monitor

    exp, metrics, _, _ = critic_run
    assert monitor.main(["--experiment", str(exp), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["accuracy"] == metrics["accuracy"] and state["macro_f1"] == metrics["macro_f1"]
    assert state["metrics_step"] == metrics["steps"]
    assert monitor.main(["--experiment", str(exp), "--once"]) == 0
    frame = capsys.readouterr().out
    assert f"acc {metrics['accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f}" in frame


@pytest.mark.slow
def test_multi_label_run_reports_its_metrics(tmp_path):
    from trainer.train import train

    data = write_critic_data(tmp_path, multi_label=True)
    metrics = train(critic_config(data, "classify.multi_label=true", "training.max_steps=12", "training.save_steps=12"), tmp_path / "exp")
    written = json.loads((tmp_path / "exp" / "metrics.json").read_text())
    assert written["accuracy"] == metrics["accuracy"] and written["macro_f1"] == metrics["macro_f1"]
    assert written["status"] == "finished" and written["multi_label"] is True and "confusion_matrix" not in written
    assert 0 <= written["accuracy"] <= 1 and 0 <= written["macro_f1"] <= 1 and set(written["recall"]) == set(LABELS)
    assert written["final_val_loss"] < written["initial_val_loss"]
    counts = classify.class_counts(classify.load_records(data["train"], classes=ClassifyConfig(labels=LABELS, multi_label=True)), LABELS)
    assert written["class_weights"] == pytest.approx(classify.inverse_frequency_weights(list(counts.values())))


@pytest.mark.slow
def test_qlora_classifier_trains_with_an_nf4_base(critic_run, tmp_path):
    import bitsandbytes as bnb

    from trainer.models import BaseModel, load_for_training, load_tokenizer
    from trainer.train import train

    exp, _, data, cfg = critic_run
    qlora = critic_config(data, "training.mode=qlora", "training.max_steps=4", "training.eval_steps=4", "training.save_steps=4")
    model = load_for_training(qlora, BaseModel(exp / "classifier_base", load_tokenizer(exp / "classifier_base"), True, "base"),
                              torch.device("cpu"))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert not isinstance(model.base_model.model.score.modules_to_save["default"], bnb.nn.Linear4bit)  # the head stays a plain Linear
    metrics = train(qlora, tmp_path / "exp")
    assert metrics["status"] == "finished" and metrics["mode"] == "qlora" and metrics["final_eval_step"] == 4
    assert 0 <= metrics["accuracy"] <= 1 and len(metrics["confusion_matrix"]) == len(LABELS)


@pytest.mark.slow
def test_a_classifier_on_the_real_prepared_base_trains_and_reloads(tmp_path):
    """SmolLM2-135M-Instruct (trainer.pretrained, prepared offline once): its weights, a new head, pad = <|im_end|>."""
    from peft import AutoPeftModelForSequenceClassification

    from trainer.models import load_tokenizer
    from trainer.pretrained import prepare
    from trainer.train import train

    prepared = prepare("smollm2-135m-instruct").path
    data = write_critic_data(tmp_path)
    cfg = critic_config(data, "model.preset=null", "model.path=smollm2-135m-instruct", "training.max_steps=2", "training.eval_steps=2",
                        "training.save_steps=2", "data.max_validation_samples=8", "training.learning_rate=1e-3")
    metrics = train(cfg, tmp_path / "exp")
    assert metrics["status"] == "finished" and not metrics["random_init"] and str(prepared) in metrics["model"]
    assert metrics["final_val_loss"] < metrics["initial_val_loss"]
    config = json.loads((tmp_path / "exp" / "classifier_base" / "config.json").read_text())
    assert config["pad_token_id"] == load_tokenizer(prepared).pad_token_id
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert (tmp_path / "exp" / "classifier_base" / "model.safetensors").resolve() == (prepared / "model.safetensors").resolve()
    model = AutoPeftModelForSequenceClassification.from_pretrained(metrics["final_checkpoint"]).eval()
    tok = load_tokenizer(tmp_path / "exp" / "classifier_base")
    records = classify.load_records(data["validation"], 8, classes=cfg.classify)
    examples = classify.encode(tok, records, cfg.data.max_seq_len, 4, False, "v")
    batches = classify.eval_batches(examples, 8, tok.pad_token_id, classify.collate)
    val, scores = classify.evaluate_batches(classify.ClassifyLoss(model, metrics["class_weights"], False), batches,
                                            torch.device("cpu"), LABELS)
    assert val == pytest.approx(metrics["final_val_loss"], rel=1e-5) and scores["accuracy"] == metrics["accuracy"]


@pytest.mark.slow
def test_critic_score_adds_probabilities_and_its_metrics_are_the_runs_own(critic_run, tmp_path):
    """`trainer critic score` on the validation rows, from the final checkpoint: the same accuracy and confusion
    matrix the run recorded, and P(good) ranking the separable set's good rows above every other class."""
    from trainer import critic

    exp, metrics, data, _ = critic_run
    out, report = tmp_path / "scored.jsonl", tmp_path / "metrics.json"
    assert critic.main(["score", "--experiment", str(exp), "--samples", str(data["validation"]), "--out", str(out),
                        "--checkpoint", Path(metrics["final_checkpoint"]).name, "--metrics", str(report)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20 and all(set(r["critic"]) == set(LABELS) and sum(r["critic"].values()) == pytest.approx(1) for r in rows)
    result = json.loads(report.read_text())
    assert result["accuracy"] == metrics["accuracy"] and result["confusion_matrix"] == metrics["confusion_matrix"]
    assert set(result["auroc_good_vs"]) == set(LABELS) - {"good"}
    for v in result["auroc_good_vs"].values():
        assert v["ci95"][0] <= v["auroc"] <= v["ci95"][1] and v["auroc"] > 0.8 and v["n_good"] == 8


def test_critic_score_refuses_a_directory_that_is_not_an_experiment(tmp_path):
    from trainer import critic

    assert critic.main(["score", "--experiment", str(tmp_path), "--samples", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "o")]) == 2
