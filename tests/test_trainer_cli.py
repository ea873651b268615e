"""The trainer's command line: every user error is one line naming what is wrong, with a non-zero exit;
a short real run writes the experiment directory of SPEC.md; generation writes the samples schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer.__main__ import main
from trainer.config import save_config
from trainer.experiment import ExperimentPaths
from trainer.rejection import write_rejection


@pytest.fixture
def config_file(tmp_path, tiny_data):
    from tests.conftest import fast_config

    path = tmp_path / "config.yaml"
    save_config(fast_config(tiny_data), path)
    return path


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()[-1] if captured.err.strip() else ""


def one_error_line(capsys, *argv) -> str:
    code, last = run_cli(capsys, *argv)
    assert code == 2, f"expected exit 2, got {code}"
    assert last.startswith("error: ")
    return last


def test_unknown_config_key(capsys, config_file, tmp_path):
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--set", "training.bogus=1")
    assert "--set training.bogus" in line and "unknown" in line and "batch_size" in line


def test_wrong_type_names_key_and_type(capsys, config_file, tmp_path):
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--set", "training.batch_size=many")
    assert "training.batch_size" in line and "expects int" in line and "'many'" in line


def test_unknown_key_in_yaml_names_file_and_line(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel:\n  preset: tiny\ntraining:\n  learning_rte: 0.1\n")
    line = one_error_line(capsys, "train", "--config", path, "--output", tmp_path / "x")
    assert f"{path}:5" in line and "training.learning_rte" in line


def test_model_path_that_does_not_exist(capsys, config_file, tmp_path):
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x",
                          "--set", "model.preset=null", "--set", f"model.path={tmp_path / 'nowhere'}")
    assert "model.path" in line and "nowhere" in line


def test_unpaired_init_args(capsys, config_file, tmp_path):
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--set", "training.mode=pretrain",
                          "--set", "model.preset=null", "--set", f"model.init_arch={tmp_path}")
    assert "init_arch and model.init_weights come as a pair" in line


def test_encoder_init_is_refused(capsys, config_file, tmp_path):
    enc = tmp_path / "bert"
    enc.mkdir()
    (enc / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 30522}))
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--init", enc)
    assert "'bert'" in line and "not a decoder-only causal LM" in line


def test_vocab_mismatch_names_both_sizes(capsys, config_file, tmp_path):
    from falsify.checks import fixtures

    init = tmp_path / "init"
    shutil.copytree(fixtures.model_dir("tiny", 0), init)
    cfg = json.loads((init / "config.json").read_text())
    cfg["vocab_size"] = 151936
    (init / "config.json").write_text(json.dumps(cfg))
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--init", init)
    assert "151936" in line and str(len(fixtures.tokenizer())) in line


def test_cuda_requested_without_cuda(capsys, config_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present on this machine")
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--set", "training.device=cuda")
    assert "training.device=cuda" in line and "CUDA is not available" in line


def test_missing_data_file(capsys, config_file, tmp_path):
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x",
                          "--set", f"data.train={tmp_path / 'none.jsonl'}")
    assert "data file not found" in line and "none.jsonl" in line


def test_every_example_truncated_to_no_labels(capsys, config_file, tmp_path):
    line = one_error_line(capsys, "train", "--config", config_file, "--output", tmp_path / "x", "--set", "data.max_seq_len=8")
    assert "label" in line and "max_seq_len" in line


@pytest.mark.slow
def test_run_writes_experiment_dir_then_resume_refuses_corrupt_checkpoint(capsys, config_file, tmp_path):
    out = tmp_path / "exp"
    code, _ = run_cli(capsys, "train", "--config", config_file, "--output", out)
    assert code == 0
    for name in ("config.yaml", "reproducibility.lock", "training.log", "metrics.sqlite", "metrics.json",
                 "checkpoints/best/adapter_model.safetensors", "checkpoints/best/adapter_config.json", "checkpoints/step-4"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["random_init"] is True and metrics["converged"] is None  # no target stated: no claim
    assert metrics["final_val_loss"] < metrics["initial_val_loss"]
    lock = (out / "reproducibility.lock").read_text()
    for key in ("torch", "transformers", "peft", "bitsandbytes", "rustc", "seed", "sha256"):
        assert key in lock, key
    adapter = out / "checkpoints" / "step-4" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-16] + b"\0" * 16)
    line = one_error_line(capsys, "train", "--output", out, "--resume")
    assert "corrupt" in line and "refusing to load it" in line and "step-4" in line

    # generation: samples schema with provenance, stops at end of turn
    samples = tmp_path / "samples.jsonl"
    assert main(["generate", "--experiment", str(out), "--input", config_dataset(out), "--out", str(samples), "--limit", "2"]) == 0
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 2 and all({"id", "function_code", "generated_tests", "metadata"} <= set(r) for r in rows)
    gen = rows[0]["metadata"]["generation"]
    assert gen["adapter_sha256"] and gen["model_sha256"] and gen["new_tokens"] <= 16
    assert "<|im_end|>" not in rows[0]["generated_tests"]

    # the base model alone (the zero-shot side of base vs tuned): no adapter in its provenance
    base = tmp_path / "base.jsonl"
    assert main(["generate", "--experiment", str(out), "--checkpoint", "base", "--input", config_dataset(out), "--out", str(base),
                 "--limit", "2"]) == 0
    base_gen = json.loads(base.read_text().splitlines()[0])["metadata"]["generation"]
    assert base_gen["checkpoint"] == "base" and base_gen["adapter_sha256"] is None and base_gen["model_sha256"] == gen["model_sha256"]

    # a rejected adapter is refused, by name, unless --allow-rejected; the base model never is
    write_rejection(ExperimentPaths(out), adapter=Path(gen["checkpoint"]), adapter_sha256=gen["adapter_sha256"],
                    reasons=["P-GATE-002 failed: compile rate >= 0.90: measured 0"], scorecard="reports/scorecard.json")
    line = one_error_line(capsys, "generate", "--experiment", out, "--input", config_dataset(out), "--out", samples, "--limit", "1")
    assert "rejected" in line and "P-GATE-002" in line and "--allow-rejected" in line
    assert main(["generate", "--experiment", str(out), "--input", config_dataset(out), "--out", str(samples), "--limit", "1",
                 "--allow-rejected"]) == 0
    assert main(["generate", "--experiment", str(out), "--checkpoint", "base", "--input", config_dataset(out), "--out", str(base),
                 "--limit", "1"]) == 0


def config_dataset(experiment: Path) -> str:
    import yaml

    return yaml.safe_load((experiment / "config.yaml").read_text())["data"]["validation"]


@pytest.mark.slow
def test_nan_loss_exits_3_with_step(capsys, config_file, tmp_path):
    code, line = run_cli(capsys, "train", "--config", config_file, "--output", tmp_path / "nan",
                         "--set", "training.learning_rate=1.0e+30", "--set", "training.gradient_clipping=null")
    assert code == 3, line
    assert "stopped by guard at step" in line and "non-finite" in line


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_nan_validation_loss_stops_with_one_line_exit_3_and_keeps_the_last_checkpoint(capsys, config_file, tmp_path, monkeypatch):
    import math

    import trainer.train as loop

    calls, real = {"n": 0}, loop.evaluate

    def nan_after_step_0(model, batches, device):  # the validation loss goes NaN at the first evaluation after step 0
        calls["n"] += 1
        return real(model, batches, device) if calls["n"] == 1 else math.nan
    monkeypatch.setattr(loop, "evaluate", nan_after_step_0)
    out = tmp_path / "nan-val"
    code, line = run_cli(capsys, "train", "--config", config_file, "--output", out, "--set", "training.save_steps=1",
                         "--set", "training.eval_steps=2")
    assert code == 3, line
    assert line == ("error: training stopped by guard at step 2: non-finite validation loss (nan); "
                    "the last good checkpoint was kept")
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == ["step-1"]
    metrics = _metrics(out)
    assert metrics["status"] == "stopped_by_guard" and "validation loss" in metrics["stop_reason"] and metrics["steps"] == 2


def _loss_jumps_at(monkeypatch, step: int, factor: float) -> None:
    import trainer.train as loop

    real = loop.train_step

    def jumping(*args, **kwargs):
        loss, grad_norm = real(*args, **kwargs)
        return (loss * factor if args[6] >= step else loss), grad_norm  # args[6]: the step number
    monkeypatch.setattr(loop, "train_step", jumping)


@pytest.mark.slow
def test_divergence_is_recorded_and_the_run_finishes_when_not_configured_to_stop(capsys, config_file, tmp_path, monkeypatch):
    _loss_jumps_at(monkeypatch, 3, 10.0)
    out = tmp_path / "diverging"
    code = main(["train", "--config", str(config_file), "--output", str(out), "--set", "training.divergence_window=2",
                 "--set", "training.divergence_factor=3"])
    assert code == 0
    assert "training loss diverging from step 3" in capsys.readouterr().out
    found = _metrics(out)["divergence"]
    assert found["step"] == 3 and found["window"] == 2 and found["factor"] == 3.0 and found["window_mean"] > 3 * found["lowest_window_mean"]
    assert _metrics(out)["status"] == "finished"
    assert _metrics(out)["peak_vram_mb"] is None and _metrics(out)["precision"] == "auto"  # VRAM is a CUDA allocator reading
    assert _metrics(out)["compute_dtype"] == "fp32"  # auto on a CPU


@pytest.mark.slow
def test_metrics_say_what_the_run_computed_in(config_file, tmp_path):
    """`compute_dtype` is read while the run's precision is in force (the trainer resets it before writing metrics.json)."""
    out = tmp_path / "bf16"
    assert main(["train", "--config", str(config_file), "--output", str(out), "--set", "training.precision=bf16"]) == 0
    assert _metrics(out)["precision"] == "bf16" and _metrics(out)["compute_dtype"] == "bf16"


@pytest.mark.slow
def test_divergence_ends_the_run_when_configured(capsys, config_file, tmp_path, monkeypatch):
    _loss_jumps_at(monkeypatch, 3, 10.0)
    out = tmp_path / "stopped"
    code, line = run_cli(capsys, "train", "--config", config_file, "--output", out, "--set", "training.divergence_window=2",
                         "--set", "training.divergence_factor=3", "--set", "training.stop_on_divergence=true",
                         "--set", "training.save_steps=1")
    assert code == 3, line
    assert line.startswith("error: training stopped by guard at step 3: diverging loss (mean of the last 2 steps")
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == ["step-1", "step-2"]  # step 3 is not checkpointed
    metrics = _metrics(out)
    assert metrics["status"] == "stopped_by_guard" and "diverging" in metrics["stop_reason"] and metrics["divergence"]["step"] == 3


def test_divergence_watch_needs_a_full_window_and_a_rise_beyond_the_factor():
    from trainer.guards import DivergenceWatch

    watch = DivergenceWatch(factor=2.0, window=3)
    assert [watch.observe(s, loss) for s, loss in enumerate([4.0, 3.0, 2.0, 1.0, 1.0, 1.5, 2.5], 1)] == [None] * 7  # 1.67 <= 2 x 1.17
    assert watch.observe(8, 6.0)["step"] == 8  # mean (1.5 + 2.5 + 6) / 3 = 3.33 > 2 x 1.17
    assert watch.observe(9, 9.0) is None and watch.found["step"] == 8  # the first finding is the one kept
    assert all(DivergenceWatch(None, 2).observe(s, 10.0 ** s) is None for s in range(5))  # factor null: off
