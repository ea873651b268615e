"""Data: prompt rendering (the model's chat template, else ChatML), tokenization with assistant-only labels, dynamic padding.

Labels are built from the prompt/answer boundary, never from `input_ids == pad_id`: that
classic shortcut masks the end-of-turn token whenever pad == eos, and the model then
never learns to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.errors import TrainerError
from trainer.files import iter_jsonl

IGNORE = -100
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SYSTEM_PROMPT = (
    "You are a Rust testing expert. Write unit tests and property tests (proptest) "
    "that check the behaviour of the given function."
)


def render_prompt(function_code: str, context: str = "") -> str:
    """ChatML up to and including the assistant header; the model writes from here.

    `context`: what the function needs from its crate (the corpus's `crate_context`: its
    `use` lines, the definitions of its types), shown after it; without it the prompt is
    exactly the one training used.
    """
    return (
        f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n"
        f"{IM_START}user\n{user_message(function_code, context)}{IM_END}\n"
        f"{IM_START}assistant\n"
    )


def user_message(function_code: str, context: str = "") -> str:
    shown = f"\nFrom its crate (in scope at the function):\n```rust\n{context}\n```" if context else ""
    return f"Generate tests for this function:\n```rust\n{function_code}\n```{shown}"


def uses_chat_template(tokenizer) -> bool:
    """A real instruct model's tokenizer carries its template; our presets' BPE ones do not."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_messages(function_code: str, context: str = "") -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message(function_code, context)}]


def prompt_for(tokenizer, function_code: str, context: str = "") -> str:
    """The one place that decides the prompt format: the tokenizer's chat template, else ChatML."""
    if not uses_chat_template(tokenizer):
        return render_prompt(function_code, context)
    return tokenizer.apply_chat_template(chat_messages(function_code, context), tokenize=False, add_generation_prompt=True)


def end_of_turn_id(tokenizer, function_code: str = "fn f() {}", answer: str = "x") -> int:
    """The token that closes the assistant's turn: <|im_end|> for ChatML, else the template's own.

    Found by rendering a whole turn and taking the first special token after the answer,
    so a template whose end-of-turn differs from `eos_token` is still right.
    """
    if not uses_chat_template(tokenizer):
        return tokenizer.convert_tokens_to_ids(IM_END)
    messages = chat_messages(function_code) + [{"role": "assistant", "content": answer}]
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    tail = whole[whole.rfind(answer) + len(answer):] if answer in whole else ""
    special = set(tokenizer.all_special_ids) | {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    for token in tokenizer.encode(tail, add_special_tokens=False):
        if token in special:
            return token
    return tokenizer.eos_token_id


def load_jsonl(path: str | Path, limit: int | None = None) -> list[dict]:
    """Read `{"input", "output", "metadata"}` records; a bad line names file and line."""
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"data file not found: {path}")
    records = []
    for item in iter_jsonl(path):
        if item.problem is not None:
            raise item.error(path)
        for key in ("input", "output"):
            if not isinstance(item.value, dict) or not isinstance(item.value.get(key), str):
                raise item.error(path, f"field '{key}' must be a string")
        records.append(item.value)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise TrainerError(f"{path}: no records")
    return records


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int] | None = None  # packed rows only: restarts at 0 at every sample

    @property
    def n_labels(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def encode_chat(tokenizer, function_code: str, tests: str, max_seq_len: int | None, context: str = "") -> Example:
    """Prompt tokens are masked; answer tokens and the closing end-of-turn token are labels.

    The prompt is the tokenizer's chat template when it has one, else ChatML (`prompt_for`).

    Truncation cuts the answer's tail (the prompt is kept whole when it fits), so a
    truncated example has no end-of-turn label: it teaches content, not stopping.
    """
    prompt_ids = tokenizer.encode(prompt_for(tokenizer, function_code, context), add_special_tokens=False)
    answer_ids = tokenizer.encode(tests, add_special_tokens=False) + [end_of_turn_id(tokenizer)]
    input_ids = (prompt_ids + answer_ids)[:max_seq_len]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_seq_len]
    return Example(input_ids, labels)


def encode_plain(tokenizer, text: str, max_seq_len: int) -> Example:
    """Pretraining: every token is a label (the first is predicted from nothing, so dropped by the shift)."""
    ids = (tokenizer.encode(text, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids(ENDOFTEXT)])[:max_seq_len]
    return Example(ids, list(ids))


def record_context(rec: dict) -> str:
    shown = (rec.get("metadata") or {}).get("crate_context", "")
    return shown if isinstance(shown, str) else ""


def build_examples(tokenizer, records: list[dict], max_seq_len: int, pretrain: bool = False,
                   packing: bool = False, context: bool = False) -> tuple[list[Example], int]:
    """Encode records; returns the examples and how many were dropped for having no label.

    With `packing`, nothing is truncated: an example longer than `max_seq_len` cannot go
    into a packed row whole, and cutting it silently would change what is learned.
    `context`: show each record's `crate_context` in the prompt, as generation can.
    """
    examples, dropped = [], 0
    limit = None if packing else max_seq_len
    for number, rec in enumerate(records, 1):
        if pretrain:
            ex = encode_plain(tokenizer, rec["input"] + "\n\n" + rec["output"], limit)
        else:
            shown = {"context": record_context(rec)} if context else {}  # absent by default: 4-argument encoders still fit
            ex = encode_chat(tokenizer, rec["input"], rec["output"], limit, **shown)
        if packing and len(ex.input_ids) > max_seq_len:
            ident = (rec.get("metadata") or {}).get("id")
            raise TrainerError(
                f"data.packing=true: record {number}{f' (id {ident})' if ident else ''} is {len(ex.input_ids)} tokens, "
                f"longer than data.max_seq_len={max_seq_len}; packing never truncates: raise data.max_seq_len, "
                "shorten or drop the record, or set data.packing=false"
            )
        if ex.n_labels == 0:
            dropped += 1
            continue
        examples.append(ex)
    return examples, dropped


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example in the batch (dynamic padding).

    Packed rows (examples with `position_ids`) also get a `position_ids` tensor; their
    padding tail counts from 0 again, so it forms a segment of its own (see trainer.packing).
    """
    width = max(len(ex.input_ids) for ex in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    packed = any(ex.position_ids is not None for ex in examples)
    position_ids = torch.arange(width).repeat(len(examples), 1) if packed else None
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        input_ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        attention_mask[row, :n] = 1
        if packed:
            position_ids[row, :n] = torch.tensor(ex.position_ids if ex.position_ids is not None else range(n))
            position_ids[row, n:] = torch.arange(width - n)
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
    if packed:
        batch["position_ids"] = position_ids
    return batch


def count_label_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that contribute to the loss after the causal shift."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Real (non-padding) tokens of a batch; a DDP stand-in batch has none."""
    return 0 if "stand_in" in batch else int(batch["attention_mask"].sum())


def stand_in(example: Example, pad_id: int) -> dict[str, torch.Tensor]:
    """A batch with no labels, for a DDP rank whose share of an epoch's short last batch is empty.

    DDP needs every rank to run backward; with no label tokens this adds exactly zero.
    """
    batch = collate([example], pad_id)
    batch["labels"].fill_(IGNORE)
    batch["stand_in"] = torch.ones(1, dtype=torch.bool)
    return batch


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a pure function of (seed, epoch), so resume can replay it."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


class BatchStream:
    """Micro-batches in a deterministic order, with a position that checkpoints can save.

    The position is (epoch, cursor): the next micro-batch starts at `cursor` in the
    epoch's permutation. Restoring it replays exactly the batches an uninterrupted run sees.
    """

    def __init__(self, examples: list[Example], batch_size: int, seed: int, pad_id: int, rank: int = 0, world_size: int = 1,
                 collate_fn: Callable | None = None):
        if not examples:
            raise TrainerError("no training examples left after encoding: none has a label token within data.max_seq_len "
                               "(raise it, or check data.train)")
        self.examples, self.batch_size, self.seed, self.pad_id = examples, batch_size, seed, pad_id
        self.rank, self.world_size = rank, world_size  # DDP: every rank walks the same order, takes its share
        self.collate_fn = collate_fn  # None: this module's `collate` (looked up at each batch); classification passes its own
        self.epoch, self.cursor = 0, 0
        self._order = epoch_order(len(examples), seed, 0)

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def restore(self, position: dict[str, int]) -> None:
        self.epoch, self.cursor = position["epoch"], position["cursor"]
        self._order = epoch_order(len(self.examples), self.seed, self.epoch)

    def fractional_epoch(self) -> float:
        return self.epoch + self.cursor / len(self.examples)

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.cursor >= len(self.examples):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = epoch_order(len(self.examples), self.seed, self.epoch)
        idx = self._order[self.cursor : self.cursor + self.batch_size]
        self.cursor += len(idx)
        batch = self.collate_fn or collate  # looked up now: a patched `collate` (the planted defects) takes effect
        if self.world_size > 1:
            per = self.batch_size // self.world_size
            mine = idx[self.rank * per : (self.rank + 1) * per]
            return batch([self.examples[i] for i in mine], self.pad_id) if mine else stand_in(self.examples[idx[0]], self.pad_id)
        return batch([self.examples[i] for i in idx], self.pad_id)


def eval_batches(examples: list, batch_size: int, pad_id: int, collate_fn: Callable | None = None) -> list[dict[str, torch.Tensor]]:
    """Validation batches in file order (no shuffling: eval must be a pure function of the weights); `collate_fn` as in BatchStream."""
    batch = collate_fn or collate
    return [batch(examples[i : i + batch_size], pad_id) for i in range(0, len(examples), batch_size)]


@dataclass
class TrainingData:
    """The encoded data the loop reads: the shuffled training stream and the fixed validation batches."""

    stream: BatchStream
    val_batches: list[dict]
    val_records: list[dict]  # the raw records: the live monitor samples from the first
    train_examples: int  # rows, after packing
    validation_examples: int
    dropped: int  # train + validation examples with no label token within max_seq_len
    class_weights: list[float] | None = None  # training.task=classify: the loss's per-class weights (trainer.classify)
