"""Rust syntax facts from tree-sitter-rust, shared by the corpus builder and the evaluator.

One parser, one definition of "edge-case category" and "cyclomatic complexity", so the
corpus metadata and the evaluator's per-sample flags can never disagree.
"""

from __future__ import annotations

from functools import lru_cache

import tree_sitter_rust
from tree_sitter import Language, Node, Parser, Tree

RUST = Language(tree_sitter_rust.language())

# Nodes that add a decision point (McCabe): each branch or loop adds one path, and so
# does each short-circuit operator and each `?` early return.
_DECISION_NODES = {
    "if_expression",
    "while_expression",
    "for_expression",
    "loop_expression",
    "match_arm",
    "try_expression",
}
_SHORT_CIRCUIT = {"&&", "||"}

CATEGORIES = ("has_generics", "has_lifetimes", "is_async", "has_unsafe", "uses_macros")


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(RUST)


def parse(source: str | bytes) -> Tree:
    """Parse Rust source; never raises (tree-sitter recovers and marks ERROR nodes)."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    return _parser().parse(data)


def has_syntax_errors(tree: Tree) -> bool:
    return tree.root_node.has_error


def text(node: Node) -> str:
    return node.text.decode("utf-8", errors="replace") if node.text is not None else ""


def walk(node: Node):
    """Yield every node below (and including) `node`, depth first, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def function_items(tree: Tree) -> list[Node]:
    """All `function_item` nodes, including those inside impl blocks and modules."""
    return [n for n in walk(tree.root_node) if n.type == "function_item"]


def signature(function_code: str) -> str:
    """A function's signature: `pub fn name<T>(args) -> R where ..`, without doc comments, attributes or body.
    Code with no function item (or no body) is returned as it is."""
    data = function_code.encode("utf-8")
    found = function_items(parse(data))
    body = found[0].child_by_field_name("body") if found else None
    return data[found[0].start_byte : body.start_byte].decode("utf-8").rstrip() if body is not None else function_code


def function_name(fn: Node) -> str:
    name = fn.child_by_field_name("name")
    return text(name) if name is not None else ""


def attributes_of(fn: Node) -> list[str]:
    """Outer attributes (`#[test]`, `#[cfg(test)]` ...) written directly above an item."""
    attrs: list[str] = []
    sibling = fn.prev_named_sibling
    while sibling is not None and sibling.type in ("attribute_item", "line_comment", "block_comment"):
        if sibling.type == "attribute_item":
            attrs.append(text(sibling))
        sibling = sibling.prev_named_sibling
    return list(reversed(attrs))


def is_test_function(fn: Node) -> bool:
    return any(a.replace(" ", "") in ("#[test]", "#[tokio::test]") or a.startswith("#[test") for a in attributes_of(fn))


def cyclomatic_complexity(fn: Node) -> int:
    """McCabe complexity of one function: 1 + decision points (nested closures included)."""
    complexity = 1
    for node in walk(fn):
        if node.type in _DECISION_NODES:
            complexity += 1
        elif node.type == "binary_expression":
            op = node.child_by_field_name("operator")
            if op is not None and op.type in _SHORT_CIRCUIT:
                complexity += 1
    # A match with n arms has n - 1 decisions, not n.
    complexity -= sum(1 for node in walk(fn) if node.type == "match_expression")
    return max(complexity, 1)


def categories(fn: Node) -> dict[str, bool]:
    """Edge-case flags of one function, read from its syntax (not from text search)."""
    flags = dict.fromkeys(CATEGORIES, False)
    for node in walk(fn):
        kind = node.type
        if kind == "where_clause" or (
                kind == "type_parameters"
                and any(c.type not in ("lifetime", "lifetime_parameter", "<", ">", ",") for c in node.named_children)):
            flags["has_generics"] = True
        if kind in ("lifetime", "lifetime_parameter"):
            flags["has_lifetimes"] = True
        if kind == "abstract_type":  # `impl Trait` in argument or return position
            flags["has_generics"] = True
        if kind == "function_modifiers" and "async" in text(node).split():
            flags["is_async"] = True
        if kind in ("async_block", "await_expression"):
            flags["is_async"] = True
        if kind == "unsafe_block" or (kind == "function_modifiers" and "unsafe" in text(node).split()):
            flags["has_unsafe"] = True
        if kind in ("macro_invocation", "macro_definition"):
            flags["uses_macros"] = True
    return flags


def function_categories(code: str) -> dict[str, bool]:
    """Flags of the first function in `code` (all False when there is none)."""
    fns = function_items(parse(code))
    return categories(fns[0]) if fns else dict.fromkeys(CATEGORIES, False)


def called_names(node: Node) -> set[str]:
    """Names of functions and methods called anywhere under `node` (last path segment)."""
    names: set[str] = set()
    for n in walk(node):
        if n.type == "call_expression":
            callee = n.child_by_field_name("function")
            if callee is None:
                continue
            if callee.type == "identifier":
                names.add(text(callee))
            elif callee.type == "scoped_identifier":
                last = callee.child_by_field_name("name")
                if last is not None:
                    names.add(text(last))
            elif callee.type == "field_expression":
                field = callee.child_by_field_name("field")
                if field is not None:
                    names.add(text(field))
            elif callee.type == "generic_function":
                inner = callee.child_by_field_name("function")
                if inner is not None:
                    names.add(text(inner).split("::")[-1])
        elif n.type == "macro_invocation":
            # Calls inside macro bodies (assert_eq!(f(x), 3)) are token trees, not
            # call expressions: take identifiers directly followed by a "(" token.
            tokens = [c for c in walk(n) if c.type in ("identifier", "(")]
            for a, b in zip(tokens, tokens[1:]):
                if a.type == "identifier" and b.type == "(":
                    names.add(text(a))
    return names


def macro_calls(root: Node) -> list[tuple[str, int, Node]]:
    """Every macro call under `root`, parsed (`assert_eq!(..)`) or inside another macro's token tree
    (`proptest! { .. prop_assert!(..) .. }`): (name, byte offset of the name, argument token tree)."""
    calls = []
    for node in walk(root):
        if node.type == "macro_invocation":
            name = node.child_by_field_name("macro")
            tree = next((c for c in node.children if c.type == "token_tree"), None)
            if name is not None and tree is not None:
                calls.append((text(name).split("::")[-1], name.start_byte, tree))
        elif node.type == "token_tree":
            kids = node.children
            for a, b, c in zip(kids, kids[1:], kids[2:]):
                if a.type == "identifier" and b.type == "!" and c.type == "token_tree":
                    calls.append((text(a), a.start_byte, c))
    return calls
