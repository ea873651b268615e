"""Build the function -> tests corpus from real Rust crate sources.

`python -m trainer corpus build --source DIR --out DIR [--crates FILE|all] [--seed N]`

Walks crates laid out as Debian ships them (`<source>/<crate>-<version>/`, newest version
of each crate wins), parses every `.rs` file with tree-sitter-rust (`trainer.corpus.rust_ast`),
and pairs each non-test function with the `#[test]` functions and `proptest!` blocks that
call it by name. Where a test may live, what "calls it" means and when a pair counts as
`self_contained` are heuristics, documented at the functions that implement them.

Writes `train/validation/test.jsonl` (split by a hash of the record id), `holdout.jsonl`
(four edge-case categories, removed from the splits) and `corpus_report.json`. Same
sources and seed give byte-identical files: sorted traversal, sorted keys, no clocks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tree_sitter import Node

from trainer.corpus import rust_ast
from trainer.errors import TrainerError

DEFAULT_CRATE_LIST = Path(__file__).with_name("crates.txt")

# A function longer than this is rarely a good "write tests for this" prompt and would
# crowd out the tests within the trainer's sequence budget; skipped, and counted.
MAX_FUNCTION_CHARS = 4000
# Tests are added best-first until the next one would exceed this total; a function whose
# best test alone is larger is skipped (counted as tests_too_large).
MAX_TESTS_CHARS = 6000

SPLITS = (("train", 80), ("validation", 10), ("test", 10))  # percent of hash buckets
# Filled in this order, so the rarest category picks first when a record fits several.
HOLDOUT_CATEGORIES = ("async", "generics_lifetimes", "error_handling", "std_like")
HOLDOUT_PER_CATEGORY = 50

_CRATE_DIR = re.compile(r"^(?P<name>.+?)-(?P<version>\d+\.\d+\.\d+\S*)$")
_CFG_TEST = re.compile(r"cfg\s*\(.*\btest\b")


# --------------------------------------------------------------------------- crates


@dataclass(frozen=True)
class Crate:
    name: str
    version: str
    path: Path


def _version_key(version: str) -> tuple:
    """Semver order: numeric core, then a release sorts above its pre-releases."""
    core, _, pre = version.partition("-")
    core = core.split("+")[0]
    numbers = tuple(int(p) if p.isdigit() else 0 for p in core.split("."))
    pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return numbers, (0,) if pre else (1,), pre_key


def _norm(name: str) -> str:
    """Debian package names use '-' where crate names may use '_' (form_urlencoded)."""
    return name.strip().lower().replace("_", "-")


def discover_crates(source: Path) -> dict[str, Crate]:
    """Newest version of every `<name>-<version>/` directory under `source`, by normalized name."""
    found: dict[str, Crate] = {}
    for entry in sorted(source.iterdir()):
        match = _CRATE_DIR.match(entry.name)
        if not entry.is_dir() or match is None:
            continue
        crate = Crate(match["name"], match["version"], entry)
        key = _norm(crate.name)
        if key not in found or _version_key(crate.version) > _version_key(found[key].version):
            found[key] = crate
    return found


def read_crate_list(path: Path) -> list[str]:
    """One crate name per line; blank lines and `#` comments ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrainerError(f"cannot read crate list {path}: {exc.strerror}") from None
    names = [line.split("#")[0].strip() for line in lines]
    return [n for n in names if n]


# --------------------------------------------------------------------------- one file


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
    root = _use_root(node)
    return UseLine(rust_ast.text(node), node, frozenset(_mentions(node)), root in ("std", "core"))


def _use_root(node: Node) -> str:
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
    type_name = _base_type_name(parent.child_by_field_name("type"))
    trait_name = _base_type_name(parent.child_by_field_name("trait"))
    params = parent.child_by_field_name("type_parameters")
    generic = {rust_ast.text(c.child_by_field_name("name") or c) for c in params.named_children} if params else set()
    names = {n for n in (type_name, trait_name) if n and n not in generic}
    owner = type_name if type_name in names else trait_name  # blanket impl `impl<T> Tr for T`: the trait
    return owner, names, names - {type_name}


def _base_type_name(node: Node | None) -> str | None:
    """`SmallVec` for `SmallVec<A>`, `fmt::Display` -> `Display`, `&'a Foo` -> `Foo`."""
    while node is not None and node.type in ("generic_type", "reference_type", "scoped_type_identifier", "pointer_type"):
        node = node.child_by_field_name("name") if node.type == "scoped_type_identifier" else node.child_by_field_name("type")
    return rust_ast.text(node) if node is not None else None


def _leaves(node: Node) -> list[Node]:
    return [n for n in rust_ast.walk(node) if n.child_count == 0]


def _token_calls(node: Node) -> set[str]:
    """Names followed by `(` in a token tree (macro bodies), minus the `fn` names declared there."""
    leaves = _leaves(node)
    declared = {rust_ast.text(b) for a, b in zip(leaves, leaves[1:]) if a.type == "fn" and b.type == "identifier"}
    called = {rust_ast.text(a) for a, b in zip(leaves, leaves[1:]) if a.type == "identifier" and b.type == "("}
    return called - declared


def _has_test_attribute(node: Node) -> bool:
    leaves = [rust_ast.text(n) for n in _leaves(node)]
    return any(leaves[i:i + 4] == ["#", "[", "test", "]"] for i in range(len(leaves) - 3))


def _mentions(node: Node) -> set[str]:
    return {rust_ast.text(n) for n in _leaves(node) if n.type in ("identifier", "type_identifier")}


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
    for node in nodes:
        if node.type == "macro_invocation":
            macro = rust_ast.text(node.child_by_field_name("macro"))
            if macro in macro_uses:
                statement = node.parent if node.parent is not None and node.parent.type == "expression_statement" else node
                macro_uses[macro].append(statement)
            elif _is_proptest(node):
                leaves = _leaves(node)
                names = sorted(rust_ast.text(b) for a, b in zip(leaves, leaves[1:]) if a.type == "fn")
                facts.tests.append(TestUnit(f"{rel}:{node.start_byte}", rel, ",".join(names), _dedented(src, node),
                                            [node], _token_calls(node), _mentions(node), scopes.visible(node), True))
        elif node.type != "function_item":
            continue
        elif rust_ast.is_test_function(node):
            name = rust_ast.function_name(node)
            facts.tests.append(TestUnit(f"{rel}:{node.start_byte}", rel, name, _dedented(src, node, _first_attribute(node)),
                                        [node], rust_ast.called_names(node) - {name}, _mentions(node), scopes.visible(node), False))
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
                    calls, set().union(*(_mentions(n) for n in nodes)), [lines[k] for k in sorted(lines)], False)


# --------------------------------------------------------------------------- heuristics

# Where `self_contained` looks: prelude names are usable in a fresh crate without `use`.
_PRELUDE = {
    "Option", "Some", "None", "Result", "Ok", "Err", "String", "Vec", "Box", "ToString", "ToOwned",
    "Clone", "Copy", "Send", "Sync", "Sized", "Unpin", "Default", "Drop", "Eq", "PartialEq", "Ord",
    "PartialOrd", "Fn", "FnMut", "FnOnce", "From", "Into", "TryFrom", "TryInto", "Iterator",
    "IntoIterator", "DoubleEndedIterator", "ExactSizeIterator", "Extend", "FromIterator", "AsRef",
    "AsMut", "Self", "Debug", "Hash",  # Debug/Hash: the derive names, in prelude since 2018
}
_PRIMITIVES = {
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
}
# `alloc` is left out: it needs `extern crate alloc;`, which a fresh crate lacks.
_STD_ROOTS = {"std", "core", "proptest", "prop"} | _PRIMITIVES | _PRELUDE
_STD_MACROS = {
    "assert", "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne", "vec",
    "format", "format_args", "print", "println", "eprint", "eprintln", "write", "writeln", "panic",
    "unreachable", "unimplemented", "todo", "matches", "concat", "stringify", "dbg", "cfg", "line",
    "file", "column", "thread_local", "proptest", "prop_assert", "prop_assert_eq", "prop_assert_ne",
    "prop_assume", "prop_oneof", "prop_compose",
}
_STD_FUNCTIONS = {"drop", "Some", "Ok", "Err", "Box"}
_DEFINING = {
    "function_item", "struct_item", "enum_item", "union_item", "type_item", "trait_item", "const_item",
    "static_item", "macro_definition", "mod_item",
}
_BINDING_PARENTS = {"parameter", "closure_parameters", "let_declaration", "for_expression", "tuple_pattern",
                    "reference_pattern", "mut_pattern", "ref_pattern"}
_CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$")
_CONST = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _local_names(nodes: list[Node]) -> set[str]:
    """Names the function and its tests define or import from std themselves."""
    names: set[str] = set()
    for root in nodes:
        for n in rust_ast.walk(root):
            if n.type in _DEFINING:
                names.add(rust_ast.function_name(n))
            elif n.type in ("type_parameter", "const_parameter", "lifetime_parameter"):
                name = n.child_by_field_name("name")
                names.add(rust_ast.text(name or n))
            elif n.type == "identifier" and n.parent is not None and n.parent.type in _BINDING_PARENTS:
                names.add(rust_ast.text(n))
            elif n.type == "use_declaration":
                if _use_root(n) in ("std", "core", "proptest"):
                    names.update(_mentions(n) - {"std", "core", "proptest"})
        leaves = _leaves(root)
        names.update(rust_ast.text(b) for a, b in zip(leaves, leaves[1:])  # proptest!/macro_rules! fns
                     if a.type in ("fn", "let", "mut") and b.type == "identifier")
    return names


def _path_root(node: Node) -> tuple[str, str]:
    """(first segment, second segment) of a scoped path like `std::mem::swap`."""
    while node.child_by_field_name("path") is not None and node.child_by_field_name("path").type in (
            "scoped_identifier", "scoped_type_identifier"):
        node = node.child_by_field_name("path")
    path, name = node.child_by_field_name("path"), node.child_by_field_name("name")
    first = re.match(r"[A-Za-z_0-9]*", rust_ast.text(path))[0] if path is not None else ""
    return first, rust_ast.text(name) if name is not None else ""


def _foreign_names(root: Node, local: set[str]) -> set[str]:
    """Names used under `root` that a fresh crate holding only the function and tests lacks."""
    ok = local | _PRELUDE | _PRIMITIVES
    foreign: set[str] = set()

    def check_root(first: str, second: str) -> None:
        if first in ("super", "crate", "self"):
            if second not in ok and second != "*":
                foreign.add(f"{first}::{second}")
        elif first and first not in _STD_ROOTS and first not in local:
            foreign.add(first)

    for n in rust_ast.walk(root):
        kind = n.type
        if kind in ("scoped_identifier", "scoped_type_identifier") and (
                n.parent is None or n.parent.type not in ("scoped_identifier", "scoped_type_identifier")):
            check_root(*_path_root(n))
        elif kind == "use_declaration":
            arg = rust_ast.text(n.child_by_field_name("argument") or n).split("::")
            check_root(arg[0], arg[1].strip("{} ") if len(arg) > 1 else "")
        elif kind == "macro_invocation":
            macro = rust_ast.text(n.child_by_field_name("macro")).split("::")[-1]
            if macro not in _STD_MACROS and macro not in local:
                foreign.add(macro + "!")
        elif kind == "call_expression":
            callee = n.child_by_field_name("function")
            if callee is not None and callee.type == "identifier" and rust_ast.text(callee) not in ok | _STD_FUNCTIONS:
                foreign.add(rust_ast.text(callee))
        elif kind in ("identifier", "type_identifier") and n.parent is not None and n.parent.type not in (
                "scoped_identifier", "scoped_type_identifier", "attribute", "token_tree", "use_declaration",
                "scoped_use_list", "use_list", "use_as_clause", "macro_invocation", "type_binding"):
            name = rust_ast.text(n)
            if (_CAMEL.match(name) or _CONST.match(name)) and name not in ok:
                foreign.add(name)
        elif kind == "token_tree" and n.parent is not None and n.parent.type == "macro_invocation":
            foreign |= _foreign_in_tokens(_leaves(n), ok)
    return foreign


def _foreign_in_tokens(leaves: list[Node], ok: set[str]) -> set[str]:
    """The same check on a macro body, where tree-sitter only gives tokens."""
    foreign: set[str] = set()
    for i, tok in enumerate(leaves):
        if tok.type != "identifier":
            continue
        before = leaves[i - 1].type if i else ""
        after = leaves[i + 1].type if i + 1 < len(leaves) else ""
        name = rust_ast.text(tok)
        in_attribute = i >= 2 and leaves[i - 1].type == "[" and leaves[i - 2].type in ("#", "!")
        if before in ("::", ".", "fn", "let", "mut", "'") or name in ok or in_attribute:
            continue
        if after == "::":
            if name not in _STD_ROOTS and name not in ("super", "crate", "self"):
                foreign.add(name)
        elif after == "!":
            if name not in _STD_MACROS:
                foreign.add(name + "!")
        elif after == "(" and name[:1].islower() and name not in _STD_FUNCTIONS and before not in ("in", "|") or _CAMEL.match(name) or _CONST.match(name):
            foreign.add(name)
    return foreign


def std_uses(candidate: Candidate, tests: list[TestUnit]) -> list[UseLine]:
    """The `use std::...`/`core`/`alloc` lines in scope that import a name the code uses.

    Recorded in metadata (`std_uses`) so a standalone crate can be given the imports the
    function and tests rely on from their modules (`use std::sync::Arc;`).
    """
    used = _mentions(candidate.node).union(*(t.names for t in tests))
    found: dict[str, UseLine] = {}  # by text: the same line in two files is one import
    for line in candidate.uses + [u for t in tests for u in t.uses]:
        if line.std and ("*" in line.text or line.names - {"std", "core"} & used):
            found[line.text] = line
    return [found[k] for k in sorted(found)]


def self_contained(candidate: Candidate, tests: list[TestUnit], uses: list[UseLine]) -> bool:
    """Could a fresh crate with just this function, its tests and `uses` compile? A heuristic.

    True when the function is free (not a method or associated fn) and every name the
    function and its tests use is a primitive, a prelude item, a std/core/alloc path or
    macro, proptest, a name imported by `uses` (std imports of the enclosing modules), or
    something the function and tests define themselves (items, generic parameters,
    bindings, local `use std::...`). Method calls (`x.foo()`) cannot be resolved from
    syntax and are assumed to be std methods, and glob imports are trusted, so this can
    say True for code that does not compile; it never looks outside the given text.
    """
    if candidate.owner is not None:
        return False
    nodes = [candidate.node] + [n for t in tests for n in t.nodes]
    local = _local_names(nodes + [u.node for u in uses]) | {candidate.name}
    return not any(_foreign_names(n, local) for n in nodes)


_STD_TRAITS = {
    "Iterator", "DoubleEndedIterator", "ExactSizeIterator", "IntoIterator", "FromIterator", "Extend",
    "From", "TryFrom", "FromStr", "Display", "Debug", "Default", "Clone", "PartialEq", "Eq",
    "PartialOrd", "Ord", "Hash", "Hasher", "Deref", "DerefMut", "Index", "IndexMut", "AsRef", "AsMut",
    "Borrow", "BorrowMut", "Add", "Sub", "Mul", "Div", "Rem", "Neg", "Not", "BitAnd", "BitOr", "BitXor",
    "Shl", "Shr", "AddAssign", "SubAssign", "MulAssign", "DivAssign", "Read", "Write", "BufRead",
    "Seek", "Drop", "Error",
}
_STD_TYPES = _PRELUDE | {
    "HashMap", "HashSet", "BTreeMap", "BTreeSet", "VecDeque", "BinaryHeap", "Rc", "Arc", "Cell",
    "RefCell", "Cow", "Ordering", "Duration", "Path", "PathBuf", "Formatter", "Error",
}


def holdout_categories(candidate: Candidate, flags: dict[str, bool]) -> list[str]:
    """Which of the four holdout categories (SPEC: Corpus) a function belongs to.

    async: `async fn`, async blocks or `.await`. generics_lifetimes: type parameters,
    `impl Trait`, where clauses or lifetimes. error_handling: returns `Result`/`Option` or
    uses `?`. std_like: implements a std trait (Iterator, Display, From, Ord, ...), or is a
    free function whose signature only uses primitive and std types (like a std function).
    """
    fn = candidate.node
    cats = []
    if flags["is_async"]:
        cats.append("async")
    if flags["has_generics"] or flags["has_lifetimes"]:
        cats.append("generics_lifetimes")
    ret = fn.child_by_field_name("return_type")
    ret_names = _mentions(ret) if ret is not None else set()
    if {"Result", "Option"} & ret_names or any(n.type == "try_expression" for n in rust_ast.walk(fn)):
        cats.append("error_handling")
    impl = fn.parent.parent if fn.parent is not None else None
    trait = _base_type_name(impl.child_by_field_name("trait")) if impl is not None and impl.type == "impl_item" else None
    params = fn.child_by_field_name("parameters")
    sig_types = {rust_ast.text(n) for part in (params, ret) if part is not None
                 for n in rust_ast.walk(part) if n.type == "type_identifier"}
    if trait in _STD_TRAITS or (candidate.owner is None and sig_types <= _STD_TYPES):
        cats.append("std_like")
    return [c for c in HOLDOUT_CATEGORIES if c in cats]


# --------------------------------------------------------------------------- pairing


def _is_test_path(rel: str) -> bool:
    """Files holding tests only: a `tests/` dir anywhere, or `tests.rs`/`test.rs` modules."""
    parts = rel.split("/")
    return "tests" in parts[:-1] or parts[-1] in ("tests.rs", "test.rs")


def _skip_path(rel: str) -> bool:
    """Not library code and not tests: benchmarks, examples, build scripts, fuzz targets."""
    parts = rel.split("/")
    return bool({"benches", "examples", "fuzz", "target"} & set(parts[:-1])) or parts[-1] == "build.rs"


def _reaches(candidate: Candidate, test: TestUnit) -> bool:
    if candidate.owner is None:
        return True
    return bool(candidate.owner_names & test.names or candidate.trait_names & test.imported)


def _tests_for(candidate: Candidate, pool: list[TestUnit]) -> tuple[list[TestUnit], int]:
    """(tests that call the candidate by name, best first, within MAX_TESTS_CHARS; all hits).

    A method must also have its impl's type or trait named in the test (or its trait
    imported by the test's module), so `.len()` on a Vec does not pair with every `len`
    method of the crate. Order: tests named after the function, then tests in the
    function's own file, then by file and position.
    """
    hits = [t for t in pool if candidate.name in t.calls and _reaches(candidate, t)]
    hits.sort(key=lambda t: (candidate.name not in t.name, t.file != candidate.file, t.file, t.position))
    chosen, total = [], 0
    for test in hits:
        if total + len(test.source) > MAX_TESTS_CHARS:
            break
        chosen.append(test)
        total += len(test.source) + 2
    return chosen, len(hits)


def _record(crate: Crate, candidate: Candidate, occurrence: int, tests: list[TestUnit]) -> dict:
    flags = rust_ast.categories(candidate.node)
    uses = std_uses(candidate, tests)
    return {
        "input": candidate.source,
        "output": "\n\n".join(t.source for t in tests),
        "metadata": {
            "id": f"{_norm(crate.name)}/{candidate.file}::{candidate.qualname}#{occurrence}",
            "crate": crate.name,
            "crate_version": crate.version,
            "file": candidate.file,
            "function": candidate.qualname,
            "owner": candidate.owner,
            "cyclomatic_complexity": rust_ast.cyclomatic_complexity(candidate.node),
            **flags,
            "categories": holdout_categories(candidate, flags),
            "n_tests": len(tests),
            "has_proptest": any(t.is_proptest for t in tests),
            "self_contained": self_contained(candidate, tests, uses),
            "std_uses": [u.text for u in uses],
        },
        "_tests": [t.key for t in tests],  # internal: holdout leak check, removed before writing
    }


def pair_crate(crate: Crate, report: dict) -> list[dict]:
    """All (function, tests) records of one crate, in id order; counts skips into `report`."""
    files: dict[str, FileFacts] = {}
    for path in sorted(p for p in crate.path.rglob("*.rs") if p.is_file()):
        rel = path.relative_to(crate.path).as_posix()
        if _skip_path(rel):
            continue
        reason = None
        try:
            src = path.read_bytes()
            src.decode("utf-8")
            tree = rust_ast.parse(src)
            if rust_ast.has_syntax_errors(tree):
                reason = "syntax_error"
        except UnicodeDecodeError:
            reason = "non_utf8"
        except OSError:
            reason = "unreadable"
        if reason:
            report["skipped_files"].append({"file": f"{crate.path.name}/{rel}", "reason": reason})
            print(f"warning: skipped {path} ({reason})", file=sys.stderr)
            continue
        files[rel] = scan_file(rel, src, tree, test_file=_is_test_path(rel))

    shared_pool = [t for rel, facts in files.items() if _is_test_path(rel) for t in facts.tests]
    records = []
    for rel, facts in files.items():
        pool = facts.tests + [t for t in shared_pool if t.file != rel]
        occurrences: Counter[str] = Counter()
        for cand in facts.candidates:
            occurrence = occurrences[cand.qualname]
            occurrences[cand.qualname] += 1
            report["functions_scanned"] += 1
            tests, hits = _tests_for(cand, pool)
            if not hits:
                continue
            if not tests:
                report["skipped_functions"]["tests_too_large"] += 1
                continue
            if len(cand.source) > MAX_FUNCTION_CHARS:
                report["skipped_functions"]["function_too_large"] += 1
                continue
            records.append(_record(crate, cand, occurrence, tests))
    return sorted(records, key=lambda r: r["metadata"]["id"])


# --------------------------------------------------------------------------- splits


def _hash(seed: int, ident: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{ident}".encode()).digest()[:8], "big")


def split_of(ident: str, seed: int) -> str:
    bucket = _hash(seed, ident) % 100
    for name, percent in SPLITS:
        if bucket < percent:
            return name
        bucket -= percent
    raise AssertionError("SPLITS must sum to 100")


def select_holdout(records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Up to HOLDOUT_PER_CATEGORY records per category, in preference order.

    Self-contained ones first; then ones whose tests pair with no other function (a
    holdout record's tests must not appear in training, so every record sharing them is
    dropped from the splits: this keeps that loss small); then by hash of id and seed.
    """
    users = Counter(k for r in records for k in r["_tests"])
    taken: set[str] = set()
    chosen: dict[str, list[dict]] = {}
    for category in HOLDOUT_CATEGORIES:
        pool = [r for r in records if category in r["metadata"]["categories"] and r["metadata"]["id"] not in taken]
        pool.sort(key=lambda r: (not r["metadata"]["self_contained"], any(users[k] > 1 for k in r["_tests"]),
                                 _hash(seed, r["metadata"]["id"]), r["metadata"]["id"]))
        chosen[category] = pool[:HOLDOUT_PER_CATEGORY]
        taken.update(r["metadata"]["id"] for r in chosen[category])
    return chosen


# --------------------------------------------------------------------------- build


def _write_atomic(path: Path, text: str) -> None:
    """Temp file + rename in the same directory: a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary data files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)


def _select_crates(source: Path, crates: list[str] | str | None) -> tuple[list[Crate], list[str]]:
    if not source.is_dir():
        raise TrainerError(f"corpus source directory not found: {source}")
    available = discover_crates(source)
    if crates == "all":
        return [available[k] for k in sorted(available)], []
    wanted = read_crate_list(DEFAULT_CRATE_LIST) if crates is None else list(crates)
    missing = sorted({w for w in wanted if _norm(w) not in available})
    chosen = sorted({_norm(w) for w in wanted} & set(available))
    if not chosen:
        raise TrainerError(f"no crates found under {source} (looked for <name>-<version>/ directories"
                           + (f" of: {', '.join(sorted(wanted)[:8])}{' ...' if len(wanted) > 8 else ''})" if wanted else ")"))
    return [available[k] for k in chosen], missing


def build_corpus(source: Path, out: Path, *, crates: list[str] | str | None = None, seed: int = 0) -> dict:
    """Build the corpus from `source` into `out`; returns the report (also corpus_report.json).

    `crates`: None for trainer/corpus/crates.txt, a list of names, or "all".
    """
    source, out = Path(source), Path(out)
    selected, missing = _select_crates(source, crates)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / ".write-check", "")
        (out / ".write-check").unlink()
    except OSError as exc:
        raise TrainerError(f"cannot write corpus output directory {out}: {exc.strerror}") from None

    report: dict = {
        "source": str(source), "seed": seed, "missing_crates": missing,
        "crates": {}, "skipped_files": [], "functions_scanned": 0,
        "skipped_functions": Counter({"tests_too_large": 0, "function_too_large": 0, "duplicate_input": 0}),
        "bounds": {"max_function_chars": MAX_FUNCTION_CHARS, "max_tests_chars": MAX_TESTS_CHARS,
                   "holdout_per_category": HOLDOUT_PER_CATEGORY, "split_percent": dict(SPLITS)},
    }
    records, seen_inputs = [], set()
    for crate in selected:
        kept = 0
        for rec in pair_crate(crate, report):
            if rec["input"] in seen_inputs:  # vendored copies: one example, one split
                report["skipped_functions"]["duplicate_input"] += 1
                continue
            seen_inputs.add(rec["input"])
            records.append(rec)
            kept += 1
        report["crates"][crate.name] = {"version": crate.version, "pairs": kept}

    holdout = select_holdout(records, seed)
    held = {r["metadata"]["id"] for rs in holdout.values() for r in rs}
    held_tests = {k for rs in holdout.values() for r in rs for k in r["_tests"]}
    splits: dict[str, list[dict]] = {name: [] for name, _ in SPLITS}
    leaked = 0
    for rec in records:
        if rec["metadata"]["id"] in held:
            continue
        if held_tests.intersection(rec["_tests"]):  # its tests are a holdout answer
            leaked += 1
            continue
        splits[split_of(rec["metadata"]["id"], seed)].append(rec)
    holdout_records = []
    for category, recs in holdout.items():
        for rec in recs:
            holdout_records.append({**rec, "metadata": {**rec["metadata"], "holdout_category": category}})
    holdout_records.sort(key=lambda r: r["metadata"]["id"])

    for rec in records + holdout_records:
        rec.pop("_tests", None)
    for name, recs in [*splits.items(), ("holdout", holdout_records)]:
        _write_atomic(out / f"{name}.jsonl", _jsonl(recs))

    report["skipped_functions"]["shares_tests_with_holdout"] = leaked
    report["skipped_functions"] = dict(sorted(report["skipped_functions"].items()))
    report["skipped_file_reasons"] = dict(sorted(Counter(s["reason"] for s in report["skipped_files"]).items()))
    report["pairs"] = len(records)
    report["splits"] = {name: len(recs) for name, recs in splits.items()}
    report["holdout"] = {c: len(holdout[c]) for c in HOLDOUT_CATEGORIES}
    report["holdout_total"] = len(holdout_records)
    report["category_pairs"] = {c: sum(c in r["metadata"]["categories"] for r in records) for c in HOLDOUT_CATEGORIES}
    report["self_contained"] = sum(r["metadata"]["self_contained"] for r in records)
    report["self_contained_by_split"] = {name: sum(r["metadata"]["self_contained"] for r in recs)
                                         for name, recs in [*splits.items(), ("holdout", holdout_records)]}
    report["with_proptest"] = sum(r["metadata"]["has_proptest"] for r in records)
    _write_atomic(out / "corpus_report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _summary(report: dict, out: Path, seconds: float) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    holdout = ", ".join(f"{k} {v}" for k, v in report["holdout"].items())
    skipped = sum(report["skipped_file_reasons"].values())
    lines = [
        f"corpus: {report['pairs']} pairs from {len(report['crates'])} crates in {seconds:.1f}s -> {out}",
        f"  splits: {splits}",
        f"  holdout: {holdout}",
        f"  self-contained: {report['self_contained']}; with proptest: {report['with_proptest']}",
        f"  skipped files: {skipped} {report['skipped_file_reasons'] or ''}".rstrip(),
        f"  skipped functions: {report['skipped_functions']}",
    ]
    if report["missing_crates"]:
        lines.append(f"  warning: crates not found under the source: {', '.join(report['missing_crates'])}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`corpus build ...` (argv after `corpus`)."""
    parser = argparse.ArgumentParser(prog="python -m trainer corpus")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("build", help="build train/validation/test/holdout JSONL from crate sources")
    p.add_argument("--source", required=True, type=Path, help="directory of <crate>-<version>/ dirs")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--crates", default=None, help="crate list file (one name a line) or 'all' "
                                                  f"(default {DEFAULT_CRATE_LIST.name})")
    p.add_argument("--seed", type=int, default=0, help="split and holdout seed")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        crates = args.crates if args.crates in (None, "all") else read_crate_list(Path(args.crates))
        start = time.perf_counter()
        report = build_corpus(args.source, args.out, crates=crates, seed=args.seed)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(_summary(report, args.out, time.perf_counter() - start))
    return 0
