"""Tier-3 checks on CUDA: parity with the CPU, the VRAM ceiling of a 0.5B QLoRA step, a throughput floor.

Contracts mark these `requires: [cuda]`; without CUDA the plugin skips them with the
reason and the scorecard lists them as not run.
"""

from __future__ import annotations

import time

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


def _qlora_step(preset: str, batch_size: int, seq_len: int, steps: int):
    """Load the preset for QLoRA on CUDA and train `steps` steps (after a warm-up), all through the trainer's code."""
    import torch

    from trainer.models import BaseModel, load_for_training
    from trainer.train import train_step

    cuda = torch.device("cuda")
    cfg = fixtures.run_config(training={"mode": "qlora"}, lora={"rank": 16, "alpha": 32.0, "dropout": 0.05})
    base = BaseModel(fixtures.model_dir(preset), fixtures.tokenizer(), True, f"random {preset}")
    model = load_for_training(cfg, base, cuda).train()
    optimizer, scheduler = fixtures.optimizer(model, lr=2e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, min(vocab, len(fixtures.tokenizer())), (batch_size, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    torch.cuda.reset_peak_memory_stats()
    train_step(model, optimizer, scheduler, [batch], cuda, 1.0, 1)  # warm-up
    torch.cuda.synchronize()
    started = time.perf_counter()
    for step in range(steps):
        train_step(model, optimizer, scheduler, [batch], cuda, 1.0, step + 2)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return torch.cuda.max_memory_allocated(), batch_size * seq_len * steps / seconds, torch.cuda.get_device_name(0)


@check("vram_ceiling")
def vram_ceiling(*, preset: str = "qwen2.5-0.5b", batch_size: int = 4, seq_len: int = 512, max_gb: float = 8.0) -> Verdict:
    """Peak torch.cuda.max_memory_allocated of a QLoRA training step stays under `max_gb`."""
    peak, _, device = _qlora_step(preset, batch_size, seq_len, 1)
    gb = peak / 2**30
    return Verdict(gb < max_gb, {"peak_vram_gb": round(gb, 3), "max_gb": max_gb, "device": device, "batch_size": batch_size,
                                 "seq_len": seq_len}, f"peak VRAM {gb:.2f} GB for a {preset} QLoRA step (limit {max_gb} GB)")


@check("throughput_floor")
def throughput_floor(*, preset: str = "qwen2.5-0.5b", batch_size: int = 4, seq_len: int = 512, steps: int = 5,
                     min_tokens_per_s: float = 2000.0) -> Verdict:
    """QLoRA training tokens/s on CUDA (after one warm-up step) is at least `min_tokens_per_s`."""
    peak, rate, device = _qlora_step(preset, batch_size, seq_len, steps)
    return Verdict(rate >= min_tokens_per_s, {"tokens_per_s": round(rate, 1), "floor": min_tokens_per_s, "device": device,
                                              "peak_vram_gb": round(peak / 2**30, 3)},
                   f"{rate:.0f} tokens/s for {preset} QLoRA on {device} (floor {min_tokens_per_s:.0f})")


@check("cuda_cpu_forward_parity")
def cuda_cpu_forward_parity(*, rtol: float = 0.02) -> Verdict:
    """The tiny model's loss on one batch agrees between CPU fp32 and CUDA bf16 autocast within rtol."""
    import torch

    from trainer.data import count_label_tokens
    from trainer.train import forward_loss_sum

    model, batch = fixtures.tiny_model(seed=5), fixtures.batch()
    with torch.no_grad():
        cpu = forward_loss_sum(model, batch, torch.device("cpu")).item()
        gpu = forward_loss_sum(model.to("cuda"), batch, torch.device("cuda")).item()
    n = count_label_tokens(batch)
    rel = abs(cpu - gpu) / abs(cpu)
    return Verdict(rel <= rtol, {"cpu_loss": cpu / n, "cuda_loss": gpu / n, "relative_diff": rel, "rtol": rtol},
                   f"loss CPU {cpu / n:.5f} vs CUDA {gpu / n:.5f} (relative {rel:.2%}, allowed {rtol:.0%})")


@check("cuda_cpu_loss_curve_parity")
def cuda_cpu_loss_curve_parity(*, steps: int = 10, rtol: float = 0.05) -> Verdict:
    """The same seeded tiny LoRA run on CPU and on CUDA gives loss curves within rtol at every step."""
    from falsify.checks.runs import _curves, _train, _workdir

    curves = {}
    for device in ("cpu", "cuda"):
        out = _workdir() / device
        _train(out, training={"device": device, "max_steps": steps, "save_steps": steps, "eval_steps": steps})
        curves[device] = [loss for _, loss in _curves(out)[0]]
    worst = max(abs(a - b) / abs(a) for a, b in zip(curves["cpu"], curves["cuda"]))
    return Verdict(worst <= rtol and len(curves["cpu"]) == len(curves["cuda"]) == steps,
                   {"cpu": curves["cpu"], "cuda": curves["cuda"], "max_relative_diff": worst, "rtol": rtol},
                   f"max relative loss difference over {steps} steps: {worst:.2%} (allowed {rtol:.0%})")
