"""Byte-level BPE tokenizers for the presets, trained on the corpus with `tokenizers`.

A preset has no tokenizer of its own, so one is trained on the training data (cached on
disk by content hash: same data, same tokenizer, no retraining) and saved beside the
model. The vocabulary is then padded with unreachable filler entries up to the preset's
embedding size, so the model's vocab and the tokenizer's size agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trainer.data import ENDOFTEXT, IM_END, IM_START, SYSTEM_PROMPT, render_prompt

SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
TOKENIZER_FORMAT = 1  # bump when training changes, to invalidate caches


def cache_root() -> Path:
    return Path(os.environ.get("RTF_CACHE_DIR", Path.home() / ".cache" / "rust-test-falsify"))


def corpus_texts(records: list[dict]) -> list[str]:
    """What the tokenizer sees: exactly the text the model will be trained on."""
    return [render_prompt(r["input"]) + r["output"] for r in records] + [SYSTEM_PROMPT]


def _train(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _pad_vocab(tok: Tokenizer, target: int) -> Tokenizer:
    """Add filler vocab entries (never produced: no merge builds them) up to `target`."""
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    next_id = max(max(vocab.values()), max(t["id"] for t in state["added_tokens"])) + 1
    while next_id < target:
        vocab[f"<|filler_{next_id}|>"] = next_id
        next_id += 1
    return Tokenizer.from_str(json.dumps(state))


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer(records: list[dict], bpe_vocab_size: int, model_vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """Train (or fetch from the cache) a byte-level BPE tokenizer for these records."""
    return train_tokenizer_on(corpus_texts(records), bpe_vocab_size, model_vocab_size)


def train_tokenizer_on(texts: list[str], bpe_vocab_size: int, model_vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """Train (or fetch from the cache) a byte-level BPE tokenizer on exactly these texts (classification: the texts)."""
    digest = hashlib.sha256()
    for part in (str(TOKENIZER_FORMAT), str(bpe_vocab_size), str(model_vocab_size), *texts):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    cached = cache_root() / "tokenizers" / digest.hexdigest()[:32]
    if (cached / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(cached)
    tok = _train(texts, bpe_vocab_size)
    if model_vocab_size is not None:
        if tok.get_vocab_size() > model_vocab_size:
            tok = _train(texts, model_vocab_size)
        tok = _pad_vocab(tok, model_vocab_size)
    fast = wrap(tok)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".tmp-"))
    fast.save_pretrained(tmp)
    try:
        os.rename(tmp, cached)
    except OSError:  # another process won the race; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(cached)
