"""Code extraction from model-like outputs (trainer.extract): fast, literal cases."""

import pytest

from trainer.extract import extract_rust, first_block_closed

TEST_FN = "#[test]\nfn adds() {\n    assert_eq!(add(1, 2), 3);\n}"

CASES = [
    ("rust fence", f"```rust\n{TEST_FN}\n```", TEST_FN, "fenced block"),
    ("rs fence", f"```rs\n{TEST_FN}\n```", TEST_FN, "fenced block"),
    ("plain fence", f"```\n{TEST_FN}\n```", TEST_FN, "fenced block"),
    ("prose around", f"Here are some tests:\n\n```rust\n{TEST_FN}\n```\n\nThese check addition.", TEST_FN, "fenced block"),
    ("unterminated", f"Sure!\n```rust\n{TEST_FN}\n#[test]\nfn half() {{\n    assert", f"{TEST_FN}\n#[test]\nfn half() {{\n    assert",
     "unterminated fence"),
    ("first block with a test wins", f"```rust\nfn add(a: i32, b: i32) -> i32 {{ a + b }}\n```\nTests:\n```rust\n{TEST_FN}\n```",
     TEST_FN, "fenced block"),
    ("proptest counts as a test", "```rust\nfn helper() {}\n```\n```rust\nproptest! {\n    #[test]\n    fn p(x in 0..9i32) {}\n}\n```",
     "proptest! {\n    #[test]\n    fn p(x in 0..9i32) {}\n}", "fenced block"),
    ("no test anywhere: first block", "```rust\nfn a() {}\n```\n```rust\nfn b() {}\n```", "fn a() {}", "fenced block"),
    ("non-rust block skipped", f"```toml\n[dependencies]\nproptest = \"1\"\n```\n```rust\n{TEST_FN}\n```", TEST_FN, "fenced block"),
    ("indented fence", f"  ```rust\n{TEST_FN}\n  ```", TEST_FN, "fenced block"),
    ("bare code", f"{TEST_FN}\n", TEST_FN, "no fence: text looks like Rust"),
    ("bare cfg(test) module", "#[cfg(test)]\nmod tests {\n    use super::*;\n}", "#[cfg(test)]\nmod tests {\n    use super::*;\n}",
     "no fence: text looks like Rust"),
]


@pytest.mark.parametrize("text,code,reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_extracts_the_code_to_score(text, code, reason):
    found = extract_rust(text)
    assert (found.code, found.reason) == (code + "\n", reason)


@pytest.mark.parametrize("text,reason", [
    ("I cannot write tests for this function.", "no fence and no Rust in the text"),
    ("", "no fence and no Rust in the text"),
    ("```python\ndef test(): pass\n```", "fenced blocks, none in Rust"),
    ("```rust\n\n```", "fenced blocks, none in Rust"),
])
def test_nothing_rust_gives_empty_code_and_a_reason(text, reason):
    assert extract_rust(text) == extract_rust(text).__class__("", reason)


def test_inline_backticks_are_not_fences():
    text = "Use ```rust``` blocks.\n" + TEST_FN
    assert extract_rust(text).code == text + "\n"


@pytest.mark.parametrize("text,closed", [
    ("Here:\n```rust\nfn a() {}\n", False),
    ("Here:\n```rust\nfn a() {}\n```", True),
    ("```rust\nfn a() {}\n```\nmore prose", True),
    ("no code at all", False),
    ("inline ```rust``` only", False),
])
def test_stopping_rule_fires_once_the_first_block_is_closed(text, closed):
    assert first_block_closed(text) is closed
