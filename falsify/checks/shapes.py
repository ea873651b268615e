"""Checks on model shapes: parameter counts, QLoRA storage, causal masking, norm/attention properties."""

from __future__ import annotations

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


@check("parameter_count")
def parameter_count(*, preset: str, expected_total: int, vocab_size: int = 0, lora_rank: int = 0,
                    expected_trainable: int = 0, fraction_min: float = 0.0, fraction_max: float = 1.0) -> Verdict:
    """Count a preset's parameters on the meta device (real module code, no memory).

    With `lora_rank`, peft adds rank-r adapters to all seven projections and only they
    count as trainable; `expected_total` is then the base count.
    """
    from trainer.config import LoraConfig
    from trainer.models import count_parameters, preset_config

    config = preset_config(preset, vocab_size=vocab_size or None)
    total, _ = count_parameters(config)
    observed = {"preset": preset, "total": total, "expected_total": expected_total}
    ok = total == expected_total
    if lora_rank:
        with_lora, trainable = count_parameters(config, LoraConfig(rank=lora_rank, alpha=2 * lora_rank, dropout=0.0))
        fraction = trainable / total
        observed.update(trainable=trainable, expected_trainable=expected_trainable, trainable_fraction=round(fraction, 6),
                        fraction_band=[fraction_min, fraction_max], total_with_lora=with_lora)
        ok = ok and trainable == expected_trainable and fraction_min <= fraction <= fraction_max
    return Verdict(ok, observed, f"total {total:,} (expected {expected_total:,})"
                   + (f", trainable {observed['trainable']:,} = {observed['trainable_fraction']:.2%}" if lora_rank else ""))


def _storage_bytes(t) -> int:
    return t.numel() * t.element_size()


@check("qlora_storage_reduction")
def qlora_storage_reduction(*, preset: str = "tiny", min_reduction: float = 0.70) -> Verdict:
    """Storage of the quantized model as the trainer loads it for QLoRA, against the same layers in bf16.

    The preset is saved in bf16 and loaded by `trainer.models.load_base_weights` (its quantization
    config, on the CPU). The decoder's linear layers are what QLoRA quantizes: each counts at its
    bytes as loaded (bitsandbytes Params4bit: the packed 4-bit codes plus every tensor of its
    quant_state, as saved) against 2 bytes per weight; a linear layer left unquantized counts at
    its loaded size. The layers must be NF4. The whole base (embeddings and norms as loaded) is
    reported too, because that is what a reader of "70% smaller" may assume.
    """
    import bitsandbytes as bnb
    import torch

    from trainer.models import BaseModel, load_base_weights

    with fixtures.saved_preset(preset) as path:
        model = load_base_weights(fixtures.run_config(training={"mode": "qlora"}), BaseModel(path, fixtures.tokenizer(), True, preset),
                                  torch.device("cpu"))
    bf16 = loaded = quantized_layers = plain_layers = 0
    quant_types, counted = set(), set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        w, state = module.weight, getattr(module.weight, "quant_state", None)
        counted.add(id(w))
        if isinstance(module, bnb.nn.Linear4bit) and state is not None:
            quantized_layers += 1
            quant_types.add(state.quant_type)
            bf16 += 2 * state.shape.numel()
            loaded += _storage_bytes(w) + sum(_storage_bytes(v) for v in state.as_dict(packed=True).values())
        else:
            plain_layers += 1
            bf16, loaded = bf16 + 2 * w.numel(), loaded + _storage_bytes(w)
    others = [p for p in model.parameters() if id(p) not in counted]
    others_loaded, others_bf16 = sum(_storage_bytes(p) for p in others), sum(2 * p.numel() for p in others)
    observed = {"preset": preset, "quantized_layers": quantized_layers, "unquantized_linear_layers": plain_layers,
                "quant_types": sorted(quant_types), "bf16_linear_bytes": bf16, "loaded_linear_bytes": loaded,
                "min_reduction": min_reduction}
    if bf16 == 0 or quantized_layers == 0:
        return Verdict(False, observed, "no layer was quantized to 4 bits")
    reduction = 1 - loaded / bf16
    whole = 1 - (loaded + others_loaded) / (bf16 + others_bf16)
    observed.update(linear_reduction=round(reduction, 4), other_loaded_bytes=others_loaded, whole_base_reduction=round(whole, 4))
    ok = reduction >= min_reduction and quant_types == {"nf4"}
    return Verdict(ok, observed, f"{quantized_layers} {'/'.join(sorted(quant_types))} layers ({plain_layers} linear left unquantized): "
                   f"{reduction:.1%} smaller than bf16 as loaded (whole base {whole:.1%}); required >= {min_reduction:.0%} in NF4")


@check("causal_masking")
def causal_masking(*, position: int = 10, seq_len: int = 24, trials: int = 3) -> Verdict:
    """Logits at positions <= t must not move when tokens after t change."""
    import torch

    model = fixtures.tiny_model(seed=1)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for _ in range(trials):
            ids = torch.randint(0, vocab, (1, seq_len), generator=gen)
            changed = ids.clone()
            changed[0, position + 1:] = torch.randint(0, vocab, (seq_len - position - 1,), generator=gen)
            a = model(input_ids=ids).logits[0, : position + 1]
            b = model(input_ids=changed).logits[0, : position + 1]
            worst = max(worst, (a - b).abs().max().item())
    return Verdict(worst == 0.0, {"position": position, "max_abs_logit_change_at_or_before_t": worst},
                   f"max |Δlogit| at positions <= {position} after changing later tokens: {worst:.3g}")


def _run_property(test) -> tuple[bool, str]:
    """Run a hypothesis property; a falsifying example (assertion or crash) becomes the message."""
    try:
        test()
        return True, ""
    except Exception as exc:  # hypothesis re-raises the minimal failing example's own error
        return False, f"{type(exc).__name__}: {str(exc)[:800]}"


@check("rmsnorm_properties")
def rmsnorm_properties(*, max_examples: int = 40, atol: float = 1e-4) -> Verdict:
    """Hypothesis: RMSNorm keeps shape, is invariant to positive scaling, and gives unit RMS (weight 1)."""
    import torch
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True)
    @given(rows=st.integers(1, 4), width=st.sampled_from([8, 32, 96]), scale=st.floats(0.01, 100.0),
           seed=st.integers(0, 2**16))
    def prop(rows, width, scale, seed):
        norm = Qwen2RMSNorm(width, eps=1e-12)
        x = torch.randn(rows, 3, width, generator=torch.Generator().manual_seed(seed)) + 0.1
        y = norm(x)
        assert y.shape == x.shape, f"shape {tuple(y.shape)} != {tuple(x.shape)}"
        assert torch.allclose(norm(x * scale), y, atol=atol), f"not scale invariant (scale {scale})"
        rms = y.pow(2).mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones_like(rms), atol=1e-3), f"rms {rms.flatten()[:3].tolist()} != 1"

    ok, why = _run_property(prop)
    return Verdict(ok, {"max_examples": max_examples, "falsifying_example": why or None},
                   "RMSNorm properties held" if ok else f"RMSNorm property refuted: {why}")


@check("attention_shapes")
def attention_shapes(*, max_examples: int = 15) -> Verdict:
    """Hypothesis: for any batch and length, logits are (batch, seq, vocab) and finite; GQA heads as configured."""
    import torch
    from hypothesis import given, settings
    from hypothesis import strategies as st

    model = fixtures.tiny_model(seed=2)
    cfg = model.config
    attn = model.model.layers[0].self_attn

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True)
    @given(b=st.integers(1, 3), s=st.integers(1, 40), seed=st.integers(0, 2**16))
    def prop(b, s, seed):
        ids = torch.randint(0, cfg.vocab_size, (b, s), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        assert out.logits.shape == (b, s, cfg.vocab_size), f"logits {tuple(out.logits.shape)}"
        assert out.hidden_states[-1].shape == (b, s, cfg.hidden_size)
        assert torch.isfinite(out.logits).all(), "non-finite logits"

    head_dim = cfg.hidden_size // cfg.num_attention_heads
    shapes_ok = (attn.k_proj.out_features == cfg.num_key_value_heads * head_dim
                 and attn.q_proj.out_features == cfg.num_attention_heads * head_dim)
    ok, why = _run_property(prop)
    if not shapes_ok:
        ok, why = False, f"k_proj {attn.k_proj.out_features} / q_proj {attn.q_proj.out_features} do not match GQA heads"
    return Verdict(ok, {"heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads, "falsifying_example": why or None},
                   "attention shape properties held" if ok else f"refuted: {why}")
