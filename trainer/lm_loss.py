"""The causal LM's training loss: summed next-token cross-entropy, the head applied only where there are labels.

`LabelLoss` is the training forward of `training.task: generate` (trainer.classify.ClassifyLoss
is the classifier's); `chunked_head_loss` keeps a large vocabulary's logits from being held whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from trainer.data import IGNORE


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over label tokens (the caller divides)."""
    vocab = logits.size(-1)
    return F.cross_entropy(
        logits[:, :-1, :].float().reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


class LabelLoss(torch.nn.Module):
    """Summed next-token loss, with the LM head applied only at positions that have a label.

    Why: the logits of prompt and padding positions are computed only to be thrown away,
    and with a 150k vocabulary the head is most of a small model's FLOPs. The result is
    the same sum as `token_loss_sum` over full logits (up to float rounding). Models that
    scale or soft-cap their logits, or have no separable decoder + head, take the full
    path through their own forward. DDP wraps this module, so gradient sync sees the
    whole computation.
    """

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = lm
        causal = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
        config = causal.config
        scaled = any(getattr(config, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale", "logits_scaling"))
        self.split = None if scaled or not hasattr(causal, "get_decoder") else (causal.get_decoder(), causal.get_output_embeddings())

    def forward(self, labels: torch.Tensor, **inputs) -> torch.Tensor:
        if self.split is None:
            return token_loss_sum(self.lm(**inputs).logits, labels)
        decoder, head = self.split
        hidden = decoder(**inputs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        return chunked_head_loss(head, hidden[keep], targets[keep])


LOGIT_CHUNK_ELEMENTS = 2**23  # logits materialised at once: 8M floats (32 MB in fp32) at most


def _head_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


class FrozenHeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `F.linear(hidden, weight, bias)` for a frozen head, with the gradient
    w.r.t. `hidden` computed chunk by chunk in the forward pass (softmax - one-hot, times the weight)
    and kept: backward only scales it. Written here because the checkpointed path recomputes every
    chunk's logits in backward, one head matmul more a step (about 5% of a SmolLM2 LoRA step);
    this is the fused linear-cross-entropy idea of Liger Kernel, for a head that takes no gradient.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, rows: int):
        total = hidden.new_zeros((), dtype=torch.float32)
        grad = torch.empty_like(hidden)
        for start in range(0, hidden.shape[0], rows):
            logits = F.linear(hidden[start:start + rows], weight, bias).float()
            chunk_targets = targets[start:start + rows]
            log_probs = torch.log_softmax(logits, dim=-1)
            total += -log_probs.gather(1, chunk_targets[:, None]).sum()
            d_logits = log_probs.exp_()
            d_logits[torch.arange(len(chunk_targets), device=d_logits.device), chunk_targets] -= 1.0
            grad[start:start + rows] = (d_logits.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_total.to(grad.dtype), None, None, None, None


def chunked_head_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of `head(hidden)` against `targets`, never holding more than
    LOGIT_CHUNK_ELEMENTS logits: rows go through the head a chunk at a time. With a 49k
    vocabulary the logits of a 4 x 512 batch are ~400 MB in fp32 and three copies of them
    (logits, their fp32 cast, the softmax gradient) dominated the step's peak memory. A frozen
    head (LoRA, QLoRA) takes FrozenHeadCrossEntropy; a trained one recomputes each chunk's logits
    in backward (activation checkpointing). A vocabulary small enough for one chunk takes the
    plain path, bit for bit as before.
    """
    rows = max(1, LOGIT_CHUNK_ELEMENTS // head.out_features) if hasattr(head, "out_features") else hidden.shape[0]
    if hidden.shape[0] <= rows:
        return _head_loss(head, hidden, targets)
    chunks = range(0, hidden.shape[0], rows)
    if not torch.is_grad_enabled():  # evaluation: nothing to keep for backward
        return sum(_head_loss(head, hidden[i:i + rows], targets[i:i + rows]) for i in chunks)
    frozen = type(head).forward is torch.nn.Linear.forward and not any(p.requires_grad for p in head.parameters())
    if frozen and hidden.requires_grad:
        return FrozenHeadCrossEntropy.apply(hidden, head.weight, head.bias, targets, rows)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in chunks:
        total = total + checkpoint(_head_loss, head, hidden[start:start + rows], targets[start:start + rows], use_reentrant=False)
    return total
