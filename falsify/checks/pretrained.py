"""Checks on a real pretrained base model: its weights really load (SmolLM2-135M-Instruct, prepared offline)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


@check("pretrained_weights_loaded")
def pretrained_weights_loaded(*, model: str = "smollm2-135m-instruct", mode: str = "lora", samples: int = 4,
                              max_seq_len: int = 256, max_ratio: float = 0.3) -> Verdict:
    """A real base model's step-0 validation loss is far below ln(vocab), where random init sits.

    The model is prepared once into the cache (`trainer.pretrained.prepare`, idempotent) and then
    goes the trainer's whole way: `load_config` with `model.path: NAME` (resolved to the prepared
    directory), `prepare_base`, `load_for_training` for `mode` (LoRA adapters at identity), the
    trainer's chat-template encoding of `samples` validation pairs, and `evaluate`.
    """
    import torch

    from trainer.config import load_config
    from trainer.data import build_examples, eval_batches, load_jsonl
    from trainer.errors import TrainerError
    from trainer.models import load_for_training, prepare_base
    from trainer.pretrained import prepare
    from trainer.train import evaluate

    try:
        prepared = prepare(model).path  # converted once per cache; its own reload check refuses to publish unloadable weights
    except TrainerError as exc:
        return Verdict(False, {"model": model, "prepare_error": str(exc)}, f"{model} could not be prepared: {exc}")
    data = fixtures.dataset_dir()
    cfg = load_config(data={"model": {"path": model}, "training": {"mode": mode, "batch_size": samples, "device": "cpu"},
                            "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                                     "max_seq_len": max_seq_len, "max_validation_samples": samples}})
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="rtf-pretrained-") as tmp:
        base = prepare_base(cfg, [], Path(tmp) / "base")
        net = load_for_training(cfg, base, cpu)
    records = load_jsonl(cfg.data.validation, cfg.data.max_validation_samples)  # the fixtures' synthetic Rust pairs
    examples, _ = build_examples(base.tokenizer, records, max_seq_len)
    loss = evaluate(net, eval_batches(examples, samples, base.tokenizer.pad_token_id), cpu)
    vocab = net.get_input_embeddings().num_embeddings
    ratio = loss / math.log(vocab)
    ok = ratio <= max_ratio and not base.random_init and Path(cfg.model.path) == prepared
    return Verdict(ok, {"model": model, "mode": mode, "directory": cfg.model.path, "random_init": base.random_init,
                        "samples": len(examples), "label_tokens": sum(e.n_labels for e in examples), "step0_val_loss": loss,
                        "ln_vocab": math.log(vocab), "ratio": ratio, "max_ratio": max_ratio},
                   f"{model} ({mode}): step-0 validation loss {loss:.3f} = {ratio:.3f} x ln(vocab {vocab}) "
                   f"(required <= {max_ratio}; random init sits near 1.0)")
