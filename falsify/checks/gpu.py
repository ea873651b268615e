"""Tier-3 checks on CUDA: parity with the CPU, the VRAM ceiling of a 0.5B QLoRA step, a throughput floor.

Contracts mark these `requires: [cuda]`; without CUDA the plugin skips them with the
reason and the scorecard lists them as not run. Each takes `device` (default `cuda`) so
that tests/test_planted_defects.py can prove on a CPU that a planted defect reaches the
code the check measures, through a CPU stand-in: bf16 autocast on the CPU for the
parity checks, the bytes the step's tensors hold for the VRAM reading, the same timed
loop for throughput. Those proofs say nothing about CUDA numbers; the tier-3 items do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


@dataclass
class StepReading:
    """What a QLoRA step measured: memory in MiB (and how it was read), tokens/s, the device."""

    memory_mb: float
    memory_reading: str
    tokens_per_s: float
    seconds: float
    device: str


def held_mb(model, optimizer) -> float:
    """CPU stand-in for the allocator's reading: MiB of the distinct storages the step holds.

    Parameters (4-bit packed weights included) with their bitsandbytes quant state, buffers,
    gradients and optimizer state; activations are gone by the time it is read.
    """
    import torch

    seen: dict[int, int] = {}

    def add(t) -> None:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()

    for p in model.parameters():
        add(p)
        add(p.grad)
        state = getattr(p, "quant_state", None)
        for value in (state.as_dict(packed=True).values() if state is not None else ()):
            add(value)
    for b in model.buffers():
        add(b)
    for state in optimizer.state.values():
        for value in state.values():
            add(value)
    return sum(seen.values()) / 2**20


def _qlora_step(preset: str, batch_size: int, seq_len: int, steps: int, device_name: str) -> StepReading:
    """Load the preset for QLoRA on `device_name` and train `steps` steps (after a warm-up), all through the trainer's code.

    The VRAM peak starts before loading, as in a training run (trainer.runtime.peak_vram_mb, the rubric's measure too).
    """
    import torch

    from trainer.models import BaseModel, load_for_training
    from trainer.runtime import peak_vram_mb, reset_peak_vram
    from trainer.train import train_step

    device = torch.device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = fixtures.run_config(training={"mode": "qlora", "device": device_name}, lora={"rank": 16, "alpha": 32.0, "dropout": 0.05})
    reset_peak_vram(device)
    base = BaseModel(fixtures.model_dir(preset), fixtures.tokenizer(), True, f"random {preset}")
    model = load_for_training(cfg, base, device).train()
    optimizer, scheduler = fixtures.optimizer(model, lr=2e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, min(vocab, len(fixtures.tokenizer())), (batch_size, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    train_step(model, optimizer, scheduler, [batch], device, 1.0, 1)  # warm-up
    sync()
    started = time.perf_counter()
    for step in range(steps):
        train_step(model, optimizer, scheduler, [batch], device, 1.0, step + 2)
    sync()
    seconds = time.perf_counter() - started
    peak = peak_vram_mb(device)
    if peak is None:
        peak, reading = held_mb(model, optimizer), "cpu stand-in: MiB held by parameters, quant state, gradients, optimizer state"
    else:
        reading = "peak torch.cuda.max_memory_reserved since before loading (trainer.runtime.peak_vram_mb)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return StepReading(peak, reading, batch_size * seq_len * steps / seconds, seconds, name)


@check("vram_ceiling")
def vram_ceiling(*, preset: str = "qwen2.5-0.5b", batch_size: int = 4, seq_len: int = 512, max_gb: float = 8.0,
                 device: str = "cuda") -> Verdict:
    """Peak VRAM (trainer.runtime.peak_vram_mb: allocator-reserved MiB) of loading and stepping QLoRA stays under `max_gb` GiB."""
    r = _qlora_step(preset, batch_size, seq_len, 1, device)
    gb = r.memory_mb / 1024
    return Verdict(gb < max_gb, {"peak_vram_gb": round(gb, 4), "max_gb": max_gb, "reading": r.memory_reading, "device": r.device,
                                 "preset": preset, "batch_size": batch_size, "seq_len": seq_len},
                   f"peak VRAM {gb:.3f} GiB for a {preset} QLoRA step on {r.device} (limit {max_gb} GiB; {r.memory_reading})")


@check("throughput_floor")
def throughput_floor(*, preset: str = "qwen2.5-0.5b", batch_size: int = 4, seq_len: int = 512, steps: int = 5,
                     min_tokens_per_s: float = 2000.0, device: str = "cuda") -> Verdict:
    """QLoRA training tokens/s (after one warm-up step) is at least `min_tokens_per_s`."""
    r = _qlora_step(preset, batch_size, seq_len, steps, device)
    return Verdict(r.tokens_per_s >= min_tokens_per_s,
                   {"tokens_per_s": round(r.tokens_per_s, 1), "floor": min_tokens_per_s, "device": r.device, "steps": steps,
                    "seconds": r.seconds, "peak_vram_gb": round(r.memory_mb / 1024, 4)},
                   f"{r.tokens_per_s:.0f} tokens/s for {preset} QLoRA on {r.device} (floor {min_tokens_per_s:.0f})")


@check("cuda_cpu_forward_parity")
def cuda_cpu_forward_parity(*, rtol: float = 0.02, device: str = "cuda") -> Verdict:
    """The tiny model's loss on one batch agrees between CPU fp32 and `device` in bf16 autocast within rtol.

    device=cpu: the bf16 path runs on the CPU (the stand-in that lets a CPU show a defect of the mixed-precision path).
    """
    import torch

    from trainer.data import count_label_tokens
    from trainer.runtime import precision
    from trainer.train import forward_loss_sum

    model, batch = fixtures.tiny_model(seed=5), fixtures.batch()
    with torch.no_grad():
        with precision("fp32"):
            reference = forward_loss_sum(model, batch, torch.device("cpu")).item()
        with precision("bf16"):
            mixed = forward_loss_sum(model.to(device), batch, torch.device(device)).item()
    n = count_label_tokens(batch)
    rel = abs(reference - mixed) / abs(reference)
    return Verdict(rel <= rtol, {"cpu_fp32_loss": reference / n, "bf16_loss": mixed / n, "device": device, "relative_diff": rel,
                                 "rtol": rtol},
                   f"loss CPU fp32 {reference / n:.5f} vs {device} bf16 {mixed / n:.5f} (relative {rel:.2%}, allowed {rtol:.0%})")


@check("cuda_cpu_loss_curve_parity")
def cuda_cpu_loss_curve_parity(*, steps: int = 10, rtol: float = 0.05, device: str = "cuda") -> Verdict:
    """The same seeded tiny LoRA run in CPU fp32 and on `device` in bf16 (training.precision) gives loss curves within rtol."""
    from falsify.checks.runs import _curves, _train, _workdir

    curves = {}
    for name, training in (("cpu_fp32", {"device": "cpu", "precision": "fp32"}), ("bf16", {"device": device, "precision": "bf16"})):
        out = _workdir() / name
        _train(out, training={**training, "max_steps": steps, "save_steps": steps, "eval_steps": steps})
        curves[name] = [loss for _, loss in _curves(out)[0]]
    worst = max(abs(a - b) / abs(a) for a, b in zip(curves["cpu_fp32"], curves["bf16"]))
    return Verdict(worst <= rtol and len(curves["cpu_fp32"]) == len(curves["bf16"]) == steps,
                   {"cpu_fp32": curves["cpu_fp32"], "bf16": curves["bf16"], "device": device, "max_relative_diff": worst, "rtol": rtol},
                   f"max relative loss difference over {steps} steps, CPU fp32 vs {device} bf16: {worst:.2%} (allowed {rtol:.0%})")
