"""Batched, left-padded generation (trainer.generate): same greedy output as batch 1, and the code-block stop."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from trainer.config import GenerationConfig
from trainer.data import IM_END, render_prompt
from trainer.generate import FirstCodeBlockClosed, generate_batch

FUNCTIONS = ["fn add(a: i32, b: i32) -> i32 { a + b }", "fn id(x: u8) -> u8 { x }",
             "pub fn clamp(v: i64, lo: i64, hi: i64) -> i64 { v.max(lo).min(hi) }", "fn f() {}"]
OPEN, BODY, CLOSE, TAIL = "```rust\n", "fn_a\n", "```\n", "tail"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([render_prompt(f) for f in FUNCTIONS] * 2, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token="<|endoftext|>")
    fast.add_tokens([OPEN, BODY, CLOSE, TAIL])
    return fast


def tiny_model(tokenizer, path) -> LlamaForCausalLM:
    """A saved and reloaded 2-layer Llama: what generation loads in practice."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    return LlamaForCausalLM.from_pretrained(path).eval()


@pytest.mark.slow
def test_batched_left_padded_greedy_equals_batch_one(tokenizer, tmp_path):
    model = tiny_model(tokenizer, tmp_path / "m")
    prompts = [render_prompt(f) for f in FUNCTIONS]
    gen = GenerationConfig(max_new_tokens=12)
    one = [generate_batch(model, tokenizer, [p], gen, CPU)[:2] for p in prompts]
    texts, counts, seconds = generate_batch(model, tokenizer, prompts, gen, CPU)
    assert len({len(tokenizer.encode(p)) for p in prompts}) > 1  # the batch really needs padding
    assert [(t[0], c[0]) for t, c in one] == list(zip(texts, counts)) and seconds > 0
    assert tokenizer.padding_side == "right"  # left padding is local to the call


def scripted_model(tokenizer, path) -> LlamaForCausalLM:
    """A bigram model (layers zeroed to identities) whose greedy path writes OPEN BODY CLOSE TAIL TAIL ..."""
    model = tiny_model(tokenizer, path)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        ids = tokenizer.convert_tokens_to_ids
        prompt_end = tokenizer.encode(render_prompt(FUNCTIONS[0]))[-1]
        for before, after in [(prompt_end, OPEN), (ids(OPEN), BODY), (ids(BODY), CLOSE), (ids(CLOSE), TAIL), (ids(TAIL), TAIL)]:
            head[ids(after)] = embed[before] * 10
    return model


def test_generation_stops_at_the_end_of_the_first_code_block(tokenizer, tmp_path):
    model = scripted_model(tokenizer, tmp_path / "m")
    texts, counts, _ = generate_batch(model, tokenizer, [render_prompt(FUNCTIONS[0])], GenerationConfig(max_new_tokens=20), CPU)
    assert (texts[0], counts[0]) == (OPEN + BODY + CLOSE, 3)


def test_stop_criterion_is_per_row_and_ignores_the_prompt(tokenizer):
    prompt = tokenizer.encode(f"{OPEN}fn x() {{}}\n{CLOSE}")  # a closed block inside the prompt must not count
    rows = [prompt + tokenizer.encode(OPEN + BODY + CLOSE), prompt + tokenizer.encode(OPEN + BODY + BODY)]
    done = FirstCodeBlockClosed(tokenizer, len(prompt))(torch.tensor(rows), None)
    assert done.tolist() == [True, False]
