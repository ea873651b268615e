"""Checks on LoRA/QLoRA adaptation: identity at step 0, what one step changes, gradient flow, merging."""

from __future__ import annotations

from falsify.checks import fixtures
from falsify.checks.registry import Verdict, check


def _one_step(model, lr: float = 1e-2):
    """One real trainer step (trainer.train.train_step) on a fixture batch."""
    import torch

    from trainer.train import train_step

    optimizer, scheduler = fixtures.optimizer(model, lr)
    model.train()
    return train_step(model, optimizer, scheduler, [fixtures.batch()], torch.device("cpu"), 1.0, 1)


@check("lora_identity_at_step0")
def lora_identity_at_step0(*, mode: str = "lora", atol: float = 0.0) -> Verdict:
    """Wrapping the base in fresh LoRA adapters must not change a single logit (B starts at zero)."""
    import torch

    batch = fixtures.batch()
    base = fixtures.load_base(mode).eval()
    with torch.no_grad():
        before = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    from trainer.models import apply_lora

    model = apply_lora(base, fixtures.lora_settings()).eval()
    with torch.no_grad():
        after = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    diff = (before - after).abs().max().item()
    return Verdict(diff <= atol, {"mode": mode, "max_abs_logit_diff": diff, "atol": atol},
                   f"max |logits_peft - logits_base| = {diff:.3g} at step 0 (allowed {atol})")


@check("one_step_changes_only_adapters")
def one_step_changes_only_adapters(*, mode: str = "lora") -> Verdict:
    """After one step: every base tensor bit-identical, every LoRA B non-zero."""
    import torch

    model = fixtures.adapted(mode)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    _one_step(model)
    changed = [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p.detach(), frozen[n])]
    zero_b = [n for n, p in model.named_parameters() if "lora_B" in n and not p.detach().abs().sum() > 0]
    n_b = sum(1 for n, _ in model.named_parameters() if "lora_B" in n)
    trainable_base = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    ok = not changed and not zero_b and n_b > 0 and not trainable_base
    return Verdict(ok, {"mode": mode, "base_tensors": len(frozen), "base_changed": changed[:10], "lora_B_tensors": n_b,
                        "lora_B_still_zero": zero_b[:10], "trainable_base_tensors": trainable_base[:10]},
                   f"{len(changed)} base tensors changed, {len(zero_b)} of {n_b} LoRA B still zero, "
                   f"{len(trainable_base)} base tensors trainable")


@check("gradient_flow")
def gradient_flow(*, mode: str = "lora") -> Verdict:
    """After a first step (so B != 0), a backward pass gives every LoRA A and B a finite, non-zero gradient."""
    import torch

    from trainer.train import forward_loss_sum

    model = fixtures.adapted(mode)
    _one_step(model)
    model.train()
    forward_loss_sum(model, fixtures.batch(), torch.device("cpu")).backward()
    dead, nonfinite, n = [], [], 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            n += 1
            if p.grad is None or p.grad.abs().sum() == 0:
                dead.append(name)
            elif not torch.isfinite(p.grad).all():
                nonfinite.append(name)
    layers = {name.split(".lora_")[0] for name, _ in model.named_parameters() if "lora_" in name}
    return Verdict(n > 0 and not dead and not nonfinite,
                   {"mode": mode, "adapted_layers": len(layers), "lora_tensors": n, "no_gradient": dead[:10], "non_finite": nonfinite[:10]},
                   f"{len(dead)} of {n} LoRA tensors without gradient, {len(nonfinite)} non-finite")


@check("merge_fidelity")
def merge_fidelity(*, atol: float = 1e-4) -> Verdict:
    """merge_and_unload after a step gives the same logits as the adapter model (within atol)."""
    import torch

    model = fixtures.adapted("lora")
    _one_step(model, lr=5e-2)
    model.eval()
    batch = fixtures.batch()
    with torch.no_grad():
        adapter_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        merged = model.merge_and_unload()
        merged_logits = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base = fixtures.load_base("lora").eval()
        base_logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    diff = (adapter_logits - merged_logits).abs().max().item()
    moved = (adapter_logits - base_logits).abs().max().item()
    ok = diff <= atol and moved > 10 * atol  # the adapter must have done something for the claim to mean anything
    return Verdict(ok, {"max_abs_diff_merged_vs_adapter": diff, "max_abs_diff_adapter_vs_base": moved, "atol": atol},
                   f"merged vs adapter logits differ by {diff:.3g} (allowed {atol}); adapter moved logits by {moved:.3g}")
