"""Prompt format and labels: the tokenizer's chat template when it has one, else ChatML."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trainer.data import IGNORE, IM_END, encode_chat, end_of_turn_id, prompt_for, render_prompt

FUNCTION, TESTS = "fn add(a: i32, b: i32) -> i32 { a + b }", "#[test]\nfn t() { assert_eq!(add(1, 2), 3); }"
# A template whose end-of-turn (<|end|>) is not its eos (<|eos|>), so the test can tell them apart.
TEMPLATE = ("{% for m in messages %}<|turn|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|turn|>assistant\n{% endif %}")
SPECIALS = ["<|eos|>", "<|turn|>", "<|end|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]


@pytest.fixture(scope="module")
def plain_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([render_prompt(FUNCTION) + TESTS] * 3, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def templated_tokenizer(plain_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    plain_tokenizer.save_pretrained(path)
    tok = PreTrainedTokenizerFast.from_pretrained(path, eos_token="<|eos|>")
    tok.chat_template = TEMPLATE
    return tok


def assistant_span(tokenizer, ex):
    """The label positions and the ids a correct encoder must label there: answer + end-of-turn."""
    n_prompt = len(tokenizer.encode(prompt_for(tokenizer, FUNCTION), add_special_tokens=False))
    expected = tokenizer.encode(TESTS, add_special_tokens=False) + [end_of_turn_id(tokenizer)]
    return n_prompt, expected


@pytest.mark.parametrize("kind", ["plain", "templated"])
def test_labels_are_exactly_the_answer_and_end_of_turn(kind, request):
    tokenizer = request.getfixturevalue(f"{kind}_tokenizer")
    ex = encode_chat(tokenizer, FUNCTION, TESTS, 4096)
    n_prompt, expected = assistant_span(tokenizer, ex)
    assert ex.labels[:n_prompt] == [IGNORE] * n_prompt
    assert ex.labels[n_prompt:] == expected == ex.input_ids[n_prompt:]


def test_chat_template_is_used_when_the_tokenizer_has_one(templated_tokenizer, plain_tokenizer):
    prompt = prompt_for(templated_tokenizer, FUNCTION, "struct S;")
    assert prompt.startswith("<|turn|>system\n") and prompt.endswith("<|turn|>assistant\n") and "struct S;" in prompt
    assert IM_END not in prompt
    assert prompt_for(plain_tokenizer, FUNCTION, "struct S;") == render_prompt(FUNCTION, "struct S;")


def test_end_of_turn_is_the_templates_not_eos(templated_tokenizer, plain_tokenizer):
    assert templated_tokenizer.convert_ids_to_tokens(end_of_turn_id(templated_tokenizer)) == "<|end|>"
    assert plain_tokenizer.convert_ids_to_tokens(end_of_turn_id(plain_tokenizer)) == IM_END


def test_truncation_keeps_the_prompt_and_cuts_the_answer(templated_tokenizer):
    n_prompt = len(templated_tokenizer.encode(prompt_for(templated_tokenizer, FUNCTION), add_special_tokens=False))
    ex = encode_chat(templated_tokenizer, FUNCTION, TESTS, n_prompt + 2)
    assert len(ex.input_ids) == n_prompt + 2 and ex.n_labels == 2
    assert encode_chat(templated_tokenizer, FUNCTION, TESTS, n_prompt).n_labels == 0
