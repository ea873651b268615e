"""In-crate evaluation: where a function sits in its crate, and its tests as an appended module.

The evaluator judges a sample inside its real crate: it checks that `function_code` appears
verbatim in `crate.file` and appends `generated_tests` to that file as the body of
`#[cfg(test)] mod rtf_generated_<hash> { ... }`. So a record carries the function's span
(the verbatim text is read back from the file), and `in_crate_tests`: its tests rewritten
for that module. The tests' `use` lines (those of the module they sat in) are kept, with
`super::`/`self::` paths made to reach the same modules from the new module, and the
crate's own name (integration tests in `tests/` say `mycrate::x`) becomes `crate::`.
Non-test items of the tests' module that they name (helpers) travel with them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tree_sitter import Node

from trainer.corpus import rust_ast
from trainer.corpus.scan import Candidate, TestUnit, mentions
from trainer.errors import TrainerError

# Items of a test module that tests may lean on (helpers); copied when a test names them.
_SUPPORT_KINDS = {"function_item", "struct_item", "enum_item", "const_item", "static_item", "type_item",
                  "macro_definition", "union_item", "trait_item"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHAIN_WORD = re.compile(r"(self|super|crate)(?:::|$)")


def function_span(candidate: Candidate) -> dict[str, int]:
    """Byte range (end exclusive) and 1-based lines (end inclusive) of the function in its file."""
    node = candidate.node
    return {"start_byte": node.start_byte, "end_byte": node.end_byte,
            "start_line": node.start_point[0] + 1, "end_line": node.end_point[0] + 1}


def module_path(rel: str) -> list[str] | None:
    """The module a crate file is (`src/a/b.rs` -> ["a", "b"], `src/lib.rs` -> []); None
    for files outside `src/` or under `src/bin/`: integration tests, separate crates."""
    parts = rel.split("/")
    if parts[0] != "src" or len(parts) < 2 or parts[1] == "bin":
        return None
    parts = parts[1:]
    parts[-1] = parts[-1].removesuffix(".rs")
    if parts[-1] in ("mod", "lib", "main") and (parts[-1] == "mod" or len(parts) == 1):
        parts = parts[:-1]
    return parts


def _inline_modules(node: Node) -> list[str]:
    """Names of the `mod name { ... }` blocks around `node` in its file, outermost first."""
    names = []
    parent = node.parent
    while parent is not None:
        if parent.type == "mod_item":
            names.append(rust_ast.function_name(parent))
        parent = parent.parent
    return names[::-1]


def _scope(node: Node) -> Node:
    """The body of the module `node` sits in: the innermost `mod { ... }`, or the file."""
    parent = node.parent
    while parent.type != "source_file" and not (parent.type == "declaration_list" and parent.parent.type == "mod_item"):
        parent = parent.parent
    return parent


class _Paths:
    """Rewrites the paths of one test unit so they mean the same from the appended module."""

    def __init__(self, unit: TestUnit, target: list[str] | None, lib_names: set[str]):
        base = module_path(unit.file)
        self.scope = None if base is None else base + _inline_modules(unit.nodes[0])
        self.target = target  # the function's module: the appended module's parent
        self.lib_names = lib_names

    def render(self, path: list[str]) -> str:
        if path == self.target:
            return "super"
        return "crate" + "".join(f"::{p}" for p in path)

    def use_line(self, argument: str, local_modules: set[str]) -> str | None:
        """The `use` line for `argument` (`super::*`) in the appended module, None to drop it."""
        head = _WORD.match(argument)
        word = head[0] if head else ""
        if word in self.lib_names and argument[len(word):].startswith("::"):
            return f"use {self.render([])}::{argument[len(word) + 2:]};"
        if word in local_modules:
            return None  # a module of the tests' own (`mod common;`): not there
        if word not in ("self", "super", "crate"):
            return f"use {argument};"  # an extern crate or std: the same path from anywhere
        if self.scope is None:
            return None  # `crate::`/`super::` of an integration test: its own helpers
        path, rest = list(self.scope), argument
        while (m := _CHAIN_WORD.match(rest)) is not None:
            path = [] if m[1] == "crate" else path[:-1] if m[1] == "super" else path
            rest = rest[m.end():]
        if not rest or path[:len(self.scope)] == self.scope:
            return None  # the test module's own items: copied as helpers when used
        return f"use {self.render(path)}::{rest};"

    def body(self, text: str) -> str:
        if self.scope is None:
            for lib in sorted(self.lib_names):
                text = re.sub(rf"(?<![\w:])(?:::)?{lib}::", "crate::", text)
                text = re.sub(rf"^\s*extern crate {lib};\s*$\n?", "", text, flags=re.M)
            return text
        scope = self.scope

        def up(match: re.Match) -> str:
            levels = match[1].count("super")
            return self.render(scope[:len(scope) - levels] if levels <= len(scope) else []) + "::"
        return re.sub(r"(?<![\w:])((?:super::)+)", up, text)


def _scope_uses(scope: Node) -> tuple[list[tuple[str, str]], set[str]]:
    """(each `use` path of the scope, one name a path, with the `#[...]` lines above its
    declaration; the names of the modules the scope declares)."""
    uses = []
    for child in scope.named_children:
        if child.type == "use_declaration":
            attrs = item_text(child)[:-len(rust_ast.text(child))]
            argument = child.child_by_field_name("argument")
            uses += [(attrs, path) for path in _expand(rust_ast.text(argument) if argument is not None else "")]
    return uses, {rust_ast.function_name(c) for c in scope.named_children if c.type == "mod_item"}


def _top_level_split(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _expand(tree: str) -> list[str]:
    """A use tree as one path per name: `a::{self, b::{c, d as e}}` -> a, a::b::c, a::b::d as e.
    One path a line lets two tests' imports be merged without importing a name twice."""
    tree = " ".join(tree.split())
    if not tree.endswith("}"):
        return [tree] if tree else []
    brace = tree.index("{")
    prefix = tree[:brace].strip().removesuffix("::")
    paths = []
    for part in _top_level_split(tree[brace + 1:-1]):
        for sub in _expand(part):
            if sub == "self" or sub.startswith("self as "):
                paths.append(prefix + sub[4:])
            else:
                paths.append(f"{prefix}::{sub}" if prefix else sub)
    return paths


def _bound_name(path: str) -> str | None:
    """The name `use path;` binds (None for globs and `as _`)."""
    name = path.split(" as ")[-1] if " as " in path else path.split("::")[-1]
    return None if name in ("*", "_") else name


def item_text(node: Node) -> str:
    """The item with the `#[...]` lines written directly above it."""
    attrs = []
    sibling = node.prev_named_sibling
    while sibling is not None and sibling.type == "attribute_item":
        attrs.append(rust_ast.text(sibling))
        sibling = sibling.prev_named_sibling
    return "\n".join([*reversed(attrs), rust_ast.text(node)])


def _impl_type(impl: Node) -> str:
    """The type an impl block is for, as a bare name: `impl<'a> Link for &'a Entry` -> `Entry`."""
    text = re.sub(r"&|'\w+|\b(?:mut|dyn)\b", " ", rust_ast.text(impl.child_by_field_name("type")))
    return text.split("<")[0].strip().split("::")[-1]


def _support(scope: Node, wanted: set[str], unit_nodes: set[int]) -> list[tuple[str, Node]]:
    """(name, node) of the non-test items in `scope` that `wanted` names, and what they name;
    a type brings every impl block of it (keyed `impl Type#n`)."""
    items, impls = {}, []
    for child in scope.named_children:
        if child.id in unit_nodes or (child.type == "function_item" and rust_ast.is_test_function(child)):
            continue
        if child.type in _SUPPORT_KINDS and rust_ast.function_name(child):
            items.setdefault(rust_ast.function_name(child), child)
        elif child.type == "impl_item":
            impls.append((_impl_type(child), child))
    chosen: dict[str, Node] = {}
    frontier = set(wanted)
    while frontier:
        found = {n: items[n] for n in frontier if n in items and n not in chosen}
        found.update({f"impl {t}#{node.id}": node for t, node in impls if t in found and f"impl {t}#{node.id}" not in chosen})
        chosen.update(found)
        frontier = set().union(*(mentions(n) for n in found.values())) if found else set()
    order = {node.id: i for i, node in enumerate(scope.named_children)}
    return sorted(chosen.items(), key=lambda kv: order[kv[1].id])


def _rooted_at(text: str, names: set[str]) -> bool:
    """Whether `text` has a path that starts at one of `names` (`loom::model`, not `crate::loom::x`)."""
    return bool(names) and re.search(r"(?<![\w:])(?:" + "|".join(map(re.escape, sorted(names))) + r")::", text) is not None


def why_not_buildable(unit: TestUnit, unlinkable: set[str]) -> str | None:
    """Why this test cannot compile as part of an appended module here, or None.

    `needs_unpackaged_crate`: the test, or a `use` line of its module (they all travel with it),
    names a dev-dependency this machine cannot supply (`unlinkable`: tokio's loom, mockall).
    `needs_local_module`: it reaches a module its own test file declares (`mod support;`), which
    the appended module cannot bring along (only items are copied as helpers).
    """
    scope = _scope(unit.nodes[0])
    uses, local_modules = [], set()
    for level in _glob_scopes(scope, integration=module_path(unit.file) is None):  # what travels with the test
        level_uses, level_modules = _scope_uses(level)
        uses += level_uses
        local_modules |= level_modules
    if _rooted_at(unit.source, unlinkable) or any(_rooted_at(path + "::", unlinkable) for _, path in uses):
        return "needs_unpackaged_crate"
    in_module = scope.type != "source_file" or module_path(unit.file) is None  # a `mod` block, or a tests/ file
    if in_module and local_modules:
        bound = {name for _, path in uses if _WORD.match(path) and _WORD.match(path)[0] in local_modules
                 and (name := _bound_name(path))}
        if _rooted_at(unit.source, local_modules) or (bound & unit.names) or (bound & unit.calls):
            return "needs_local_module"
    return None


def _glob_scopes(scope: Node, *, integration: bool) -> list[Node]:
    """The scopes whose imports and helpers a test sees: its own, and, in an integration test (whose
    `super::` paths mean nothing in the crate), each enclosing one its module reaches by `use super::*;`
    (tokio's tests/sync_once_cell.rs: `mod parking_lot { use super::*; ... }`)."""
    levels = [scope]
    while integration and scope.type != "source_file" and ("", "super::*") in _scope_uses(scope)[0]:
        scope = _scope(scope.parent)
        levels.append(scope)
    return levels


@dataclass
class _FilePart:
    """What one test file brings to the appended module: its use lines, helpers and tests."""
    file: str
    cfg: str = ""  # the file's own `#![cfg(...)]`, as an outer attribute: its tests exist only where it holds
    # Each entry carries its place in the order the tests came in, so that merging parts back
    # gives exactly the flat module of the tests in their order.
    uses: list[tuple[int, str, str]] = field(default_factory=list)  # (order, attributes, use line)
    support: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (order, item)
    macros: set[str] = field(default_factory=set)
    bodies: list[tuple[int, str]] = field(default_factory=list)

    @property
    def at_own_items(self) -> bool:
        """Its tests sat among the function's own items (`use super::*;` there): it must stay at the top."""
        return any(line == "use super::*;" for _, _, line in self.uses)

    def bindings(self) -> dict[str, str]:
        """Each name it binds (helpers, then use lines; the first binding of a name wins) and to what."""
        bound = {name: text for name, (_, text) in self.support.items() if name not in self.macros}
        for _, _, line in self.uses:
            name = _bound_name(line.removeprefix("use ").removesuffix(";"))
            if name is not None:
                bound.setdefault(name, line)
        return bound


def _file_cfg(node: Node) -> str:
    """The `#![cfg(...)]` attributes of the file `node` is in, as outer attributes (tokio's
    tests/named_pipe.rs: `#![cfg(all(feature = "full", windows))]`), or ""."""
    while node.parent is not None:
        node = node.parent
    return "".join(rust_ast.text(c).replace("#![", "#[", 1) + "\n" for c in node.named_children
                   if c.type == "inner_attribute_item" and rust_ast.text(c).replace(" ", "").startswith("#![cfg("))


def _merged(parts: list[_FilePart]) -> str:
    """The parts as one flat module body: use lines (a name bound once), helpers, tests."""
    uses = [(attrs, line) for _, attrs, line in sorted(u for part in parts for u in part.uses)]
    support: dict[str, str] = {}
    for _, name, text in sorted((order, name, text) for part in parts for name, (order, text) in part.support.items()):
        support.setdefault(name, text)
    macros = set().union(*(part.macros for part in parts))
    kept, seen = [], set(support) - macros
    for attrs, line in dict.fromkeys(uses):
        name = _bound_name(line.removeprefix("use ").removesuffix(";"))
        if name is None or name not in seen:
            kept.append(attrs + line)
            seen.add(name)
    text = ["\n".join(kept), *support.values(), *(b for _, b in sorted(b for part in parts for b in part.bodies))]
    return "\n\n".join(p for p in text if p)


def _conflicts(bound: dict[str, str], more: dict[str, str]) -> bool:
    return any(name in bound and bound[name] != what for name, what in more.items())


def _assembled(parts: list[_FilePart]) -> str:
    """One flat module when the files' imports and helpers agree. When two files bind a name to
    different things (tokio: `use std::sync::mpsc;` in one test file, `use tokio::sync::mpsc;`
    in another), a flat module would keep only one, and the other file's tests would not
    compile; so each file that disagrees with those before it gets a module of its own
    (`mod from_<file> { use super::*; ... }`), where its own bindings shadow the glob. A file
    that is itself under a `#![cfg(...)]` always gets its own module, under that cfg. (`_merged`
    orders by where each piece came in, so the flat case is the tests in their order.)"""
    top: list[_FilePart] = []
    nested: list[_FilePart] = []
    bound: dict[str, str] = {}
    for part in sorted(parts, key=lambda p: not p.at_own_items):  # stable: the function's own tests first
        if part.at_own_items or not (part.cfg or _conflicts(bound, part.bindings())):
            top.append(part)
            bound |= {k: v for k, v in part.bindings().items() if k not in bound}
        else:
            nested.append(part)
    text, names = [_merged(top)], set(bound)
    for part in nested:
        stem = re.sub(r"\W", "_", Path(part.file).stem)
        name = next(n for n in (f"from_{stem}", *(f"from_{stem}_{k}" for k in range(2, 1000))) if n not in names)
        names.add(name)
        text.append(f"{part.cfg}mod {name} {{\nuse super::*;\n\n{_merged([part])}\n}}")
    return "\n\n".join(t for t in text if t)


def in_crate_tests(candidate: Candidate, tests: list[TestUnit], lib_names: set[str], crate_macros: set[str] = frozenset()) -> str:
    """The body of the module the evaluator appends to the function's file: use lines,
    helpers, then the tests (as in `output`; a test named like an earlier one gets `_2`),
    each rewritten to mean the same there. `crate_macros`: the `macro_rules!` names of the
    crate's library code (`_qualify_macros`)."""
    target = module_path(candidate.file)
    parts: dict[str, _FilePart] = {}
    test_names: set[str] = set()
    order = iter(range(1 << 30))
    for unit in tests:
        source, names = unit.source, set(unit.name.split(","))
        if names & test_names and unit.nodes[0].type == "function_item":  # same-named tests of two files
            renamed = next(f"{unit.name}_{n}" for n in range(2, 1000) if f"{unit.name}_{n}" not in test_names)
            source, names = re.sub(rf"\bfn {unit.name}\b", f"fn {renamed}", source, count=1), {renamed}
        elif names & test_names:
            continue  # a proptest block or test macro whose names are taken: left out
        test_names |= names
        part = parts.setdefault(unit.file, _FilePart(unit.file, _file_cfg(unit.nodes[0])))
        paths = _Paths(unit, target, lib_names)
        scope = _scope(unit.nodes[0])
        if paths.scope is not None and paths.scope == target:  # tests written among the function's own items
            part.uses.append((next(order), "", "use super::*;"))
        else:
            for level in _glob_scopes(scope, integration=paths.scope is None):
                arguments, local_modules = _scope_uses(level)
                part.uses += [(next(order), attrs, line) for attrs, a in arguments if (line := paths.use_line(a, local_modules))]
                for name, node in _support(level, unit.names | unit.calls, {n.id for n in unit.nodes}):
                    part.support.setdefault(name, (next(order), paths.body(item_text(node))))
                    if node.type == "macro_definition":
                        part.macros.add(name)  # macros have their own namespace: `use smol::future;` still binds `future`
        part.bodies.append((next(order), paths.body(source)))
    for part in parts.values():
        _qualify_macros(part, crate_macros)
    return _assembled(list(parts.values()))


def _qualify_macros(part: _FilePart, crate_macros: set[str]) -> None:
    """An integration test's `use futures::ready;` next to the crate's own `macro_rules! ready`
    (tokio) makes `ready!` ambiguous in the crate (E0659): outside it there was no such macro.
    Such an import is dropped and its macro called by path (`futures::ready!`), which is what
    the test meant. Only where the name is used as a macro alone in the part."""
    text = "\n".join([*(t for _, t in part.support.values()), *(b for _, b in part.bodies)])
    for entry in list(part.uses):
        _, _, line = entry
        path = line.removeprefix("use ").removesuffix(";")
        name = path.split("::")[-1]
        if (" as " in path or name not in crate_macros or path.startswith(("crate::", "self::", "super::"))
                or re.search(rf"(?<![\w:]){name}\b(?!\s*!)", text)):
            continue
        part.uses.remove(entry)
        qualify = partial(re.sub, rf"(?<![\w:]){name}(\s*!)", rf"{path}\1")
        part.bodies = [(n, qualify(b)) for n, b in part.bodies]
        part.support = {k: (n, qualify(t)) for k, (n, t) in part.support.items()}


# ---------------------------------------------------------------- samples, for the generators

class CrateSourceError(TrainerError):
    """A record's crate location does not lead back to its function."""


def has_location(meta: dict) -> bool:
    """Whether a record says where its function is (corpus records do; hand-made ones may not)."""
    return isinstance(meta.get("crate_dir"), str) and isinstance(meta.get("file"), str) and isinstance(meta.get("function_span"), dict)


def verbatim_function(meta: dict, prompt_code: str) -> str:
    """The function's text read from its crate file at `function_span`, checked against the
    record (same tokens as `prompt_code`, same first line); raises CrateSourceError."""
    ident, path = meta.get("id", "?"), Path(meta["crate_dir"]) / meta["file"]
    span = meta["function_span"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CrateSourceError(f"{ident}: cannot read crate file {path} (metadata.file): {exc.strerror}") from None
    start, end = span.get("start_byte"), span.get("end_byte")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(data)):
        raise CrateSourceError(f"{ident}: metadata.function_span {start}..{end} is outside {path} ({len(data)} bytes)")
    text = data[start:end].decode("utf-8", errors="replace")
    if "".join(text.split()) != "".join(prompt_code.split()) or data[:start].count(b"\n") + 1 != span.get("start_line"):
        raise CrateSourceError(f"{ident}: {path} at metadata.function_span does not hold the record's function")
    return text


def in_crate_sample(meta: dict, prompt_code: str) -> dict:
    """A sample's in-crate fields: `function_code` read verbatim from the crate file, and
    `crate` (where the evaluator finds the crate and the file). If the file no longer holds
    the function, the record's own text is sent: the evaluator then reports that sample's
    problem and the run goes on."""
    try:
        code = verbatim_function(meta, prompt_code)
    except CrateSourceError as exc:
        logging.getLogger("trainer").warning("%s", exc)
        code = prompt_code
    return {"function_code": code, "crate": {"dir": meta["crate_dir"], "file": meta["file"]}}


def without_location(record: dict) -> dict:
    """The record with its crate location removed: the generators then write standalone samples."""
    meta = {k: v for k, v in (record.get("metadata") or {}).items() if k not in ("crate_dir", "function_span")}
    return {**record, "metadata": meta}


def appended_tests(meta: dict, output: str) -> str:
    """A record's own tests as the evaluator appends them in-crate: its `in_crate_tests` (with the use lines
    and helpers they need), else its bare tests with the imports of a test module."""
    tests = meta.get("in_crate_tests")
    return tests if isinstance(tests, str) and tests.strip() else with_test_imports(output)


def with_test_imports(tests: str) -> str:
    """Generated tests for the appended module: the model learns bare tests (as in `output`),
    so the imports a `mod tests` would have are added unless the text already has them."""
    head = []
    if not tests.strip():
        return tests  # nothing generated: left for the evaluator to report
    if not re.search(r"^\s*use super::\*;", tests, re.M):
        head.append("use super::*;")
    if re.search(r"\bprop(test!|_assert)", tests) and "proptest::prelude" not in tests:
        head.append("use proptest::prelude::*;")
    return "\n".join(head) + "\n\n" + tests if head else tests
