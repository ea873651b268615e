"""Tier-2 checks that run the real trainer (`trainer.train.train`) end to end on the tiny preset.

Runs are cached per process by their settings, so several checks can read one run.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rtf-runs-"))


def _train(out: Path, **sections) -> dict:
    from trainer.train import train

    return train(fixtures.run_config(**sections), out)


@functools.lru_cache(maxsize=16)
def cached_run(mode: str, steps: int, seed: int, copy: int = 0) -> Path:
    """One completed run; `copy` distinguishes two identical runs of the same settings."""
    out = _workdir() / f"{mode}-{steps}-{seed}-{copy}"
    _train(out, training={"mode": mode, "max_steps": steps, "seed": seed, "save_steps": 3, "eval_steps": 3})
    return out


def _paths(run: Path):
    from trainer.experiment import ExperimentPaths

    return ExperimentPaths(run)


def _metrics(run: Path) -> dict:
    return json.loads(_paths(run).metrics.read_text())


def _final_adapter(run: Path) -> Path:
    from trainer.checkpoint import ADAPTER

    return _paths(run).step_checkpoints()[-1] / ADAPTER


def _curves(run: Path) -> tuple[list, list]:
    """(loss curve, validation curve) of a run, from its metric store."""
    from trainer.monitor.store import read_curves

    curves = read_curves(_paths(run).store)
    return curves.loss, curves.evals


def _sha(path: Path) -> str:
    from trainer.files import sha256_file

    return sha256_file(path)


@check("same_seed_identical")
def same_seed_identical(*, mode: str = "lora", steps: int = 6) -> Verdict:
    """Two runs with one seed: identical loss curves, eval curves and adapter bytes (CPU)."""
    a, b = cached_run(mode, steps, 11, 0), cached_run(mode, steps, 11, 1)
    (loss_a, eval_a), (loss_b, eval_b) = _curves(a), _curves(b)
    sha_a, sha_b = _sha(_final_adapter(a)), _sha(_final_adapter(b))
    first_diff = next((s for (s, x), (_, y) in zip(loss_a, loss_b) if x != y), None)
    ok = loss_a == loss_b and eval_a == eval_b and sha_a == sha_b and len(loss_a) == steps
    return Verdict(ok, {"mode": mode, "steps": len(loss_a), "first_differing_step": first_diff, "eval_curve_equal": eval_a == eval_b,
                        "adapter_sha256": [sha_a, sha_b]},
                   f"loss curves {'identical' if first_diff is None and len(loss_a) == len(loss_b) else f'differ at step {first_diff}'}, "
                   f"eval curves {'identical' if eval_a == eval_b else 'differ'}, adapters {'identical' if sha_a == sha_b else 'differ'}")


def _max_step(run: Path) -> int:
    """The last step a (possibly running) training has logged; 0 while its store does not exist yet."""
    from trainer.monitor.store import last_step

    return last_step(_paths(run).store)


@check("exact_resume")
def exact_resume(*, mode: str = "lora", steps: int = 12, kill_after_step: int = 5, timeout_s: float = 240.0) -> Verdict:
    """SIGKILL a training process mid-run, resume it: the final adapter equals an uninterrupted run's, bitwise."""
    from trainer.config import save_config

    straight = cached_run(mode, steps, 11, 0)
    out = _workdir() / "killed"
    cfg = fixtures.run_config(training={"mode": mode, "max_steps": steps, "seed": 11, "save_steps": 3, "eval_steps": 3})
    cfg_path = out.with_suffix(".yaml")
    save_config(cfg, cfg_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "train", "--config", str(cfg_path), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline, killed_at = time.time() + timeout_s, None
    while time.time() < deadline and proc.poll() is None:
        reached = _max_step(out)
        if reached >= kill_after_step:
            proc.send_signal(signal.SIGKILL)
            killed_at = reached
            break
        time.sleep(0.01)
    proc.wait()
    if killed_at is None:
        return Verdict(False, {"returncode": proc.returncode, "stderr": proc.stderr.read().decode()[-800:]},
                       "the run ended before it could be killed: the experiment is inconclusive")
    proc.stderr.close()
    from trainer.train import train

    train(cfg, out, resume=True)
    sha_straight, sha_resumed = _sha(_final_adapter(straight)), _sha(_final_adapter(out))
    loss_straight, loss_resumed = _curves(straight)[0], _curves(out)[0]
    ok = sha_straight == sha_resumed and loss_straight == loss_resumed
    return Verdict(ok, {"mode": mode, "killed_after_step": killed_at, "adapter_sha256_straight": sha_straight,
                        "adapter_sha256_resumed": sha_resumed, "loss_curves_equal": loss_straight == loss_resumed},
                   f"killed at step {killed_at} of {steps}, resumed: adapters {'bitwise identical' if ok else 'DIFFER'}, "
                   f"loss curves {'equal' if loss_straight == loss_resumed else 'DIFFER'}")


@check("best_checkpoint_reloads")
def best_checkpoint_reloads(*, mode: str = "lora", steps: int = 6, rtol: float = 1e-6) -> Verdict:
    """The best checkpoint loads with peft.PeftModel.from_pretrained and reproduces the trainer's best validation loss.

    The base comes from the trainer's own loader (`load_base_weights`); the adapter goes
    through peft's loader, not the trainer's, as any user of the checkpoint would load it.
    """
    import torch
    from peft import PeftModel

    from trainer.config import load_config
    from trainer.data import build_examples, eval_batches, load_jsonl
    from trainer.models import BaseModel, load_base_weights, load_tokenizer
    from trainer.train import evaluate

    run = cached_run(mode, steps, 11, 0)
    paths, metrics = _paths(run), _metrics(run)
    cfg = load_config(paths.config)
    cpu = torch.device("cpu")
    tok = load_tokenizer(paths.base_model)
    base = load_base_weights(cfg, BaseModel(paths.base_model, tok, True, "the run's base model"), cpu)
    model = PeftModel.from_pretrained(base, paths.best)
    examples, _ = build_examples(tok, load_jsonl(cfg.data.validation, cfg.data.max_validation_samples), cfg.data.max_seq_len)
    reloaded = evaluate(model, eval_batches(examples, cfg.training.batch_size, tok.pad_token_id), cpu)
    expected = metrics["best_val_loss"]
    rel = abs(reloaded - expected) / expected
    return Verdict(rel <= rtol, {"mode": mode, "best_step": metrics["best_step"], "trainer_best_val_loss": expected,
                                 "reloaded_val_loss": reloaded, "relative_diff": rel},
                   f"reloaded best adapter: val loss {reloaded:.6f} vs trainer's {expected:.6f} (rel diff {rel:.2g}, allowed {rtol})")


@check("validation_loss_falls")
def validation_loss_falls(*, mode: str = "lora", steps: int = 6, max_ratio: float = 0.9) -> Verdict:
    """A short run lowers validation loss to at most `max_ratio` of step 0; random init is announced."""
    run = cached_run(mode, steps, 11, 0)
    m = _metrics(run)
    ratio = m["final_val_loss"] / m["initial_val_loss"]
    announced = m["random_init"] is True and "RANDOM INIT" in _paths(run).log.read_text()
    return Verdict(ratio <= max_ratio and announced, {"initial_val_loss": m["initial_val_loss"], "final_val_loss": m["final_val_loss"],
                                                     "ratio": ratio, "random_init_announced": announced, "converged_claim": m["converged"]},
                   f"val loss {m['initial_val_loss']:.3f} -> {m['final_val_loss']:.3f} (x{ratio:.2f}, required <= {max_ratio}); "
                   f"random init announced: {announced}")


@check("step0_loss_from_init")
def step0_loss_from_init(*, max_ratio: float = 0.7, warm_steps: int = 30) -> Verdict:
    """Pretraining from a trained checkpoint starts well below ln(vocab) (the weights really loaded)."""
    from trainer.train import train

    warm = _paths(_workdir() / "full")
    _train(warm.root, training={"mode": "pretrain", "max_steps": warm_steps, "learning_rate": 3e-3, "save_steps": warm_steps,
                                "eval_steps": warm_steps})
    init_weights = warm.step_checkpoints()[-1]
    out = _workdir() / "from-init"
    cfg = fixtures.run_config(model={"preset": None, "init_arch": str(warm.base_model), "init_weights": str(init_weights)},
                              training={"mode": "pretrain", "max_steps": 1, "save_steps": 1, "eval_steps": 1})
    train(cfg, out)
    m = _metrics(out)
    vocab = len(fixtures.tokenizer())
    ratio = m["initial_val_loss"] / math.log(vocab)
    ok = ratio <= max_ratio and m["random_init"] is False
    return Verdict(ok, {"step0_loss": m["initial_val_loss"], "ln_vocab": math.log(vocab), "ratio": ratio, "random_init": m["random_init"]},
                   f"step-0 loss from init {m['initial_val_loss']:.3f} = {ratio:.2f} x ln(vocab) (required <= {max_ratio})")


@check("andon_stops_on_nan")
def andon_stops_on_nan(*, nan_at_step: int = 3) -> Verdict:
    """A NaN loss at step k stops training with k in the message, keeps the last good checkpoint, exits non-zero.

    The NaN is injected by wrapping trainer.train.forward_loss_sum for training-mode calls.
    """
    import torch

    import trainer.train as loop
    from trainer.checkpoint import verify_checkpoint
    from trainer.errors import AndonStop

    real, calls = loop.forward_loss_sum, {"n": 0}

    def poisoned(model, batch, device):
        loss = real(model, batch, device)
        if model.training:
            calls["n"] += 1
            if calls["n"] == nan_at_step:
                return loss * torch.tensor(float("nan"))
        return loss

    out = _workdir() / "andon"
    loop.forward_loss_sum = poisoned
    try:
        _train(out, training={"max_steps": 6, "save_steps": 1, "eval_steps": 6})
        stopped = None
    except AndonStop as exc:
        stopped = exc
    finally:
        loop.forward_loss_sum = real
    if stopped is None:
        return Verdict(False, {"stopped": False}, f"a NaN loss at step {nan_at_step} did not stop training")
    paths = _paths(out)
    checkpoints = paths.step_checkpoints()
    last_ok = bool(checkpoints) and verify_checkpoint(checkpoints[-1]) is not None
    last_step = paths.step_of(checkpoints[-1]) if checkpoints else None
    status = _metrics(out)["status"]
    ok = (stopped.step == nan_at_step and last_step == nan_at_step - 1 and last_ok and status == "stopped_by_guard"
          and stopped.exit_code != 0)
    return Verdict(ok, {"stopped_at": stopped.step, "message": str(stopped), "last_checkpoint_step": last_step,
                        "status": status, "exit_code": stopped.exit_code},
                   f"stopped at step {stopped.step} (NaN injected at {nan_at_step}); last checkpoint step {last_step}; status {status}")
