"""The crate context a function needs to be tested: the `use` lines in scope at the function
and the definitions, from the same file, of the types it names (for a method, its type).

Recorded as `crate_context` so a prompt can show what a test must construct; bounded by
MAX_CONTEXT_CHARS (the `use` lines first, then the definitions in the order the function
names them, each whole or not at all), so it fits the context length.
"""

from __future__ import annotations

from tree_sitter import Node

from trainer.corpus import rust_ast
from trainer.corpus.in_crate import item_text
from trainer.corpus.scan import Candidate

MAX_CONTEXT_CHARS = 1500

_TYPE_ITEMS = {"struct_item", "enum_item", "union_item", "type_item", "trait_item"}


def _type_definitions(candidate: Candidate) -> dict[str, Node]:
    """Type items of the modules around the function (innermost first), by name."""
    found: dict[str, Node] = {}
    parent = candidate.node.parent
    while parent is not None:
        if parent.type in ("declaration_list", "source_file"):
            for child in parent.named_children:
                if child.type in _TYPE_ITEMS:
                    found.setdefault(rust_ast.function_name(child), child)
        parent = parent.parent
    return found


def crate_context(candidate: Candidate) -> str:
    """The function's `use` lines and the same-file definitions of the types it names,
    within MAX_CONTEXT_CHARS; "" when there is none."""
    uses, size = [], 0
    for line in dict.fromkeys(u.text for u in candidate.uses):
        if size + len(line) + 1 > MAX_CONTEXT_CHARS // 2:
            break
        uses.append(line)
        size += len(line) + 1
    definitions = _type_definitions(candidate)
    named = [rust_ast.text(n) for n in rust_ast.walk(candidate.node) if n.type == "type_identifier"]
    texts = []
    for name in dict.fromkeys([*sorted(candidate.owner_names), *named]):
        if name not in definitions:
            continue
        text = item_text(definitions[name])
        if size + len(text) + 2 <= MAX_CONTEXT_CHARS:
            texts.append(text)
            size += len(text) + 2
    return "\n\n".join(p for p in ["\n".join(uses), *texts] if p)
