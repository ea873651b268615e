"""The LM head's loss in chunks of rows (trainer.train.chunked_head_loss): same sum, same gradients, less memory."""

from __future__ import annotations

import torch

from trainer import train


def _loss_and_grads(head, hidden, targets):
    hidden = hidden.detach().clone().requires_grad_(True)
    head.zero_grad()
    loss = train.chunked_head_loss(head, hidden, targets)
    loss.backward()
    return loss.detach(), hidden.grad.clone(), head.weight.grad.clone()


def test_chunks_give_the_same_loss_and_gradients_as_one_pass(monkeypatch):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 97, bias=False)
    hidden, targets = torch.randn(50, 16), torch.randint(0, 97, (50,))
    whole = _loss_and_grads(head, hidden, targets)
    monkeypatch.setattr(train, "LOGIT_CHUNK_ELEMENTS", 97 * 7)  # 7 rows a chunk: 8 chunks, the last one short
    calls = []
    monkeypatch.setattr(train, "_head_loss", lambda h, x, t: calls.append(len(x)) or torch.nn.functional.cross_entropy(
        h(x).float(), t, reduction="sum"))
    chunked = _loss_and_grads(head, hidden, targets)
    assert calls[:8] == [7, 7, 7, 7, 7, 7, 7, 1]  # forward chunks (backward recomputes each: checkpointing)
    assert len(calls) == 16
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_small_vocabulary_takes_the_plain_path(monkeypatch):
    head = torch.nn.Linear(8, 32, bias=False)
    calls = []
    monkeypatch.setattr(train, "checkpoint", lambda *a, **k: calls.append(1))
    train.chunked_head_loss(head, torch.randn(10, 8), torch.randint(0, 32, (10,)))
    assert calls == []
