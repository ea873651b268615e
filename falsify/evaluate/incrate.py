"""Prepare the copy of a real crate in which one in-crate sample's tests are judged.

A sample with `"crate": {"dir", "file"}` is judged where its function lives: the crate is
copied into the sample's directory, stripped of what cannot build offline (recorded),
given the features the function needs, and the generated tests are appended to the
function's own file as `#[cfg(test)] mod rtf_generated_<hash> { ... }`, so `use super::*;`
reaches the crate's private items. `CrateCopy` is everything later stages need to know
about that copy: the module's name, the file, the function's lines and the tests' bytes.

The copy gets fresh mtimes (shutil.copy, not copy2): a copy that kept the source's old
timestamps would look older than a cached build of another copy, and cargo would reuse
that build instead of compiling these tests.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tomlkit
from tree_sitter import Node

from trainer.corpus import rust_ast
from trainer.corpus.crates import crate_versions, missing_dev_dependency

from .crate import CargoTarget, config_stamp
from .crate_features import features_excluded, features_needed
from .samples import Sample
from .toolchain import REGISTRY

MODULE_PREFIX = "rtf_generated_"
SKIPPED_DIRS = ("target", ".git")              # never copied
STRIPPED_DIRS = ("benches", "examples", "tests")  # targets that are not the lib: not copied, recorded
STRIPPED_TARGETS = ("bench", "example", "test")


@dataclass(frozen=True)
class CrateCopy:
    """One in-crate sample's crate copy: what is built, where the function and its tests sit in it."""

    source_dir: Path          # the crate as given (never written)
    name: str                 # [package] name and version
    version: str
    lib_name: str             # the lib target's name (what cargo's JSON messages say)
    edition: str
    lib_file: str             # the crate root (src/lib.rs unless [lib] path says otherwise)
    file: str                 # the function's file, relative to the crate root
    module: str               # rtf_generated_<hash>: the generated tests' module, and their libtest filter
    features: tuple[str, ...]
    stripped: tuple[str, ...]  # what was left out to build offline, in words
    manifest: str             # the Cargo.toml the copy is built with
    pristine_source: str      # the function's file as in the crate
    source: str               # ... with the generated module appended
    function_lines: tuple[int, int]  # 1-based, inclusive, in `file`
    function_span: tuple[int, int]   # the function's character range in `file` (the same in `source`)
    tests_bytes: tuple[int, int]     # the generated module's byte range in `file`
    own_tests: str = "kept"          # or a level of OWN_TEST_LEVELS: how much of the crate's test-only code is off
    rewritten: tuple[tuple[str, str], ...] = ()   # (file, text) of other files changed in the copy

    def with_function(self, code: str) -> str:
        """`source` with the function replaced by `code` (a mutant, or the mutant schema)."""
        start, end = self.function_span
        return self.source[:start] + code + self.source[end:]

    @property
    def target(self) -> CargoTarget:
        return CargoTarget(lib_name=self.lib_name, file=self.file, features=self.features, in_crate=True)

    @property
    def test_filter(self) -> str:
        """A libtest name filter that selects the generated module's tests and no test of the crate."""
        return f"{self.module}::"

    @property
    def module_source(self) -> str:
        return self.source.encode()[self.tests_bytes[0]:self.tests_bytes[1]].decode()

    def template_key(self, toolchain: str, coverage: bool) -> str:
        """Dependencies are compiled once per crate directory, version, manifest, features, toolchain, build kind,
        own-tests level and cargo config (two directories may hold crates of one name and version: a fork, a test fixture)."""
        text = "\n".join([str(self.source_dir), self.name, self.version, self.manifest, ",".join(self.features), toolchain,
                          str(coverage), self.own_tests, config_stamp()])
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.name)}-{self.version}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def record(self) -> dict:
        """The sample record's `crate` field (the build facts are added by the template stage)."""
        return {"name": self.name, "version": self.version, "dir": str(self.source_dir), "file": self.file,
                "module": self.module, "features": list(self.features), "stripped": list(self.stripped)}


def locate(sample: Sample) -> tuple[Path, str] | str:
    """The crate directory and the function's offset in its file, or a one-line input problem."""
    assert sample.crate is not None
    head = f"line {sample.line}: sample '{sample.id}'"
    crate_dir = Path(sample.crate.dir)
    if not crate_dir.is_dir():
        return f"{head}: crate directory '{crate_dir}' does not exist (field 'crate.dir')"
    if not (crate_dir / "Cargo.toml").is_file():
        return f"{head}: crate directory '{crate_dir}' has no Cargo.toml (field 'crate.dir')"
    rel = Path(sample.crate.file)
    root = crate_dir.resolve()
    if rel.is_absolute() or ".." in rel.parts:
        return f"{head}: file '{rel}' is outside the crate '{crate_dir}' (field 'crate.file' must be relative, without '..')"
    path = crate_dir / rel
    if not path.resolve().is_relative_to(root):
        return f"{head}: file '{rel}' leads outside the crate '{crate_dir}' through a symlink (field 'crate.file')"
    if not path.is_file():
        return f"{head}: file '{rel}' does not exist in the crate '{crate_dir}' (field 'crate.file')"
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as exc:
        return f"{head}: file '{rel}' of the crate '{crate_dir}' cannot be read as UTF-8: {exc} (field 'crate.file')"
    if sample.function_code not in text:
        return f"{head}: function_code does not appear verbatim in '{rel}' of the crate '{crate_dir}' (field 'function_code')"
    return crate_dir, rel.as_posix()


@lru_cache(maxsize=1)
def registry_versions() -> dict[str, tuple[str, ...]]:
    """Crate name -> versions present in Debian's registry."""
    return crate_versions(REGISTRY)


def strip_manifest(doc: tomlkit.TOMLDocument, crate_dir: Path) -> list[str]:
    """Edit the manifest in place so the lib builds offline; what was taken out, in words."""
    stripped: list[str] = []
    tables = [("dev-dependencies", doc.get("dev-dependencies"))]
    tables += [(f"target.{cfg}.dev-dependencies", t.get("dev-dependencies")) for cfg, t in doc.get("target", {}).items()]
    for where, table in tables:
        for key in list(table or {}):
            problem = missing_dev_dependency(key, table[key], registry_versions(), REGISTRY)
            if problem:
                del table[key]
                stripped.append(f"[{where}] {key} ({problem})")
    for kind in STRIPPED_TARGETS:
        for target in doc.get(kind, []):
            stripped.append(f"[[{kind}]] {target.get('name', '?')}")
        doc.pop(kind, None)
    if "workspace" in doc.get("package", {}):
        doc["package"].pop("workspace")
        stripped.append("package.workspace (the copy is its own workspace)")
    if "workspace" not in doc:
        doc["workspace"] = tomlkit.table()  # so cargo never climbs to a parent directory's workspace
    name = str(doc.get("package", {}).get("name", ""))
    if name and "patch" not in doc:
        # a dev-dependency that depends on this crate (tokio-stream on tokio) gets this copy, as in the
        # crate's own workspace, not a second build of it from the registry whose types would not match
        patch = tomlkit.table(is_super_table=True)
        patch["crates-io"] = tomlkit.table()
        patch["crates-io"][name] = tomlkit.inline_table()
        patch["crates-io"][name]["path"] = "."
        doc["patch"] = patch
    stripped += [f"{d}/" for d in STRIPPED_DIRS if (crate_dir / d).is_dir()]
    if (crate_dir / "Cargo.lock").is_file():
        stripped.append("Cargo.lock (resolved again offline)")
    return stripped


def _line_span(text: str, start: int, code: str) -> tuple[int, int]:
    first = text.count("\n", 0, start) + 1
    return first, first + code.rstrip().count("\n")


CFG_ATTRIBUTE = re.compile(r"#!?\[\s*cfg(?:_attr)?\s*\(")
# `#[test]`, `#[bench]`, `#[tokio::test]`, `#[crate::test]`: a test function outside any cfg(test) module
TEST_ATTRIBUTE = re.compile(r"#\[\s*(?:\w+\s*::\s*)*(?:test|bench)\s*\]$")
NEVER = "#[cfg(any())]"
_TEST_ONLY_ITEMS = ("mod_item", "use_declaration", "extern_crate_declaration")
# How much of a crate's own test-only code is switched off, in the order prepare tries them.
OWN_TEST_LEVELS = ("kept", "test_modules_off", "cfg_test_off")
STRING_LITERAL = re.compile(r'("(?:[^"\\]|\\.)*")')


def _test_made_false(attribute: str) -> str:
    """A cfg/cfg_attr attribute with the `test` predicate replaced by `any()` (never true); strings kept.

    So `cfg(test)` is off, `cfg(all(test, unix))` is off, `cfg(any(test, fuzzing))` reads `fuzzing`
    and `cfg(not(test))` is on: the crate compiles as if it were not being tested.
    """
    parts = STRING_LITERAL.split(attribute)  # odd indexes are string literals
    return "".join(p if i % 2 else re.sub(r"\btest\b", "any()", p) for i, p in enumerate(parts))


def _attached_item(attribute: Node) -> Node | None:
    """The item an outer attribute belongs to: the next sibling that is not an attribute or a comment."""
    node = attribute.next_named_sibling
    while node is not None and node.type in ("attribute_item", "line_comment", "block_comment"):
        node = node.next_named_sibling
    return node


@functools.lru_cache(maxsize=4096)  # every sample of a crate rewrites the same files (tokio: 300, a second each time)
def switch_off_cfg_test(text: str, *, modules_only: bool = False) -> tuple[str, int]:
    """`text` with the `test` predicate of every cfg/cfg_attr attribute made never-true, and how many changed.

    `modules_only`: only on test modules, `use` and `extern crate` items (and inner attributes, which make a
    whole file test-only); other test-only items (a const, a helper macro) stay, for the tests that use them.

    A test function (`#[test]`, `#[bench]`, `#[x::test]`) gets `#[cfg(any())]` in place of that
    attribute: it is compiled under `cargo test` even outside a cfg(test) module, and it uses
    the cfg(test) items switched off here (chrono 0.4.23 has such tests at module level).
    """
    data = text.encode()
    spans = []
    for n in rust_ast.walk(rust_ast.parse(data).root_node):
        old = rust_ast.text(n) if n.type in ("attribute_item", "inner_attribute_item") else ""
        if n.type == "attribute_item" and TEST_ATTRIBUTE.match(old):
            spans.append((n.start_byte, n.end_byte, NEVER))
        elif CFG_ATTRIBUTE.match(old) and (new := _test_made_false(old)) != old:
            item = _attached_item(n) if n.type == "attribute_item" else None
            if not modules_only or item is None or item.type in _TEST_ONLY_ITEMS:
                spans.append((n.start_byte, n.end_byte, new))
    for start, end, new in reversed(spans):
        data = data[:start] + new.encode() + data[end:]
    return data.decode(), len(spans)


def _without_own_tests(crate_dir: Path, file: str, text: str, level: str) -> tuple[str, tuple[tuple[str, str], ...], int]:
    """The function's file and every other source file with the crate's own test-only code switched off."""
    modules_only = level == "test_modules_off"
    function_file, count = switch_off_cfg_test(text, modules_only=modules_only)
    rewritten = []
    for path in sorted(crate_dir.rglob("*.rs")):
        rel = path.relative_to(crate_dir)
        if rel.as_posix() == file or rel.parts[0] in SKIPPED_DIRS + STRIPPED_DIRS or path.is_symlink():
            continue
        try:
            new, n = switch_off_cfg_test(path.read_text(), modules_only=modules_only)
        except (UnicodeDecodeError, OSError):
            continue
        if n:
            rewritten.append((rel.as_posix(), new))
            count += n
    return function_file, tuple(rewritten), count


def declared_features(doc: tomlkit.TOMLDocument) -> set[str]:
    """The features a manifest declares: its [features] and an implicit feature per optional dependency
    that no feature names as `dep:NAME` (cargo's rule; `#[cfg(feature = "serde")]` for chrono's optional serde)."""
    declared = set(doc.get("features", {}))
    hidden = {str(v)[4:] for values in doc.get("features", {}).values() for v in values if str(v).startswith("dep:")}
    return declared | {name for name in _optional_dependencies(doc) if name not in hidden}


def _optional_dependencies(doc: tomlkit.TOMLDocument) -> dict[str, object]:
    tables = [doc.get("dependencies", {})] + [t.get("dependencies", {}) for t in doc.get("target", {}).values()]
    return {name: spec for table in tables for name, spec in table.items() if isinstance(spec, dict) and spec.get("optional")}


def offline_features(doc: tomlkit.TOMLDocument, without: frozenset[str] = frozenset(),
                     excluded: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Every declared feature whose optional dependencies (and whose features, transitively) the registry has.

    What `--all-features` would be, offline: the generated tests may use any part of the crate, as the
    crate's own test suite does under its CI's feature set (tokio's tests need `full`). `without`: dependencies
    to treat as missing (one that does not compile with this toolchain); `excluded`: features to leave off, with
    every feature that enables them.
    """
    optional = _optional_dependencies(doc)
    missing = set(without) | {name for name, spec in optional.items() if missing_dev_dependency(name, spec, registry_versions(), REGISTRY)}
    wants = {str(k): [str(v) for v in values] for k, values in doc.get("features", {}).items()}
    wants |= {name: [f"dep:{name}"] for name in declared_features(doc) if name not in wants}

    def usable(entry: str, kept: set[str]) -> bool:
        name = entry[4:] if entry.startswith("dep:") else entry.split("/")[0].rstrip("?")
        if name in missing or entry in excluded:
            return False
        return entry.startswith("dep:") or "/" in entry or name in kept or name in optional

    kept = set(wants) - excluded
    while drop := {f for f in kept if not all(usable(e, kept) for e in wants[f])}:
        kept -= drop
    return tuple(sorted(kept))


def _with_self_alias(root_source: str, lib_name: str) -> str:
    """The crate root with `extern crate self as <lib>;` under cfg(test), unless it has one: tests may then name
    the crate as its integration tests do (`tokio::spawn`, and what `#[tokio::test]` expands to)."""
    if re.search(r"\bextern\s+crate\s+self\b", root_source):
        return root_source
    text = root_source if root_source.endswith("\n") else root_source + "\n"
    return text + f"\n#[cfg(test)] // added by the evaluator: the tests may name the crate\nextern crate self as {lib_name};\n"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def plan_copy(sample: Sample, crate_dir: Path, file: str, *, own_tests: str = "kept", all_features: bool = False,
              without: frozenset[str] = frozenset()) -> CrateCopy:
    """The copy's manifest, features and the function's file with the generated module appended.

    `all_features`: every feature that resolves offline (offline_features), not only those the function needs.
    `own_tests` other than "kept" is the fallback for a crate whose own tests need the dev-dependencies that
    were stripped (OWN_TEST_LEVELS, tried in order): first its test modules and test functions are switched
    off, then every cfg(test) of the crate (`test` made false); either is recorded in `stripped`.
    """
    doc = tomlkit.parse((crate_dir / "Cargo.toml").read_text())
    stripped = strip_manifest(doc, crate_dir)
    package = doc.get("package", {})
    name, version = str(package.get("name", "?")), str(package.get("version", "0.0.0"))
    lib = doc.get("lib", {})
    lib_name = str(lib.get("name", name.replace("-", "_")))
    lib_file = str(lib.get("path", "src/lib.rs"))
    pristine = (crate_dir / file).read_text()
    rewritten: tuple[tuple[str, str], ...] = ()
    if own_tests != "kept":
        pristine, rewritten, count = _without_own_tests(crate_dir, file, pristine, own_tests)
        what = "test modules and functions" if own_tests == "test_modules_off" else "test-only code"
        stripped.append(f"the crate's own {what} ({count} attributes, `test` made false): it needs stripped dev-dependencies")
    start = pristine.index(sample.function_code)
    # the cfg readers read the crate's own file: the function's bytes there (switching own tests off moves them)
    original = (crate_dir / file).read_text()
    byte_start = len(original[:original.index(sample.function_code)].encode())
    byte_end = byte_start + len(sample.function_code.encode())
    features = tuple(f for f in features_needed(crate_dir, lib_file, file, byte_start, byte_end) if f in declared_features(doc))
    if all_features:
        off = frozenset(features_excluded(crate_dir, file, byte_start, byte_end))
        features = tuple(dict.fromkeys(features + offline_features(doc, without, off)))
    module = MODULE_PREFIX + hashlib.sha256((sample.id + "\0" + sample.generated_tests).encode()).hexdigest()[:12]
    head = pristine if pristine.endswith("\n") else pristine + "\n"
    if lib_file == file:
        head = _with_self_alias(head, lib_name)
    else:
        root = dict(rewritten).get(lib_file) or _read_text(crate_dir / lib_file)
        if root is not None and (aliased := _with_self_alias(root, lib_name)) != root:
            rewritten = tuple((f, t) for f, t in rewritten if f != lib_file) + ((lib_file, aliased),)
    # clippy is allowed crate-wide in the linted build (`CargoTarget.clippy_levels`) and warns here: the tests' lints
    # are the ones that count, and a big crate's own would flood the build's output
    block = f"\n#[cfg(test)]\n#[warn(clippy::all)]\nmod {module} {{\n{sample.generated_tests.rstrip()}\n}}\n"
    tests_start = len(head.encode()) + 1  # after the blank line
    source = head + block
    return CrateCopy(crate_dir, name, version, lib_name, str(package.get("edition", "2015")), lib_file, file, module,
                     features, tuple(stripped), tomlkit.dumps(doc), pristine, source,
                     _line_span(pristine, start, sample.function_code), (start, start + len(sample.function_code)),
                     (tests_start, len(source.encode())), own_tests, rewritten)


def write_copy(copy: CrateCopy, dest: Path, *, with_tests: bool) -> None:
    """Copy the crate to `dest` (new, root-owned, not writable by others) with fresh mtimes; write the manifest and file."""
    top = copy.source_dir

    def ignore(directory: str, names: list[str]) -> list[str]:
        if Path(directory) != top:
            return []
        return [n for n in names if n in SKIPPED_DIRS + STRIPPED_DIRS or n == "Cargo.lock"]

    # symlinks=True: a link is copied as a link, so whatever it points at is read with the sandbox uid's rights.
    shutil.copytree(top, dest, symlinks=True, ignore=ignore, copy_function=shutil.copy, dirs_exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & 0o755 | (0o755 if path.is_dir() else 0o644))
    write_inside(dest, "Cargo.toml", copy.manifest)
    for rel, text in copy.rewritten:
        write_inside(dest, rel, text)
    write_inside(dest, copy.file, copy.source if with_tests else copy.pristine_source)


def write_inside(root: Path, rel: str, text: str) -> None:
    """Write root/rel as a plain file, never through a symlink (a link could point back into the source crate)."""
    path = root / rel
    if path.is_symlink():
        path.unlink()
    if not path.parent.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{rel} of the crate copy leads outside it through a symlink")
    path.write_text(text)
