"""What one parsed `.rs` file offers the corpus: its test units and its candidate functions.

A test unit is the smallest piece of test code that compiles on its own; a candidate is a
non-test function that tests might call. Both carry the `use` lines visible from them, so
the pairing and the self-contained check can see the imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tree_sitter import Node

from trainer.corpus import rust_ast

# Tests are added best-first until the next one would exceed this total; a function whose
# best test alone is larger is skipped (counted as tests_too_large). A test-generating macro
# keeps as many of its invocations as fit.
MAX_TESTS_CHARS = 6000

_CFG_TEST = re.compile(r"cfg\s*\(.*\btest\b")



@dataclass(frozen=True)
class UseLine:
    """One `use` declaration visible from a function or test."""

    text: str
    node: Node
    names: frozenset[str]  # identifiers it mentions
    std: bool  # rooted at std, core or alloc


class UseScopes:
    """The `use` lines visible from a node (those of its enclosing modules), cached per module."""

    def __init__(self) -> None:
        self._cache: dict[int, list[UseLine]] = {}

    def visible(self, node: Node) -> list[UseLine]:
        lines: list[UseLine] = []
        parent = node.parent
        while parent is not None:
            if parent.type in ("declaration_list", "source_file"):
                lines += self._of(parent)
            parent = parent.parent
        return lines

    def _of(self, scope: Node) -> list[UseLine]:
        if scope.id not in self._cache:
            self._cache[scope.id] = [_use_line(c) for c in scope.named_children if c.type == "use_declaration"]
        return self._cache[scope.id]


def _use_line(node: Node) -> UseLine:
    root = use_root(node)
    return UseLine(rust_ast.text(node), node, frozenset(mentions(node)), root in ("std", "core"))


def use_root(node: Node) -> str:
    """`std` for `pub use std::{fmt, io};` (`alloc` would need `extern crate alloc;`)."""
    arg = node.child_by_field_name("argument")
    return re.match(r"[A-Za-z_0-9]*", rust_ast.text(arg))[0] if arg is not None else ""


@dataclass
class TestUnit:
    """The smallest piece of test code that compiles on its own: a `#[test]` function, a
    whole `proptest!` block, or a test-generating `macro_rules!` with its invocations."""

    key: str  # file:byte, unique within a crate
    file: str
    name: str
    source: str
    nodes: list[Node]
    calls: set[str]
    names: set[str]  # identifiers and type names in the test itself
    uses: list[UseLine]  # visible from the test's module
    is_proptest: bool

    @property
    def imported(self) -> set[str]:
        return set().union(*(u.names for u in self.uses))

    @property
    def position(self) -> int:
        return self.nodes[0].start_byte


@dataclass
class Candidate:
    """A non-test function that tests might call."""

    file: str
    name: str
    qualname: str  # Owner::name for methods
    owner: str | None  # the impl's type (or the trait's) name; None for free functions
    owner_names: set[str]  # a test must name one of these to pair with a method ...
    trait_names: set[str]  # ... or import one of these (a trait must be in scope to call it)
    node: Node
    source: str
    uses: list[UseLine]


@dataclass
class FileFacts:
    tests: list[TestUnit] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    macros: set[str] = field(default_factory=set)  # the `macro_rules!` names it defines


def _dedented(src: bytes, node: Node, start: Node | None = None) -> str:
    """Source of `node` from `start` (an attribute above it) on, its block indentation removed.

    Not textwrap.dedent: that compiles a regex per distinct margin, a third of the build time.
    """
    first = start or node
    body = src[first.start_byte:node.end_byte].decode("utf-8", errors="replace")
    lines = (" " * first.start_point.column + body).split("\n")
    margin = min((len(line) - len(line.lstrip(" ")) for line in lines if line.strip()), default=0)
    return "\n".join(line[margin:] if not line[:margin].strip() else line.lstrip(" ") for line in lines).strip("\n")


# Where items live; `block` (function bodies), token trees and expressions are not entered.
_ITEM_CONTAINERS = {"source_file", "mod_item", "impl_item", "trait_item", "declaration_list", "expression_statement"}


def _items(root: Node):
    """Items of a file (functions, macros, modules, impls) without entering function bodies."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if node.type in _ITEM_CONTAINERS:
            stack.extend(reversed(node.children))


def _first_attribute(fn: Node) -> Node | None:
    """The earliest `#[...]` written directly above `fn` (so `#[test]` travels with it)."""
    earliest = None
    sibling = fn.prev_named_sibling
    while sibling is not None and sibling.type in ("attribute_item", "line_comment", "block_comment"):
        if sibling.type == "attribute_item":
            earliest = sibling
        sibling = sibling.prev_named_sibling
    return earliest


def _in_test_module(node: Node) -> bool:
    """Inside `mod tests`/`mod test` or a module gated by a cfg mentioning `test`."""
    parent = node.parent
    while parent is not None:
        if parent.type == "mod_item":
            if rust_ast.function_name(parent) in ("tests", "test"):
                return True
            if any(_CFG_TEST.search(a) for a in rust_ast.attributes_of(parent)):
                return True
        parent = parent.parent
    return False


def _owner(fn: Node) -> tuple[str | None, set[str], set[str]]:
    """(owner name, its type and trait names, its trait names) for a method; free: (None, {}, {})."""
    parent = fn.parent
    while parent is not None and parent.type not in ("impl_item", "trait_item", "function_item", "source_file"):
        parent = parent.parent
    if parent is None or parent.type in ("function_item", "source_file"):
        return None, set(), set()
    if parent.type == "trait_item":
        name = rust_ast.function_name(parent)
        return name, {name}, {name}
    type_name = base_type_name(parent.child_by_field_name("type"))
    trait_name = base_type_name(parent.child_by_field_name("trait"))
    params = parent.child_by_field_name("type_parameters")
    generic = {rust_ast.text(c.child_by_field_name("name") or c) for c in params.named_children} if params else set()
    names = {n for n in (type_name, trait_name) if n and n not in generic}
    owner = type_name if type_name in names else trait_name  # blanket impl `impl<T> Tr for T`: the trait
    return owner, names, names - {type_name}


def base_type_name(node: Node | None) -> str | None:
    """`SmallVec` for `SmallVec<A>`, `fmt::Display` -> `Display`, `&'a Foo` -> `Foo`."""
    while node is not None and node.type in ("generic_type", "reference_type", "scoped_type_identifier", "pointer_type"):
        node = node.child_by_field_name("name") if node.type == "scoped_type_identifier" else node.child_by_field_name("type")
    return rust_ast.text(node) if node is not None else None


def leaf_nodes(node: Node) -> list[Node]:
    """The tokens under `node` (its nodes without children), in source order."""
    return [n for n in rust_ast.walk(node) if n.child_count == 0]


def _token_calls(node: Node) -> set[str]:
    """Names followed by `(` in a token tree (macro bodies), minus the `fn` names declared there."""
    leaves = leaf_nodes(node)
    declared = {rust_ast.text(b) for a, b in zip(leaves, leaves[1:]) if a.type == "fn" and b.type == "identifier"}
    called = {rust_ast.text(a) for a, b in zip(leaves, leaves[1:]) if a.type == "identifier" and b.type == "("}
    return called - declared


def _has_test_attribute(node: Node) -> bool:
    leaves = [rust_ast.text(n) for n in leaf_nodes(node)]
    return any(leaves[i:i + 4] == ["#", "[", "test", "]"] for i in range(len(leaves) - 3))


def mentions(node: Node) -> set[str]:
    return {rust_ast.text(n) for n in leaf_nodes(node) if n.type in ("identifier", "type_identifier")}


def _is_proptest(node: Node) -> bool:
    macro = node.child_by_field_name("macro")
    return macro is not None and rust_ast.text(macro).split("::")[-1] == "proptest"


def scan_file(rel: str, src: bytes, tree, *, test_file: bool) -> FileFacts:
    """Test units and candidate functions of one parsed file (`src`: its bytes; the root
    node's own text starts at its first token, so byte offsets index `src`, not that)."""
    facts = FileFacts()
    scopes = UseScopes()
    nodes = list(_items(tree.root_node))
    test_macros = {rust_ast.function_name(n): n for n in nodes if n.type == "macro_definition" and _has_test_attribute(n)}
    macro_uses: dict[str, list[Node]] = {name: [] for name in test_macros}
    facts.macros = {rust_ast.function_name(n) for n in nodes if n.type == "macro_definition"} - {None}
    for node in nodes:
        if node.type == "macro_invocation":
            macro = rust_ast.text(node.child_by_field_name("macro"))
            if macro in macro_uses:
                statement = node.parent if node.parent is not None and node.parent.type == "expression_statement" else node
                macro_uses[macro].append(statement)
            elif _is_proptest(node):
                leaves = leaf_nodes(node)
                names = sorted(rust_ast.text(b) for a, b in zip(leaves, leaves[1:]) if a.type == "fn")
                facts.tests.append(TestUnit(f"{rel}:{node.start_byte}", rel, ",".join(names), _dedented(src, node),
                                            [node], _token_calls(node), mentions(node), scopes.visible(node), True))
        elif node.type != "function_item":
            continue
        elif rust_ast.is_test_function(node):
            name = rust_ast.function_name(node)
            facts.tests.append(TestUnit(f"{rel}:{node.start_byte}", rel, name, _dedented(src, node, _first_attribute(node)),
                                        [node], rust_ast.called_names(node) - {name}, mentions(node), scopes.visible(node), False))
        elif not test_file and not _in_test_module(node):
            name = rust_ast.function_name(node)
            owner, owner_names, trait_names = _owner(node)
            qualname = f"{owner}::{name}" if owner else name
            facts.candidates.append(Candidate(rel, name, qualname, owner, owner_names, trait_names, node, _dedented(src, node),
                                              scopes.visible(node)))
    for name, definition in test_macros.items():
        unit = _macro_unit(rel, src, definition, macro_uses[name], scopes)
        if unit is not None:
            facts.tests.append(unit)
    facts.tests.sort(key=lambda t: t.position)
    return facts


def _macro_unit(rel: str, src: bytes, definition: Node, invocations: list[Node], scopes: UseScopes) -> TestUnit | None:
    """A test-generating macro and its invocations, as many as fit in MAX_TESTS_CHARS."""
    source = _dedented(src, definition, _first_attribute(definition))
    kept: list[Node] = []
    for invocation in invocations:
        text = _dedented(src, invocation)
        if len(source) + len(text) + 2 > MAX_TESTS_CHARS:
            break
        source += ("\n\n" if not kept else "\n") + text
        kept.append(invocation)
    if not kept:
        return None
    nodes = [definition, *kept]
    calls = set().union(*(_token_calls(n) for n in nodes))
    lines = {u.text: u for n in nodes for u in scopes.visible(n)}
    return TestUnit(f"{rel}:{definition.start_byte}", rel, rust_ast.function_name(definition), source, nodes,
                    calls, set().union(*(mentions(n) for n in nodes)), [lines[k] for k in sorted(lines)], False)
