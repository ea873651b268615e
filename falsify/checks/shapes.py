"""Checks on model shapes: parameter counts, QLoRA storage, causal masking, norm/attention properties."""

from __future__ import annotations

import math

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


def nf4_bytes(numel: int, blocksize: int = 64) -> int:
    """bitsandbytes NF4 storage: two 4-bit codes a byte plus one fp32 absmax per block."""
    return math.ceil(numel / 2) + math.ceil(numel / blocksize) * 4


@check("qlora_storage_reduction")
def qlora_storage_reduction(*, preset: str = "tiny", min_reduction: float = 0.70) -> Verdict:
    """Storage of the NF4-quantized linear layers against the same layers in bf16.

    tiny: measured from the loaded Linear4bit modules (packed weight + absmax), and the
    formula is checked against the measurement. Other presets: computed with that formula
    from the module shapes on the meta device. The whole base (embeddings stay bf16) is
    reported too, because that is what a reader of "70% smaller" may assume.
    """
    import torch

    if preset == "tiny":
        import bitsandbytes as bnb

        model = fixtures.load_base("qlora")
        measured, formula, bf16, others = 0, 0, 0, 0
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                w = module.weight
                n = w.quant_state.shape.numel()
                measured += w.numel() * w.element_size() + w.quant_state.absmax.numel() * w.quant_state.absmax.element_size()
                formula += nf4_bytes(n)
                bf16 += 2 * n
        quantized_ids = {id(m.weight) for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)}
        others = sum(2 * p.numel() for p in model.parameters() if id(p) not in quantized_ids)
        quantized = measured
        observed = {"measured_nf4_bytes": measured, "formula_nf4_bytes": formula}
        formula_ok = abs(measured - formula) <= 0.01 * measured
    else:
        from transformers import AutoModelForCausalLM

        from trainer.models import preset_config

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(preset_config(preset, vocab_size=32000))
        bf16 = quantized = others = 0
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
                n = module.weight.numel()
                bf16, quantized = bf16 + 2 * n, quantized + nf4_bytes(n)
        linear_ids = {id(m.weight) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")}
        others = sum(2 * p.numel() for p in model.parameters() if id(p) not in linear_ids)
        observed, formula_ok = {"computed_from": "module shapes on meta device"}, True
    if bf16 == 0:
        return Verdict(False, {**observed, "preset": preset, "quantized_layers": 0}, "no layer was quantized to NF4")
    reduction = 1 - quantized / bf16
    whole = 1 - (quantized + others) / (bf16 + others)
    observed.update(preset=preset, bf16_linear_bytes=bf16, nf4_linear_bytes=quantized, linear_reduction=round(reduction, 4),
                    unquantized_bf16_bytes=others, whole_base_reduction=round(whole, 4), min_reduction=min_reduction)
    ok = reduction >= min_reduction and formula_ok
    return Verdict(ok, observed, f"quantized layers {reduction:.1%} smaller than bf16 (whole base {whole:.1%}); "
                   f"required >= {min_reduction:.0%}" + ("" if formula_ok else "; NF4 size formula disagrees with measurement"))


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
