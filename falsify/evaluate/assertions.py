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
# Calls whose closure's panic does not fail the test unless their result is unwrapped or asserted on.
_PANIC_CATCHERS = {"catch_unwind", "spawn"}
_DISCARDING = {"ok", "is_ok", "is_err", "join"}   # `catch_unwind(..).is_err();`: the result is dropped
_PANIC_MACROS = {"panic", "unreachable", "todo", "unimplemented"}
_PANICKING_UNWRAP = re.compile(r"^(?:Option(?:\s*::\s*<[^>]*>)?\s*::\s*)?None(?:\s*::\s*<[^>]*>)?\s*\.\s*(?:unwrap|expect)\s*\("
                               r"|^(?:Result\s*::\s*)?Err(?:\s*::\s*<[^>]*>)?\s*\(.*\)\s*\.\s*(?:unwrap|expect)\s*\(", re.S)


@dataclass
class TestFacts:
    assertions: dict = field(default_factory=dict)   # count, trivial, tautological, cannot_fail, uses_function_result
    cannot_fail: list[str] = field(default_factory=list)  # what cannot fail, and where, in words
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
    return [(name, tree) for name, _, tree in rust_ast.macro_calls(root) if name in ASSERT_MACROS]


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
    facts.cannot_fail = swallowed_assertions(root) + self_panicking_tests(root)
    facts.assertions = {"count": count, "trivial": trivial, "tautological": taut, "cannot_fail": len(facts.cannot_fail),
                        "uses_function_result": uses}
    facts.calls_function = _calls(_leaves(root), fn_names)
    names = _test_names(root)
    facts.test_names = {"count": len(names), "descriptive": sum(map(is_descriptive, names)), "names": names}
    facts.has_comments = any(n.type in ("line_comment", "block_comment") for n in rust_ast.walk(root))
    facts.proptest_strategies = _strategies(root)
    facts.edge_cases = edge_cases(tests)
    return facts


def _is_tautology(macro: str, value_args: list[list[Node]]) -> bool:
    """`assert_eq!(x, x)`, `assert_eq!(f(1), f(1))` (identical arguments), `assert!(x == x)` (a self-comparison)
    or `assert!(... || true)` (an operand that is always true)."""
    if macro in _EQ_MACROS:
        return len(value_args) == 2 and _norm(value_args[0]) == _norm(value_args[1])
    return bool(value_args) and (_self_compare(value_args[0]) or _or_true(value_args[0]))


def _or_true(tokens: list[Node]) -> bool:
    """A top-level `||` operand that is the literal `true`: `x == 3 || true`, `true || x == 3`."""
    operands: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        t = rust_ast.text(tok)
        depth += (t in "([{") - (t in ")]}") if len(t) == 1 else 0
        if t == "||" and depth == 0:
            operands.append([])
        else:
            operands[-1].append(t)
    return len(operands) > 1 and ["true"] in operands


def _closing(toks: list[Node], open_at: int) -> int:
    """The index of the bracket that closes `toks[open_at]` (or the last token)."""
    depth = 0
    for k in range(open_at, len(toks)):
        t = rust_ast.text(toks[k])
        depth += (t in "([{") - (t in ")]}") if len(t) == 1 else 0
        if depth == 0:
            return k
    return len(toks) - 1


def _assert_spans(toks: list[Node]) -> list[tuple[int, int]]:
    """Token index ranges of every assertion macro's arguments, in the flat token list."""
    return [(k, _closing(toks, k + 2)) for k in range(len(toks) - 2)
            if rust_ast.text(toks[k]) in ASSERT_MACROS and toks[k + 1].type == "!"]


def _result_dropped(toks: list[Node], start: int, end: int) -> bool:
    """The call `toks[start..=end]` is a statement whose result is dropped (`let _ = ..`, `..;`, `..ok();`)."""
    before = [rust_ast.text(t) for t in toks[max(0, start - 3):start]]
    if before[-1:] == ["="]:
        return before[-2:-1] == ["_"]   # `let r = ...` keeps it: r may be asserted on later
    after = [rust_ast.text(t) for t in toks[end + 1:end + 5]]
    return after[:1] == [";"] or (after[:1] == ["."] and after[1:2] and after[1] in _DISCARDING
                                  and after[2:4] == ["(", ")"] and toks[end + 5:end + 6] != []
                                  and rust_ast.text(toks[end + 5]) == ";")


def swallowed_assertions(root: Node) -> list[str]:
    """Assertions inside a catch_unwind (or thread::spawn) closure whose result is dropped: their panic is swallowed."""
    toks = _leaves(root)
    spans = _assert_spans(toks)
    notes = []
    for i, tok in enumerate(toks[:-1]):
        if rust_ast.text(tok) not in _PANIC_CATCHERS or rust_ast.text(toks[i + 1]) != "(":
            continue
        end = _closing(toks, i + 1)
        start = i
        while start >= 2 and rust_ast.text(toks[start - 1]) == "::":
            start -= 2
        if any(lo < i <= hi for lo, hi in spans) or not _result_dropped(toks, start, end):
            continue
        for lo, _ in spans:
            if i < lo < end:
                notes.append(f"{rust_ast.text(toks[lo])}! at line {toks[lo].start_point[0] + 1} runs inside "
                             f"{rust_ast.text(tok)} and its result is dropped: its panic is swallowed")
    return notes


def self_panicking_tests(root: Node) -> list[str]:
    """#[should_panic] tests whose body panics on its own (panic!, None.unwrap()): they pass whatever the function does."""
    notes = []
    for fn in (n for n in rust_ast.walk(root) if n.type == "function_item"):
        body = fn.child_by_field_name("body")
        if body is None or not any("should_panic" in a for a in rust_ast.attributes_of(fn)):
            continue
        for stmt in body.named_children:
            expr = stmt.child_by_field_name("value") if stmt.type == "let_declaration" else stmt
            expr = expr.named_children[0] if expr is not None and expr.type == "expression_statement" else expr
            if expr is not None and _panics_itself(expr):
                notes.append(f"#[should_panic] test {rust_ast.function_name(fn)} panics on its own "
                             f"(`{rust_ast.text(expr)[:40]}` at line {expr.start_point[0] + 1})")
                break
    return notes


def _panics_itself(expr: Node) -> bool:
    if expr.type == "macro_invocation":
        name = rust_ast.text(expr.child_by_field_name("macro")).split("::")[-1]
        args = rust_ast.text(expr)[len(rust_ast.text(expr.child_by_field_name("macro"))) + 1:].strip("()[]{} \n")
        return name in _PANIC_MACROS or (name in ("assert", "debug_assert") and args.split(",")[0].strip() == "false")
    return bool(_PANICKING_UNWRAP.match(rust_ast.text(expr)))


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
