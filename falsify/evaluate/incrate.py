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

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tomlkit

from trainer.corpus import rust_ast

from .crate import CargoTarget
from .crate_features import features_needed
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
    own_tests: bool = True           # False: the crate's own test-only code is switched off (see plan_copy)
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
        """Dependencies are compiled once per crate, version, manifest, features, toolchain and build kind."""
        text = "\n".join([self.name, self.version, self.manifest, ",".join(self.features), toolchain, str(coverage),
                          str(self.own_tests)])
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
    """Crate name -> versions present in Debian's registry (directories `name-version`)."""
    found: dict[str, list[str]] = {}
    for entry in os.listdir(REGISTRY) if REGISTRY.is_dir() else []:
        m = re.match(r"^(.+)-(\d+\.\d+\.\d+.*)$", entry)
        if m:
            found.setdefault(m.group(1), []).append(m.group(2))
    return {name: tuple(versions) for name, versions in found.items()}


def _compatible(requirement: str, version: str) -> bool:
    """A caret/tilde/exact requirement's major (0.minor for 0.x) against a version; other forms match by name only."""
    m = re.match(r"^\s*[\^~=]?\s*(\d+)(?:\.(\d+))?", requirement)
    if not m or any(op in requirement for op in ("<", ">", ",", "*")):
        return True
    have = version.split(".")
    major, minor = m.group(1), m.group(2)
    return have[0] == major and (major != "0" or minor is None or have[1] == minor)


def _dev_dependency_problem(key: str, spec: object) -> str | None:
    """Why a dev-dependency cannot be resolved offline, or None when the registry has it."""
    table = spec if isinstance(spec, dict) else {"version": spec}
    if "path" in table or "git" in table:
        return "a path or git dependency"
    package = str(table.get("package", key))
    requirement = str(table.get("version", "*"))
    versions = registry_versions().get(package, ())
    if not any(_compatible(requirement, v) for v in versions):
        return f"{package} {requirement} not in {REGISTRY}"
    return None


def strip_manifest(doc: tomlkit.TOMLDocument, crate_dir: Path) -> list[str]:
    """Edit the manifest in place so the lib builds offline; what was taken out, in words."""
    stripped: list[str] = []
    tables = [("dev-dependencies", doc.get("dev-dependencies"))]
    tables += [(f"target.{cfg}.dev-dependencies", t.get("dev-dependencies")) for cfg, t in doc.get("target", {}).items()]
    for where, table in tables:
        for key in list(table or {}):
            problem = _dev_dependency_problem(key, table[key])
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
    stripped += [f"{d}/" for d in STRIPPED_DIRS if (crate_dir / d).is_dir()]
    if (crate_dir / "Cargo.lock").is_file():
        stripped.append("Cargo.lock (resolved again offline)")
    return stripped


def _line_span(text: str, start: int, code: str) -> tuple[int, int]:
    first = text.count("\n", 0, start) + 1
    return first, first + code.rstrip().count("\n")


CFG_ATTRIBUTE = re.compile(r"#!?\[\s*cfg(?:_attr)?\s*\(")
STRING_LITERAL = re.compile(r'("(?:[^"\\]|\\.)*")')


def _test_made_false(attribute: str) -> str:
    """A cfg/cfg_attr attribute with the `test` predicate replaced by `any()` (never true); strings kept.

    So `cfg(test)` is off, `cfg(all(test, unix))` is off, `cfg(any(test, fuzzing))` reads `fuzzing`
    and `cfg(not(test))` is on: the crate compiles as if it were not being tested.
    """
    parts = STRING_LITERAL.split(attribute)  # odd indexes are string literals
    return "".join(p if i % 2 else re.sub(r"\btest\b", "any()", p) for i, p in enumerate(parts))


def switch_off_cfg_test(text: str) -> tuple[str, int]:
    """`text` with the `test` predicate of every cfg/cfg_attr attribute made never-true, and how many changed."""
    data = text.encode()
    spans = []
    for n in rust_ast.walk(rust_ast.parse(data).root_node):
        if n.type in ("attribute_item", "inner_attribute_item") and CFG_ATTRIBUTE.match(rust_ast.text(n)):
            new = _test_made_false(rust_ast.text(n))
            if new != rust_ast.text(n):
                spans.append((n.start_byte, n.end_byte, new))
    for start, end, new in reversed(spans):
        data = data[:start] + new.encode() + data[end:]
    return data.decode(), len(spans)


def _without_own_tests(crate_dir: Path, file: str, text: str) -> tuple[str, tuple[tuple[str, str], ...], int]:
    """The function's file and every other source file with the crate's own test-only code switched off."""
    function_file, count = switch_off_cfg_test(text)
    rewritten = []
    for path in sorted(crate_dir.rglob("*.rs")):
        rel = path.relative_to(crate_dir)
        if rel.as_posix() == file or rel.parts[0] in SKIPPED_DIRS + STRIPPED_DIRS or path.is_symlink():
            continue
        try:
            new, n = switch_off_cfg_test(path.read_text())
        except (UnicodeDecodeError, OSError):
            continue
        if n:
            rewritten.append((rel.as_posix(), new))
            count += n
    return function_file, tuple(rewritten), count


def plan_copy(sample: Sample, crate_dir: Path, file: str, *, own_tests: bool = True) -> CrateCopy:
    """The copy's manifest, features and the function's file with the generated module appended.

    `own_tests=False` is the fallback for a crate whose own tests need the dev-dependencies that
    were stripped: the `test` predicate of every cfg of the crate is made false (recorded in `stripped`).
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
    if not own_tests:
        pristine, rewritten, count = _without_own_tests(crate_dir, file, pristine)
        stripped.append(f"the crate's own test-only code ({count} cfg attributes, `test` made false): it needs stripped dev-dependencies")
    start = pristine.index(sample.function_code)
    byte_start = len(pristine[:start].encode())
    byte_end = byte_start + len(sample.function_code.encode())
    declared = set(doc.get("features", {}))
    features = tuple(f for f in features_needed(crate_dir, lib_file, file, byte_start, byte_end) if f in declared)
    module = MODULE_PREFIX + hashlib.sha256((sample.id + "\0" + sample.generated_tests).encode()).hexdigest()[:12]
    head = pristine if pristine.endswith("\n") else pristine + "\n"
    block = f"\n#[cfg(test)]\nmod {module} {{\n{sample.generated_tests.rstrip()}\n}}\n"
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
