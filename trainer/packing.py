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
`use_cache=False` (with a cache, transformers skips the packed-sequence detection). Two
falsifiers in falsify.checks.scaling check that this really holds for the model at
hand instead of trusting it.

Labels: the first token of every sample gets no label. Unpacked, the causal shift drops
it anyway; packed, it would otherwise be "predicted" from the previous sample's last
token. So a packed batch has exactly the label tokens of its samples, and the loss per
label token means the same thing as without packing.
"""

from __future__ import annotations

import bisect

from trainer.data import IGNORE, Example
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
