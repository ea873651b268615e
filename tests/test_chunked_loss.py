"""The LM head's loss in chunks of rows (trainer.lm_loss.chunked_head_loss): same sum, same gradients, less memory."""

from __future__ import annotations

import torch

from trainer import lm_loss


def _loss_and_grads(head, hidden, targets):
    hidden = hidden.detach().clone().requires_grad_(True)
    head.zero_grad()
    loss = lm_loss.chunked_head_loss(head, hidden, targets)
    loss.backward()
    return loss.detach(), hidden.grad.clone(), head.weight.grad.clone()


def test_chunks_give_the_same_loss_and_gradients_as_one_pass(monkeypatch):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 97, bias=False)
    hidden, targets = torch.randn(50, 16), torch.randint(0, 97, (50,))
    whole = _loss_and_grads(head, hidden, targets)
    monkeypatch.setattr(lm_loss, "LOGIT_CHUNK_ELEMENTS", 97 * 7)  # 7 rows a chunk: 8 chunks, the last one short
    calls = []
    monkeypatch.setattr(lm_loss, "_head_loss", lambda h, x, t: calls.append(len(x)) or torch.nn.functional.cross_entropy(
        h(x).float(), t, reduction="sum"))
    chunked = _loss_and_grads(head, hidden, targets)
    assert calls[:8] == [7, 7, 7, 7, 7, 7, 7, 1]  # forward chunks (backward recomputes each: checkpointing)
    assert len(calls) == 16
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_small_vocabulary_takes_the_plain_path(monkeypatch):
    head = torch.nn.Linear(8, 32, bias=False)
    calls = []
    monkeypatch.setattr(lm_loss, "checkpoint", lambda *a, **k: calls.append(1))
    lm_loss.chunked_head_loss(head, torch.randn(10, 8), torch.randint(0, 32, (10,)))
    assert calls == []


def test_a_frozen_head_gives_the_same_loss_and_hidden_gradient_without_recomputing(monkeypatch):
    """LoRA's head takes no gradient: FrozenHeadCrossEntropy computes d(hidden) in the forward pass, chunk by
    chunk, and backward runs no head matmul at all."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 97, bias=True).requires_grad_(False)
    hidden, targets = torch.randn(50, 16, dtype=torch.float64), torch.randint(0, 97, (50,))
    head = head.double()

    def loss_and_grad():
        x = hidden.clone().requires_grad_(True)
        loss = lm_loss.chunked_head_loss(head, x, targets)
        (loss * 3.0).backward()  # a scaled loss scales the kept gradient
        return loss.detach(), x.grad

    whole = loss_and_grad()
    monkeypatch.setattr(lm_loss, "LOGIT_CHUNK_ELEMENTS", 97 * 7)
    monkeypatch.setattr(lm_loss, "checkpoint", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed a chunk")))
    matmuls = []
    real_linear = torch.nn.functional.linear
    monkeypatch.setattr(lm_loss.F, "linear", lambda *a: matmuls.append(1) or real_linear(*a))
    chunked = loss_and_grad()
    assert len(matmuls) == 8  # one head matmul a chunk, in forward only
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # both compute the softmax in fp32
    with torch.no_grad():  # evaluation: plain chunks, no gradient kept
        torch.testing.assert_close(lm_loss.chunked_head_loss(head, hidden, targets), whole[0], rtol=1e-5, atol=1e-6)
