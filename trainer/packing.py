"""Sequence packing: several examples per row, with no attention across their boundaries.

`pack_examples` puts examples into rows of at most `max_seq_len` tokens by best-fit
decreasing (longest first, each into the fullest row it still fits). A packed row is an
ordinary `Example` plus `position_ids` that restart at 0 at every sample.

How the attention reset happens: the batch is given to the model with `position_ids`
and *no* 2D attention mask. transformers 5 (masking_utils.find_packed_sequence_indices)
then reads every place where the position does not grow by one as a sample boundary
and builds a block-diagonal causal mask, for sdpa, eager and flash attention alike.
The padding tail of a row counts from 0 too, so it is a segment of its own; being last,
no real token can see it. `model_inputs` in trainer.train drops the 2D mask and passes
`use_cache=False` (with a cache, transformers skips the packed-sequence detection). The two falsifiers below check that this really holds for the model at hand
instead of trusting it.

Labels: the first token of every sample gets no label. Unpacked, the causal shift drops
it anyway; packed, it would otherwise be "predicted" from the previous sample's last
token. So a packed batch has exactly the label tokens of its samples, and the loss per
label token means the same thing as without packing.
"""

from __future__ import annotations

import bisect

import torch

from trainer.data import IGNORE, Example, collate
from trainer.errors import TrainerError


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity`; deterministic.

    Bins are kept sorted by free space, so each item finds the tightest bin that fits by
    bisection: O(n log n) for the search (plus list inserts).
    """
    for i, n in enumerate(lengths):
        if n > capacity:
            raise TrainerError(f"data.packing: example {i} is {n} tokens, longer than data.max_seq_len={capacity}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    free: list[tuple[int, int]] = []  # (free space, bin id), ascending
    bins: list[list[int]] = []
    for i in order:
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at == len(free):
            bins.append([i])
            space, b = capacity - lengths[i], len(bins) - 1
        else:
            space, b = free.pop(at)
            bins[b].append(i)
            space -= lengths[i]
        bisect.insort(free, (space, b))
    return bins


def concat_row(examples: list[Example]) -> Example:
    """One packed row: tokens concatenated, positions restarting, first label of each sample dropped."""
    input_ids, labels, positions = [], [], []
    for ex in examples:
        input_ids += ex.input_ids
        labels += [IGNORE] + ex.labels[1:]
        positions += range(len(ex.input_ids))
    return Example(input_ids, labels, positions)


def pack_examples(examples: list[Example], max_seq_len: int) -> list[Example]:
    """Packed rows in a fixed order (that of the bins); the training stream shuffles them."""
    bins = best_fit_decreasing([len(ex.input_ids) for ex in examples], max_seq_len)
    return [concat_row([examples[i] for i in sorted(b)]) for b in bins]


# ------------------------------------------------------------------ falsifiers


def _tiny_model(attn_implementation: str, seed: int, vocab: int = 512):
    """A small random Qwen2 (the tiny preset's shape): enough to expose any mask bug."""
    from transformers import AutoModelForCausalLM

    from trainer.models import preset_config

    config = preset_config("tiny", vocab_size=vocab)
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation).eval()


def _random_examples(n: int, vocab: int, seed: int, min_len: int = 6, max_len: int = 40) -> list[Example]:
    """Examples with a masked prompt of random length and labels after it."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        ids = torch.randint(0, vocab, (length,), generator=g).tolist()
        out.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def _model_inputs(batch: dict, defect: str | None) -> dict:
    """What the trainer feeds the model for a packed batch, or a planted defect of it."""
    from trainer.train import model_inputs

    inputs = model_inputs(batch, torch.device("cpu"))
    if defect == "no_attention_reset":  # keep the 2D mask: transformers then builds a plain causal mask
        inputs["attention_mask"] = batch["attention_mask"]
    elif defect == "no_position_reset":  # positions run through the row: no boundary is visible
        inputs.pop("position_ids")
    elif defect == "with_cache":  # use_cache=True: transformers skips packed-sequence detection
        inputs["use_cache"] = True
    elif defect is not None:
        raise ValueError(f"unknown defect {defect!r}")
    return inputs


@torch.no_grad()
def packed_vs_unpacked_loss(n_examples: int = 12, max_seq_len: int = 96, attn_implementation: str = "sdpa",
                            seed: int = 0, rtol: float = 1e-5, defect: str | None = None, model=None) -> dict:
    """Packed loss sum == sum of per-sample losses (each sample alone, no padding), same label count."""
    from trainer.train import token_loss_sum

    model = model or _tiny_model(attn_implementation, seed)
    vocab = model.config.vocab_size
    examples = _random_examples(n_examples, vocab, seed)
    unpacked = sum(float(token_loss_sum(model(input_ids=torch.tensor([ex.input_ids]), use_cache=False).logits, torch.tensor([ex.labels])))
                   for ex in examples)
    rows = pack_examples(examples, max_seq_len)
    batch = collate(rows, pad_id=0)
    packed = float(token_loss_sum(model(**_model_inputs(batch, defect)).logits, batch["labels"]))
    labels_unpacked = sum(int((torch.tensor(ex.labels[1:]) != IGNORE).sum()) for ex in examples)
    labels_packed = int((batch["labels"][:, 1:] != IGNORE).sum())
    rel = abs(packed - unpacked) / max(abs(unpacked), 1e-12)
    return {"passed": rel <= rtol and labels_packed == labels_unpacked, "packed_loss_sum": packed,
            "unpacked_loss_sum": unpacked, "relative_difference": rel, "rtol": rtol, "label_tokens_packed": labels_packed,
            "label_tokens_unpacked": labels_unpacked, "examples": n_examples, "rows": len(rows),
            "attn_implementation": model.config._attn_implementation, "defect": defect}


@torch.no_grad()
def cross_boundary_attention(len_a: int = 20, len_b: int = 16, attn_implementation: str = "sdpa", seed: int = 0,
                             atol: float = 1e-6, defect: str | None = None, model=None) -> dict:
    """Changing sample A's tokens in a packed row [A | B] must leave B's logits unchanged,
    and B's logits must equal those of B alone (positions restart, nothing leaks in)."""
    model = model or _tiny_model(attn_implementation, seed)
    vocab = model.config.vocab_size
    a, b = _random_examples(2, vocab, seed, min_len=min(len_a, len_b), max_len=max(len_a, len_b))
    a, b = Example(a.input_ids[:len_a], a.labels[:len_a]), Example(b.input_ids[:len_b], b.labels[:len_b])
    g = torch.Generator().manual_seed(seed + 1)
    a_changed = Example(((torch.tensor(a.input_ids) + 1 + torch.randint(0, vocab - 1, (len_a,), generator=g)) % vocab).tolist(), a.labels)

    def logits_of_b(first: Example) -> torch.Tensor:
        batch = collate([concat_row([first, b])], pad_id=0)
        return model(**_model_inputs(batch, defect)).logits[0, len(first.input_ids):]

    alone = model(input_ids=torch.tensor([b.input_ids]), use_cache=False).logits[0]
    base = logits_of_b(a)
    leak = float((logits_of_b(a_changed) - base).abs().max())
    vs_alone = float((base - alone).abs().max())
    return {"passed": leak <= atol and vs_alone <= atol, "max_abs_change_of_b_logits": leak,
            "max_abs_diff_b_packed_vs_alone": vs_alone, "atol": atol,
            "attn_implementation": model.config._attn_implementation, "defect": defect}
