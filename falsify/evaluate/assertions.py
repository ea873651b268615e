"""What the generated tests assert, how they are named, and which proptest strategies they use.

Test bodies often live inside macros (`proptest! {...}`, `assert_eq!(...)`), which
tree-sitter keeps as flat token trees; so assertions are found both as parsed
`macro_invocation` nodes and as `name ! (...)` token sequences inside token trees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tree_sitter import Node

from trainer.corpus import rust_ast

ASSERT_MACROS = {"assert", "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne",
                 "prop_assert", "prop_assert_eq", "prop_assert_ne"}
_EQ_MACROS = {m for m in ASSERT_MACROS if m.endswith(("_eq", "_ne"))}
_LEAF_LITERALS = {"integer_literal", "float_literal", "boolean_literal", "string_literal", "char_literal",
                  "raw_string_literal", "true", "false", "string_content"}
_NAME_PREFIXES = re.compile(r"^(test|tests|it|prop|proptest|check|should)_?")


@dataclass
class TestFacts:
    assertions: dict = field(default_factory=dict)   # count, trivial, tautological, uses_function_result
    calls_function: bool = False                      # the tests call a function defined in function_code
    test_names: dict = field(default_factory=dict)    # count, descriptive, names
    has_comments: bool = False
    proptest_strategies: list[str] = field(default_factory=list)
    edge_cases: list[str] = field(default_factory=list)  # kinds of boundary input the tests try


# Boundary inputs a tester should try. Matched on the token stream of the tests (macro
# bodies included), so `assert_eq!(f(i32::MAX), ..)` counts. Written here because no
# library classifies Rust test inputs; the list is the usual boundary-value set.
EDGE_CASES = {
    "zero": re.compile(r"(?<![\w.\[])0(?:_?[iu](?:8|16|32|64|128|size))?(?![\w.\]])"),
    "negative": re.compile(r"(?:^|[(,\[=]\s*)-\s*\d"),
    "min_max": re.compile(r"\b(?:[iu](?:8|16|32|64|128|size)|f32|f64)::(?:MIN|MAX|EPSILON|MIN_POSITIVE)\b"),
    "empty": re.compile(r'""|\bvec!\[\s*\]|\b(?:Vec|String|HashMap|BTreeMap|HashSet)::new\(\)|&\[\s*\]|\[\s*\]'),
    "none_or_err": re.compile(r"\bNone\b|\bErr\s*\(|\.is_err\(\)|\.is_none\(\)|#\[should_panic"),
    "non_finite": re.compile(r"\b(?:f32|f64)::(?:NAN|INFINITY|NEG_INFINITY)\b"),
}


def edge_cases(tests: str) -> list[str]:
    code = re.sub(r"//[^\n]*", "", tests)
    return [kind for kind, pattern in EDGE_CASES.items() if pattern.search(code)]


def _leaves(node: Node) -> list[Node]:
    return [n for n in rust_ast.walk(node) if n.child_count == 0 and n.type not in ("line_comment", "block_comment")]


def _split_args(tree: Node) -> list[list[Node]]:
    """Top-level comma-separated arguments of a token tree / macro argument list, as leaf lists."""
    inner = tree.children[1:-1]
    args: list[list[Node]] = [[]]
    for child in inner:
        if child.type == ",":
            args.append([])
        else:
            args[-1].extend(_leaves(child) if child.child_count else [child])
    return [a for a in args if a]


def _assert_sites(root: Node) -> list[tuple[str, Node]]:
    """(macro name, argument token tree) of every assertion, parsed or inside token trees."""
    sites = []
    for node in rust_ast.walk(root):
        if node.type == "macro_invocation":
            name = rust_ast.text(node.child_by_field_name("macro")).split("::")[-1]
            tree = next((c for c in node.children if c.type == "token_tree"), None)
            if name in ASSERT_MACROS and tree is not None:
                sites.append((name, tree))
        elif node.type == "token_tree":
            kids = node.children
            for a, b, c in zip(kids, kids[1:], kids[2:]):
                if a.type == "identifier" and b.type == "!" and c.type == "token_tree" and rust_ast.text(a) in ASSERT_MACROS:
                    sites.append((rust_ast.text(a), c))
    return sites


def _calls(leaves: list[Node], names: set[str]) -> bool:
    """An identifier from `names` directly followed by `(` (a call, also as a method)."""
    return any(a.type == "identifier" and rust_ast.text(a) in names and b.type == "(" for a, b in zip(leaves, leaves[1:]))


def _result_bindings(root: Node, names: set[str]) -> set[str]:
    """Variables bound by `let x = ...f(...)...;` for a function f in `names` (parsed or token form)."""
    bound: set[str] = set()
    for node in rust_ast.walk(root):
        if node.type == "let_declaration":
            value = node.child_by_field_name("value")
            pat = node.child_by_field_name("pattern")
            if value is not None and pat is not None and _calls(_leaves(value), names):
                bound |= {rust_ast.text(n) for n in rust_ast.walk(pat) if n.type == "identifier"}
        elif node.type == "token_tree":
            toks = _leaves(node)
            for i, tok in enumerate(toks):
                if tok.type == "let" or rust_ast.text(tok) == "let":
                    j = i + 1
                    if j < len(toks) and rust_ast.text(toks[j]) == "mut":
                        j += 1
                    end = next((k for k in range(j, len(toks)) if toks[k].type == ";"), len(toks))
                    if j < len(toks) and toks[j].type == "identifier" and _calls(toks[j:end], names):
                        bound.add(rust_ast.text(toks[j]))
    return bound


def analyse(tests: str, function_code: str) -> TestFacts:
    root = rust_ast.parse(tests).root_node
    fn_names = {rust_ast.function_name(f) for f in rust_ast.function_items(rust_ast.parse(function_code))}
    fn_names.discard("")
    bound = _result_bindings(root, fn_names)
    facts = TestFacts()
    count = trivial = taut = uses = 0
    for name, tree in _assert_sites(root):
        args = _split_args(tree)
        value_args = args[:2] if name in _EQ_MACROS else args[:1]
        count += 1
        if value_args and all(all(t.type in _LEAF_LITERALS or not t.type.isidentifier() or t.type in ("true", "false")
                                  for t in arg) for arg in value_args):
            trivial += 1
        elif _is_tautology(name, value_args):
            taut += 1
        leaves = [t for arg in value_args for t in arg]
        if _calls(leaves, fn_names) or any(t.type == "identifier" and rust_ast.text(t) in bound for t in leaves):
            uses += 1
    facts.assertions = {"count": count, "trivial": trivial, "tautological": taut, "uses_function_result": uses}
    facts.calls_function = _calls(_leaves(root), fn_names)
    names = _test_names(root)
    facts.test_names = {"count": len(names), "descriptive": sum(map(is_descriptive, names)), "names": names}
    facts.has_comments = any(n.type in ("line_comment", "block_comment") for n in rust_ast.walk(root))
    facts.proptest_strategies = _strategies(root)
    facts.edge_cases = edge_cases(tests)
    return facts


def _is_tautology(macro: str, value_args: list[list[Node]]) -> bool:
    """`assert_eq!(x, x)` (identical arguments) or `assert!(x == x)` (a self-comparison)."""
    if macro in _EQ_MACROS:
        return len(value_args) == 2 and _norm(value_args[0]) == _norm(value_args[1])
    return bool(value_args) and _self_compare(value_args[0])


def _norm(tokens: list[Node]) -> str:
    return "".join(rust_ast.text(t) for t in tokens)


def _self_compare(tokens: list[Node]) -> bool:
    """`assert!(x == x)`: both sides of a top-level comparison are the same tokens."""
    texts = [rust_ast.text(t) for t in tokens]
    for op in ("==", "<=", ">="):
        if texts.count(op) == 1:
            i = texts.index(op)
            return texts[:i] == texts[i + 1:] and bool(texts[:i])
    return False


def _test_names(root: Node) -> list[str]:
    """Names of #[test] functions and of the `fn` items inside proptest! blocks."""
    names = [rust_ast.function_name(f) for f in rust_ast.walk(root)
             if f.type == "function_item" and rust_ast.is_test_function(f)]
    for node in rust_ast.walk(root):
        if node.type == "macro_invocation" and rust_ast.text(node.child_by_field_name("macro")).endswith("proptest"):
            toks = _leaves(node)
            names += [rust_ast.text(b) for a, b in zip(toks, toks[1:]) if a.type == "fn" and b.type == "identifier"]
    return names


def is_descriptive(name: str) -> bool:
    """At least two words left after a `test_`/`it_`/`prop_` prefix and numbering: says what is checked."""
    words = [w for w in _NAME_PREFIXES.sub("", name.lower()).split("_") if w and not w.isdigit()]
    return len(words) >= 2


def _strategies(root: Node) -> list[str]:
    """Strategy expressions of proptest parameters (`x in STRATEGY`), compacted."""
    found: list[str] = []
    for node in rust_ast.walk(root):
        if node.type == "macro_invocation" and rust_ast.text(node.child_by_field_name("macro")).endswith("proptest"):
            for tree in rust_ast.walk(node):
                if tree.type != "token_tree" or tree is node:
                    continue
                kids = tree.children
                if not any(rust_ast.text(k) == "in" for k in kids):
                    continue
                for arg in _split_args(tree):
                    texts = [rust_ast.text(t) for t in arg]
                    if "in" in texts:
                        found.append("".join(texts[texts.index("in") + 1:]))
    return found
