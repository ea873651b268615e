"""Which cargo features a function in a crate needs to be compiled at all.

A function under `#[cfg(feature = "x")]` (on itself, on an enclosing impl or module, as an
inner `#![cfg(...)]` of its file, or on the `mod` declaration that brings its file in) is
not in the default build, so its tests would silently not exist. We read those `cfg`
predicates with tree-sitter and collect the features that make them true: `feature = "x"`,
every branch of `all(...)`, the first feature branch of `any(...)`; nothing under `not(...)`.

Crates like tokio gate whole modules with their own cfg macros (`cfg_fs! { pub mod fs; }`,
where `macro_rules! cfg_fs` puts `#[cfg(feature = "fs")]` on each item): a `macro_rules!`
of the crate whose body holds cfg attributes counts as those attributes wherever it is
invoked around the function or around its file's `mod` declaration.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tree_sitter import Node

from trainer.corpus import rust_ast

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|[(),=]')


def predicate_features(predicate: str) -> list[str]:
    """Features that make a cfg predicate (the text inside `cfg(...)`) true, in order of appearance."""
    tokens = _TOKEN.findall(predicate)
    features, _ = _parse(tokens, 0)
    return list(dict.fromkeys(features))


def _parse(tokens: list[str], i: int) -> tuple[list[str], int]:
    """One predicate from tokens[i]: (features it needs, index after it)."""
    if i >= len(tokens):
        return [], i
    head = tokens[i]
    if head in ("all", "any", "not") and i + 1 < len(tokens) and tokens[i + 1] == "(":
        branches, i = [], i + 2
        while i < len(tokens) and tokens[i] != ")":
            found, i = _parse(tokens, i)
            branches.append(found)
            if i < len(tokens) and tokens[i] == ",":
                i += 1
        i += 1  # the closing parenthesis
        if head == "all":
            return [f for b in branches for f in b], i
        if head == "any":
            return next((b for b in branches if b), []), i
        return [], i  # not(...): enabling a feature can only make it false
    if i + 2 < len(tokens) and tokens[i + 1] == "=" and tokens[i + 2].startswith('"'):
        return ([tokens[i + 2][1:-1]] if head == "feature" else []), i + 3
    return [], i + 1


_CFG_IN_MACRO = re.compile(r"#\s*\[\s*cfg\s*\(")


def _balanced(text: str, open_at: int) -> str:
    """The text inside the parentheses that open at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1:i]
    return text[open_at + 1:]


@lru_cache(maxsize=64)
def cfg_macros(crate_dir: Path) -> dict[str, tuple[str, ...]]:
    """The crate's `macro_rules!` that put cfg attributes on what they wrap: name -> the features those need."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted((crate_dir / "src").rglob("*.rs")):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        if b"macro_rules!" not in source:
            continue
        for node in rust_ast.walk(rust_ast.parse(source).root_node):
            if node.type != "macro_definition" or node.child_by_field_name("name") is None:
                continue
            body = rust_ast.text(node)
            preds = [_balanced(body, m.end() - 1) for m in _CFG_IN_MACRO.finditer(body)]
            features = tuple(dict.fromkeys(f for pred in preds for f in predicate_features(pred)))
            if features:
                found[rust_ast.text(node.child_by_field_name("name"))] = features
    return found


def _invoked_macro(node: Node) -> str | None:
    if node.type != "macro_invocation":
        return None
    name = node.child_by_field_name("macro")
    return rust_ast.text(name).split("::")[-1] if name is not None else None


def excluded_features(predicate: str) -> list[str]:
    """Features under a `not(...)` of a cfg predicate: enabling one of them could switch the code off."""
    found = []
    for m in re.finditer(r"\bnot\s*\(", predicate):
        found += re.findall(r'\bfeature\s*=\s*"([^"]+)"', _balanced(predicate, m.end() - 1))
    return list(dict.fromkeys(found))


def _cfg_predicates(attributes: list[str]) -> list[str]:
    """The predicate text of each `#[cfg(...)]` / `#![cfg(...)]` attribute."""
    found = []
    for attr in attributes:
        compact = attr.replace(" ", "")
        if compact.startswith(("#[cfg(", "#![cfg(")):
            found.append(attr[attr.index("(") + 1:attr.rindex(")")])
    return found


def _enclosing_attributes(root: Node, start: int, end: int) -> list[str]:
    """Attributes on every item that contains bytes start..end, on the code's own leading items, and the file's inner ones."""
    attrs = [rust_ast.text(c) for c in root.named_children if c.type == "inner_attribute_item"]
    node = root.descendant_for_byte_range(start, max(start, end - 1))
    if node is None:
        return attrs
    attrs += [rust_ast.text(c) for c in node.named_children
              if c.type == "attribute_item" and start <= c.start_byte and c.end_byte <= end]
    while node is not None and node != root:
        attrs += rust_ast.attributes_of(node)
        node = node.parent
    return attrs


def features_at(source: bytes, start: int, end: int, macros: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Features the cfg attributes (and the crate's cfg `macros`) around bytes start..end of one file need."""
    root = rust_ast.parse(source).root_node
    found = [f for pred in _cfg_predicates(_enclosing_attributes(root, start, end)) for f in predicate_features(pred)]
    node = root.descendant_for_byte_range(start, max(start, end - 1))
    while macros and node is not None:
        found += macros.get(_invoked_macro(node) or "", ())
        node = node.parent
    return found


def _declaring_file(crate_dir: Path, lib_file: str, file: str) -> tuple[str, str] | None:
    """(the file that declares `file`'s module, the module's name), or None for the crate root."""
    if file == lib_file:
        return None
    root_dir = Path(lib_file).parent
    path = Path(file)
    name = path.parent.name if path.name == "mod.rs" else path.stem
    module_dir = path.parent.parent if path.name == "mod.rs" else path.parent
    if module_dir == root_dir:
        return lib_file, name
    for parent in (module_dir.with_suffix(".rs"), module_dir / "mod.rs"):
        if (crate_dir / parent).is_file():
            return parent.as_posix(), name
    return None


def _mod_declaration(source: bytes, name: str) -> Node | None:
    """`mod name;` in `source`: the item, or the `mod` token inside a macro's token tree (`cfg_fs! { pub mod fs; }`)."""
    for node in rust_ast.walk(rust_ast.parse(source).root_node):
        if node.type == "mod_item" and node.child_by_field_name("body") is None:
            ident = node.child_by_field_name("name")
            if ident is not None and rust_ast.text(ident) == name:
                return node
        if node.type == "token_tree":
            kids = node.children
            for a, b, c in zip(kids, kids[1:], kids[2:], strict=False):
                if rust_ast.text(a) == "mod" and rust_ast.text(b) == name and rust_ast.text(c) == ";":
                    return a
    return None


def features_excluded(crate_dir: Path, file: str, start: int, end: int) -> list[str]:
    """Features whose `not(...)` guards bytes start..end of `file` (`#[cfg(not(feature = "std"))]` on the function):
    an all-features build must leave them off, or the function is not compiled."""
    root = rust_ast.parse((crate_dir / file).read_bytes()).root_node
    return list(dict.fromkeys(f for pred in _cfg_predicates(_enclosing_attributes(root, start, end))
                              for f in excluded_features(pred)))


def features_needed(crate_dir: Path, lib_file: str, file: str, start: int, end: int) -> list[str]:
    """Features for bytes start..end of `file`, then for each `mod` declaration up the chain to the crate root."""
    macros = cfg_macros(crate_dir)
    needed = features_at((crate_dir / file).read_bytes(), start, end, macros)
    current, seen = file, {file}
    while (parent := _declaring_file(crate_dir, lib_file, current)) is not None and parent[0] not in seen:
        parent_file, module = parent
        seen.add(parent_file)
        source = (crate_dir / parent_file).read_bytes()
        declaration = _mod_declaration(source, module)
        if declaration is None:
            break
        needed += features_at(source, declaration.start_byte, declaration.end_byte, macros)
        current = parent_file
    return list(dict.fromkeys(needed))
