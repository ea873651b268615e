"""Small, real inputs the checks share: Rust training pairs, a tiny tokenizer and tiny models.

Built once per process (lru_cache) and, where expensive, cached on disk by content hash
(the tokenizer cache of trainer.tokenizer), so tier1 stays within seconds.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
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


def write_dataset(root: Path) -> dict[str, Path]:
    """train.jsonl (48 records) and validation.jsonl (12) of `rust_pairs` in `root`."""
    from trainer.files import write_jsonl_atomic

    records = rust_pairs(60)
    return {"train": write_jsonl_atomic(root / "train.jsonl", records[:48]),
            "validation": write_jsonl_atomic(root / "validation.jsonl", records[48:])}


@functools.lru_cache(maxsize=1)
def dataset_dir() -> Path:
    """`write_dataset` in a process-lifetime temp directory."""
    root = Path(tempfile.mkdtemp(prefix="rtf-data-"))
    write_dataset(root)
    return root


@functools.lru_cache(maxsize=1)
def tokenizer():
    from trainer.experiment import quiet_libraries
    from trainer.tokenizer import train_tokenizer

    quiet_libraries()
    return train_tokenizer(rust_pairs(60), 4096)


def tiny_config(vocab_size: int | None = None, **overrides):
    """The tiny preset's config; its vocab is the fixture tokenizer's unless `vocab_size` says otherwise."""
    from trainer.models import preset_config

    return preset_config("tiny", vocab_size=vocab_size or len(tokenizer()), **overrides)


def preset_model(preset: str = "tiny", seed: int = 0, *, attn_implementation: str | None = None, vocab_size: int | None = None):
    """A random-init preset (fp32, CPU), the construction the trainer's presets use; open vocab: the fixture tokenizer's."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.models import preset_config

    config = preset_config(preset, vocab_size=vocab_size or len(tokenizer()))
    kwargs = {}
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
        kwargs["attn_implementation"] = attn_implementation
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, **kwargs).eval()


def tiny_model(seed: int = 0, **options):
    """A random-init tiny Qwen2 (see `preset_model`)."""
    return preset_model("tiny", seed, **options)


@functools.lru_cache(maxsize=4)
def model_dir(preset: str = "tiny", seed: int = 0) -> Path:
    """`save_pretrained` of preset_model(preset, seed) with the fixture tokenizer: the real loading path."""
    root = Path(tempfile.mkdtemp(prefix=f"rtf-{preset}-{seed}-"))
    preset_model(preset, seed).save_pretrained(root)
    tokenizer().save_pretrained(root)
    return root


@contextlib.contextmanager
def saved_preset(preset: str, seed: int = 0, dtype: str = "bfloat16"):
    """`preset_model` saved in `dtype` with the fixture tokenizer to a temporary directory, removed afterwards.

    For a model too big to keep on disk per process (the 0.5B shape is 1 GB in bf16); tiny ones can use `model_dir`.
    """
    import torch

    with tempfile.TemporaryDirectory(prefix=f"rtf-{preset}-{seed}-") as root:
        preset_model(preset, seed).to(getattr(torch, dtype)).save_pretrained(root)
        tokenizer().save_pretrained(root)
        yield Path(root)


def lora_settings(rank: int = 8, alpha: float = 16.0, dropout: float = 0.0):
    from trainer.config import LoraConfig

    return LoraConfig(rank=rank, alpha=alpha, dropout=dropout)


def _settings(mode: str, dropout: float = 0.0):
    """A trainer Config for `mode` with the fixtures' LoRA settings (rank 8, alpha 16)."""
    return run_config(training={"mode": mode}, lora=dataclasses.asdict(lora_settings(dropout=dropout)))


def _tiny_base(seed: int):
    from trainer.models import BaseModel

    return BaseModel(model_dir("tiny", seed), tokenizer(), True, f"fixture tiny model, seed {seed}")


def load_base(mode: str, seed: int = 0):
    """The frozen base as the trainer loads it for `mode` (qlora: NF4 via bitsandbytes), on the CPU."""
    import torch

    from trainer.models import load_base_weights

    return load_base_weights(_settings(mode), _tiny_base(seed), torch.device("cpu"))


@functools.lru_cache(maxsize=4)
def _pristine_adapted(mode: str, seed: int, dropout: float):
    import torch

    from trainer.models import load_for_training

    return load_for_training(_settings(mode, dropout), _tiny_base(seed), torch.device("cpu"))


def adapted(mode: str, seed: int = 0, dropout: float = 0.0):
    """The base loaded for `mode` (lora | qlora) and wrapped in fresh LoRA adapters by the trainer.

    Built once per (mode, seed, dropout) through the trainer's `load_for_training`; every
    caller gets its own deep copy (checks train and mutate it), which costs a third of a build.
    """
    return copy.deepcopy(_pristine_adapted(mode, seed, dropout))


def optimizer(model, lr: float = 1e-3):
    """The trainer's optimizer (`build_optimizer`: AdamW over the trainable parameters) at a constant `lr`."""
    from trainer.config import TrainingConfig
    from trainer.train import build_optimizer

    return build_optimizer(model, TrainingConfig(learning_rate=lr, warmup_ratio=0.0, min_lr_ratio=1.0), total_steps=1)


def clear_caches() -> None:
    """Forget the built models, so that a planted defect reaches the next build."""
    for cached in (model_dir, _pristine_adapted):
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
