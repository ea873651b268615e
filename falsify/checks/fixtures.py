"""Small, real inputs the checks share: Rust training pairs, a tiny tokenizer and tiny models.

Built once per process (lru_cache) and, where expensive, cached on disk by content hash
(the tokenizer cache of trainer.tokenizer), so tier1 stays within seconds.
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
from pathlib import Path

OPS = [("add", "+"), ("sub", "-"), ("mul", "*")]
TYPES = ["i32", "i64", "u32", "u64"]


def rust_pairs(n: int) -> list[dict]:
    """n deterministic (function, tests) records in the corpus schema: valid Rust, varied shapes."""
    records = []
    for i in range(n):
        name, op = OPS[i % len(OPS)]
        ty = TYPES[i % len(TYPES)]
        k = i % 7 + 1
        fn = f"pub fn {name}_{k}_{ty}(x: {ty}) -> {ty} {{\n    x {op} {k}\n}}"
        expected = {"+": 10 + k, "-": 10 - k, "*": 10 * k}[op]
        tests = f"#[test]\nfn test_{name}_{k}_{ty}_ten() {{\n    assert_eq!({name}_{k}_{ty}(10), {expected});\n}}\n"
        if i % 3 == 0:
            tests += (f"\n#[test]\nfn test_{name}_{k}_{ty}_is_deterministic() {{\n"
                      f"    assert_eq!({name}_{k}_{ty}(3), {name}_{k}_{ty}(3));\n}}\n")
        records.append({"input": fn, "output": tests,
                        "metadata": {"id": f"synthetic-{i}", "crate": "synthetic", "function": f"{name}_{k}_{ty}"}})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@functools.lru_cache(maxsize=1)
def dataset_dir() -> Path:
    """train/validation JSONL of `rust_pairs` in a process-lifetime temp directory."""
    root = Path(tempfile.mkdtemp(prefix="rtf-data-"))
    records = rust_pairs(60)
    write_jsonl(root / "train.jsonl", records[:48])
    write_jsonl(root / "validation.jsonl", records[48:])
    return root


@functools.lru_cache(maxsize=1)
def tokenizer():
    from trainer.experiment import quiet_libraries
    from trainer.tokenizer import train_tokenizer

    quiet_libraries()
    return train_tokenizer(rust_pairs(60), 4096)


def tiny_config(**overrides):
    from trainer.models import preset_config

    return preset_config("tiny", vocab_size=len(tokenizer()), **overrides)


def tiny_model(seed: int = 0, **overrides):
    """A random-init tiny Qwen2 (fp32, CPU), the same construction the trainer's preset uses."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(**overrides)).eval()


@functools.lru_cache(maxsize=4)
def tiny_model_dir(seed: int = 0) -> Path:
    """`save_pretrained` of tiny_model(seed) with its tokenizer: the real loading path."""
    root = Path(tempfile.mkdtemp(prefix=f"rtf-tiny-{seed}-"))
    tiny_model(seed).save_pretrained(root)
    tokenizer().save_pretrained(root)
    return root


def lora_settings(rank: int = 8, alpha: float = 16.0, dropout: float = 0.0):
    from trainer.config import LoraConfig

    return LoraConfig(rank=rank, alpha=alpha, dropout=dropout)


def load_base(mode: str, seed: int = 0):
    """The frozen base as the trainer loads it for `mode` (qlora: NF4 via bitsandbytes)."""
    import torch

    from trainer.models import disable_cpu_bf16_inference_kernel, load_pretrained, quantization_config

    if mode == "qlora":
        model = load_pretrained(tiny_model_dir(seed), quantization_config=quantization_config(torch.device("cpu")),
                                device_map="cpu")
        disable_cpu_bf16_inference_kernel(model)
        return model
    return load_pretrained(tiny_model_dir(seed), dtype=torch.float32)


@functools.lru_cache(maxsize=4)
def _pristine_adapted(mode: str, seed: int, dropout: float):
    from trainer.models import apply_lora

    return apply_lora(load_base(mode, seed), lora_settings(dropout=dropout))


def adapted(mode: str, seed: int = 0, dropout: float = 0.0):
    """The base loaded for `mode` (lora | qlora) and wrapped in fresh LoRA adapters by the trainer.

    Built once per (mode, seed, dropout) through the real load and `apply_lora` path; every
    caller gets its own deep copy (checks train and mutate it), which costs a third of a build.
    """
    return copy.deepcopy(_pristine_adapted(mode, seed, dropout))


def clear_caches() -> None:
    """Forget the built models, so that a planted defect reaches the next build."""
    for cached in (tiny_model_dir, _pristine_adapted):
        cached.cache_clear()


def batch(n: int = 4, max_seq_len: int = 96, start: int = 0) -> dict:
    """A right-padded batch of `n` chat examples of different lengths."""
    from trainer.data import build_examples, collate

    tok = tokenizer()
    examples, _ = build_examples(tok, rust_pairs(start + n)[start:], max_seq_len)
    return collate(examples, tok.pad_token_id)


def examples(n: int = 4, max_seq_len: int = 96, start: int = 0) -> list:
    from trainer.data import build_examples

    return build_examples(tokenizer(), rust_pairs(start + n)[start:], max_seq_len)[0]


def run_config(data: dict[str, Path] | None = None, **sections):
    """A real trainer Config: tiny preset, short sequences, 4 steps; `sections` override keys."""
    from trainer.config import load_config

    data = data or {"train": dataset_dir() / "train.jsonl", "validation": dataset_dir() / "validation.jsonl"}
    raw = {
        "name": "check",
        "model": {"preset": "tiny"},
        "data": {"train": str(data["train"]), "validation": str(data["validation"]), "max_seq_len": 96,
                 "max_validation_samples": 8},
        "training": {"mode": "lora", "max_steps": 4, "batch_size": 4, "learning_rate": 2e-3,
                     "save_steps": 2, "eval_steps": 2, "device": "cpu", "seed": 7},
        "generation": {"max_new_tokens": 16},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return load_config(data=raw)
