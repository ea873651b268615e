"""Pull the Rust test code out of what a model wrote.

An instruct model answers in prose plus fenced code blocks; a fine-tuned one may write
bare code. The scorer needs code only, so this picks one block (the first that holds a
test, else the first), tolerates a fence left open at `max_new_tokens`, and returns an
empty string with a reason when nothing looks like Rust.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*$", re.MULTILINE)
RUST_LANGS = {"", "rust", "rs"}
TEST_MARKERS = ("#[test]", "proptest!")
RUST_MARKERS = ("fn ", "#[test]", "proptest!", "#[cfg(test)]", "assert", "mod ", "use ", "let ")


@dataclass(frozen=True)
class Extracted:
    code: str
    reason: str  # how the code was found, or why it is empty


def fenced_blocks(text: str) -> tuple[list[tuple[str, str]], bool]:
    """(language, body) of each fenced block, and whether the last one was left open."""
    blocks, fences = [], list(FENCE.finditer(text))
    i = 0
    while i < len(fences):
        opening = fences[i]
        if i + 1 < len(fences):
            blocks.append((opening.group(1).lower(), text[opening.end():fences[i + 1].start()].strip("\n")))
            i += 2
            continue
        blocks.append((opening.group(1).lower(), text[opening.end():].strip("\n")))
        return blocks, True
    return blocks, False


def has_test(code: str) -> bool:
    return any(marker in code for marker in TEST_MARKERS)


def looks_like_rust(text: str) -> bool:
    return any(marker in text for marker in RUST_MARKERS) and ("{" in text or "!" in text)


def extract_rust(text: str) -> Extracted:
    """The code to score from one generation; see the module docstring for the rule."""
    blocks, left_open = fenced_blocks(text)
    rust = [body for lang, body in blocks if lang in RUST_LANGS and body.strip()]
    if rust:
        chosen = next((body for body in rust if has_test(body)), rust[0])
        open_last = left_open and chosen is rust[-1] and blocks[-1][1] == chosen
        return Extracted(chosen.strip("\n") + "\n", "unterminated fence" if open_last else "fenced block")
    if blocks:
        return Extracted("", "fenced blocks, none in Rust")
    if looks_like_rust(text):
        return Extracted(text.strip("\n") + "\n", "no fence: text looks like Rust")
    return Extracted("", "no fence and no Rust in the text")


def first_block_closed(text: str) -> bool:
    """True once a closing fence follows an opening one: the stopping rule of generation."""
    return len(FENCE.findall(text)) >= 2
