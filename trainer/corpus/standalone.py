"""Could a function and its tests compile in a fresh crate on their own? (`self_contained`)

A syntax-only heuristic: every name the code uses must be a primitive, a prelude item, a
std/core path or macro, proptest, a std import of the enclosing modules, or something the
function and tests define themselves. `std_uses` finds those std imports.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from trainer.corpus import rust_ast
from trainer.corpus.scan import Candidate, TestUnit, UseLine, leaf_nodes, mentions, use_root

# Where `self_contained` looks: prelude names are usable in a fresh crate without `use`.
PRELUDE = {
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
_STD_ROOTS = {"std", "core", "proptest", "prop"} | _PRIMITIVES | PRELUDE
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
            elif n.type == "use_declaration" and use_root(n) in ("std", "core", "proptest"):
                names.update(mentions(n) - {"std", "core", "proptest"})
        leaves = leaf_nodes(root)
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
    ok = local | PRELUDE | _PRIMITIVES
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
            foreign |= _foreign_in_tokens(leaf_nodes(n), ok)
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
        else:
            calls_a_function = after == "(" and name[:1].islower() and name not in _STD_FUNCTIONS and before not in ("in", "|")
            if calls_a_function or _CAMEL.match(name) or _CONST.match(name):
                foreign.add(name)
    return foreign


def std_uses(candidate: Candidate, tests: list[TestUnit]) -> list[UseLine]:
    """The `use std::...`/`core`/`alloc` lines in scope that import a name the code uses.

    Recorded in metadata (`std_uses`) so a standalone crate can be given the imports the
    function and tests rely on from their modules (`use std::sync::Arc;`).
    """
    used = mentions(candidate.node).union(*(t.names for t in tests))
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
