"""Checks that nothing fails silently: weights, devices, init arguments, vocab preflight."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


def _error_of(fn, *args, **kwargs) -> str | None:
    from trainer.errors import TrainerError

    try:
        fn(*args, **kwargs)
    except TrainerError as exc:
        return str(exc)
    return None


@check("no_silent_random_init")
def no_silent_random_init() -> Verdict:
    """Loading a directory with missing weights, or weights that do not fit, is an error."""
    from safetensors.torch import load_file, save_file

    from trainer.models import load_pretrained

    src = fixtures.model_dir("tiny", 0)
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        no_weights = Path(tmp) / "no-weights"
        shutil.copytree(src, no_weights)
        for f in no_weights.glob("*.safetensors"):
            f.unlink()
        cases["no weights file"] = _error_of(load_pretrained, no_weights)
        renamed = Path(tmp) / "renamed-tensor"
        shutil.copytree(src, renamed)
        weights = renamed / "model.safetensors"
        tensors = load_file(weights)
        key = next(k for k in tensors if "layers.0.self_attn.q_proj.weight" in k)
        tensors[key.replace("q_proj", "q_projection")] = tensors.pop(key)
        save_file(tensors, weights, metadata={"format": "pt"})
        cases["a tensor under the wrong name"] = _error_of(load_pretrained, renamed)
        cases["no directory"] = _error_of(load_pretrained, Path(tmp) / "absent")
    refused = {case: err is not None for case, err in cases.items()}
    return Verdict(all(refused.values()), {"errors": cases},
                   "; ".join(f"{case}: {'refused' if ok else 'LOADED SILENTLY'}" for case, ok in refused.items()))


@check("no_silent_cpu_fallback")
def no_silent_cpu_fallback() -> Verdict:
    """device=cuda without CUDA is an error; device=auto on CPU warns; parameters off-device are caught.

    On a machine with CUDA, its absence is simulated by patching torch.cuda.is_available.
    """
    import torch

    from trainer import runtime

    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    try:
        cuda_error = _error_of(runtime.resolve_device, "cuda")
        device, warning = runtime.resolve_device("auto")
    finally:
        torch.cuda.is_available = real
    with torch.device("meta"):
        stray = torch.nn.Linear(2, 2)
    placement_error = _error_of(runtime.assert_on_device, stray, torch.device("cpu"))
    ok = cuda_error is not None and device.type == "cpu" and bool(warning) and placement_error is not None
    return Verdict(ok, {"cuda_requested_error": cuda_error, "auto_warning": warning, "misplaced_parameter_error": placement_error},
                   f"cuda requested: {'error' if cuda_error else 'SILENT FALLBACK'}; auto: {'warned' if warning else 'NO WARNING'}; "
                   f"misplaced parameters: {'caught' if placement_error else 'MISSED'}")


@check("init_args_paired")
def init_args_paired() -> Verdict:
    """model.init_arch without model.init_weights (or the reverse) is refused by config validation."""
    from trainer.config import load_config

    base = {"training": {"mode": "pretrain"}, "model": {"preset": None}}
    errors = {}
    for given in ("init_arch", "init_weights"):
        data = json.loads(json.dumps(base))
        data["model"][given] = "/some/dir"
        errors[given] = _error_of(load_config, data=data)
    ok = all(e and "init_arch" in e and "init_weights" in e for e in errors.values())
    return Verdict(ok, {"errors": errors}, "; ".join(f"only {k}: {'refused' if v else 'ACCEPTED'}" for k, v in errors.items()))


@check("encoder_rejected")
def encoder_rejected(*, model_type: str = "bert") -> Verdict:
    """pretrain --init with an encoder architecture is refused before loading anything."""
    from trainer.models import check_decoder_only

    arch = {"model_type": model_type, "architectures": [f"{model_type.capitalize()}ForMaskedLM"]}
    error = _error_of(check_decoder_only, arch, "model.init_arch test")
    decoder_error = _error_of(check_decoder_only, {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}, "x")
    return Verdict(error is not None and decoder_error is None, {"encoder_error": error, "decoder_error": decoder_error},
                   f"{model_type}: {'refused' if error else 'ACCEPTED'}; qwen2: {'accepted' if decoder_error is None else 'REFUSED'}")


@check("vocab_preflight")
def vocab_preflight(*, model_vocab: int = 151936) -> Verdict:
    """A tokenizer/model vocab mismatch is reported with both numbers before any model is allocated."""
    import transformers

    from trainer.config import load_config
    from trainer.experiment import ExperimentPaths
    from trainer.models import prepare_base

    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init"
        shutil.copytree(fixtures.model_dir("tiny", 0), init)
        config = json.loads((init / "config.json").read_text())
        config["vocab_size"] = model_vocab
        (init / "config.json").write_text(json.dumps(config))
        cfg = load_config(data={"model": {"preset": None, "init_arch": str(init), "init_weights": str(init)},
                                "training": {"mode": "pretrain"}})
        allocated = []
        real = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoModelForCausalLM.from_config
        transformers.AutoModelForCausalLM.from_pretrained = lambda *a, **k: allocated.append("from_pretrained")
        transformers.AutoModelForCausalLM.from_config = lambda *a, **k: allocated.append("from_config")
        try:
            error = _error_of(prepare_base, cfg, [], ExperimentPaths(Path(tmp) / "exp").base_model)
        finally:
            transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoModelForCausalLM.from_config = real
    tok_size = len(fixtures.tokenizer())
    ok = error is not None and str(model_vocab) in error and str(tok_size) in error and not allocated
    return Verdict(ok, {"error": error, "tokenizer_vocab": tok_size, "model_vocab": model_vocab, "allocations_before_error": allocated},
                   f"mismatch {tok_size} vs {model_vocab}: {'refused with both numbers' if ok else 'NOT refused as required'}"
                   + (f" (allocated first: {allocated})" if allocated else ""))
