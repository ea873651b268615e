"""Typical values of a Rust return type: what a function body is replaced by (cargo-mutants' genre).

`values(type_node)` reads the return type's syntax (tree-sitter-rust) and gives Rust expressions
of that type: 0, 1, -1 for signed integers; 0, 1 for unsigned; 0.0, 1.0, -1.0 for floats; true and
false; an empty string and "xyzzy"; empty and one-element collections; None and Some(v), Ok(v), and
Box/Rc/Arc::new(v) of the inner type's values; tuples and arrays built from their elements' values;
`Default::default()` for anything else. A value that does not type-check (a type without
`Default`, a generic parameter) is left to rustc: the schema runner finds it through the error
spans and drops it as unviable. `None` means "no value can be written" (`impl Trait`, `!`,
`dyn Trait`): such a function gets no body mutant.
"""

from __future__ import annotations

import re
from itertools import product

from tree_sitter import Node

from trainer.corpus import rust_ast

MAX_VALUES = 8  # body mutants per function: enough for each genre, few enough that schemata stay small

SIGNED = frozenset({"i8", "i16", "i32", "i64", "i128", "isize"})
UNSIGNED = frozenset({"u8", "u16", "u32", "u64", "u128", "usize"})
FLOATS = frozenset({"f32", "f64"})
SEQUENCES = frozenset({"Vec", "VecDeque", "LinkedList", "BinaryHeap", "HashSet", "BTreeSet"})
MAPS = frozenset({"HashMap", "BTreeMap"})
POINTERS = frozenset({"Box", "Rc", "Arc"})
_LITERAL = re.compile(r"""-?[0-9][0-9._a-z]*|'[^']*'|"[^"]*"|true|false""")


def _type_arguments(node: Node) -> list[Node]:
    args = node.child_by_field_name("type_arguments")
    if args is None:
        return []
    return [c for c in args.named_children if c.type not in ("lifetime", "type_binding", "line_comment", "block_comment")]


def _base_name(node: Node) -> str:
    base = node.child_by_field_name("type") if node.type == "generic_type" else node
    if base is not None and base.type == "scoped_type_identifier":
        base = base.child_by_field_name("name")
    return rust_ast.text(base).strip() if base is not None else ""


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def values(node: Node | None) -> list[str] | None:
    """Rust expressions of the type written at `node` (None: no value can be written)."""
    if node is None:
        return None
    kind = node.type
    if kind in ("abstract_type", "never_type", "dynamic_type"):
        return None
    if kind == "unit_type":
        return ["()"]
    if kind == "primitive_type":
        name = rust_ast.text(node).strip()
        if name in SIGNED:
            return ["0", "1", "-1"]
        if name in UNSIGNED:
            return ["0", "1"]
        if name in FLOATS:
            return ["0.0", "1.0", "-1.0"]
        if name == "bool":
            return ["true", "false"]
        if name == "char":
            return ["'\\0'", "'A'"]
        return None  # a bare `str` has no value
    if kind == "tuple_type":
        parts = [values(c) for c in node.named_children]
        if any(not p for p in parts):
            return None
        return [f"({', '.join(combo)}{',' if len(combo) == 1 else ''})"
                for combo in _capped_product(parts)]
    if kind == "array_type":
        element, length = node.child_by_field_name("element"), node.child_by_field_name("length")
        inner = values(element)
        if length is None or not inner:  # `[T]` is unsized: only behind a reference
            return None
        return [f"[{v}; {rust_ast.text(length)}]" for v in inner]
    if kind == "reference_type":
        return _reference(node)
    if kind in ("generic_type", "type_identifier", "scoped_type_identifier"):
        return _named(node)
    return ["Default::default()"]


def _capped_product(parts: list[list[str]]) -> list[tuple[str, ...]]:
    out = []
    for combo in product(*parts):
        out.append(combo)
        if len(out) >= MAX_VALUES:
            break
    return out


def _reference(node: Node) -> list[str] | None:
    inner = node.child_by_field_name("type")
    mutable = any(c.type == "mutable_specifier" for c in node.children)
    if inner is None:
        return None
    if inner.type == "primitive_type" and rust_ast.text(inner).strip() == "str":
        return None if mutable else ['""', '"xyzzy"']
    if inner.type == "array_type" and inner.child_by_field_name("length") is None:
        element = values(inner.child_by_field_name("element")) or []
        empty = "Vec::leak(Vec::new())" if mutable else "&[]"
        return _dedup([empty] + [f"Vec::leak(vec![{v}])" for v in element])
    inner_values = values(inner)
    if not inner_values:
        return None
    if mutable:
        return [f"Box::leak(Box::new({v}))" for v in inner_values]
    # a literal behind `&` is promoted to a `'static` constant; anything else is leaked so it outlives the call
    return [f"&{v}" if _LITERAL.fullmatch(v) else f"Box::leak(Box::new({v}))" for v in inner_values]


def _named(node: Node) -> list[str] | None:
    name = _base_name(node)
    args = _type_arguments(node)
    if name == "String" and not args:
        return ["String::new()", '"xyzzy".into()']
    if name == "Option" and len(args) == 1:
        return ["None"] + [f"Some({v})" for v in values(args[0]) or []]
    if name == "Result" and args:
        inner = values(args[0])
        return [f"Ok({v})" for v in inner] if inner else None
    if name in POINTERS and len(args) == 1:
        inner = values(args[0])
        return [f"{name}::new({v})" for v in inner] if inner else None
    if name in SEQUENCES and len(args) == 1:
        inner = values(args[0]) or []
        if name == "Vec":
            return ["vec![]"] + [f"vec![{v}]" for v in inner]
        return [f"{name}::new()"] + [f"{name}::from_iter([{v}])" for v in inner]
    if name in MAPS and len(args) == 2:
        keys, vals = values(args[0]) or [], values(args[1]) or []
        pairs = [f"({k}, {v})" for k, v in _capped_product([keys, vals])] if keys and vals else []
        return [f"{name}::new()"] + [f"{name}::from_iter([{p}])" for p in pairs]
    return ["Default::default()"]


def body_values(return_type: Node | None) -> list[str] | None:
    """The distinct values a body is replaced by, at most MAX_VALUES (None: no body mutant)."""
    found = values(return_type) if return_type is not None else ["()"]
    return _dedup(found)[:MAX_VALUES] if found else None
