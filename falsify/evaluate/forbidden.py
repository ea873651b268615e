"""Static refusal: constructs that have no place in a unit test and only serve to subvert the harness.

A model trained toward "passing" finds every shortcut: end the process before a failing test
reports (exit, abort, exec), run code before libtest's `main` (link sections, `#[used]`, ctors),
silence or reopen libtest's stdout (raw fds, dup2, /proc/self/fd, /dev/stdout), swallow
every failure (panic hooks), call out of Rust's sight (extern blocks, asm!), read how the
harness runs it (RTF_MUTANT, env vars), or read host files at compile time (include!).
`std::io::stdout()` writes are not refused: lines a test adds cannot suppress libtest's own account,
so the harness check sees the disagreement (and the output cap stops a flood).

The check scans tree-sitter's leaf tokens, so code inside macro token trees (`proptest! {...}`)
is seen too. A `macro_rules!` can assemble a path from pieces no source scan sees; for tests
that define or call macros beyond the well-known ones, `expanded_refusal` scans the tests after
rustc's macro expansion (README, "Threat model", says what is and is not expanded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.corpus import rust_ast

if TYPE_CHECKING:
    from .crate import CargoTarget, Workspace

# Macros and attributes that make the compiler read files: generated tests have no files
# to read, and a build must not copy host files into the binary.
FILE_READING = ("include", "include_str", "include_bytes")
INLINE_ASSEMBLY = ("asm", "global_asm", "naked_asm", "llvm_asm")
PROCESS_ENDS = ("exit", "_exit", "abort")
# libc/nix functions that end the process, signal it, replace it or move its fds. Not `close` and `write`: honest
# tests close and write their own sockets' fds (tokio's net tests, 13 of the holdout's 200), and what they could do
# to libtest's stdout (lose its account, add lines) is what the harness check refuses, as for std::io::stdout().
LIBC_ESCAPES = frozenset({"exit", "_exit", "abort", "kill", "raise", "dup", "dup2", "dup3", "fork",
                          "vfork", "execv", "execve", "execvp", "execl", "execlp", "execle", "signal", "sigaction",
                          "syscall", "pthread_kill", "freopen", "fdopen", "tgkill", "ptrace"})
RAW_FD = frozenset({"from_raw_fd", "FromRawFd", "borrow_raw", "from_raw_handle", "FromRawHandle"})
PANIC_HOOKS = frozenset({"set_hook", "take_hook", "update_hook", "always_abort"})
EXEC = frozenset({"CommandExt", "pre_exec"})
ENV_ACCESS = frozenset({"var", "vars", "var_os", "vars_os", "set_var", "remove_var"})
HARNESS_NAMES = frozenset({"__rtf_mutant", "RTF_MUTANT", "LLVM_PROFILE_FILE"})
# Attributes that place code or data where the linker or loader runs it (before main, under a C name).
LINKER_ATTRIBUTES = frozenset({"no_mangle", "export_name", "link_section", "used", "link", "link_name",
                               "link_ordinal", "linkage", "ctor", "dtor", "global_allocator", "naked", "no_main",
                               "start", "panic_handler"})
HARMLESS_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

# Macros whose expansion is known (std, core, proptest): tests that use only these are not expanded.
WELL_KNOWN_MACROS = frozenset({
    "assert", "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne", "assert_matches",
    "prop_assert", "prop_assert_eq", "prop_assert_ne", "prop_assume", "proptest", "prop_compose", "prop_oneof",
    "vec", "format", "format_args", "print", "println", "eprint", "eprintln", "write", "writeln", "panic",
    "unreachable", "todo", "unimplemented", "matches", "dbg", "line", "column", "file", "module_path",
    "stringify", "cfg", "thread_local"})
# Attributes that generate no code of their own (anything else may be a proc macro: expand).
WELL_KNOWN_ATTRIBUTES = frozenset({"test", "should_panic", "ignore", "allow", "warn", "deny", "forbid", "expect",
                                   "cfg", "derive", "doc", "inline", "must_use", "track_caller", "cold",
                                   "rustfmt", "clippy", "non_exhaustive", "repr"})
STD_DERIVES = frozenset({"Debug", "Clone", "Copy", "PartialEq", "Eq", "PartialOrd", "Ord", "Hash", "Default"})


_SEGMENT_KINDS = ("identifier", "crate", "self", "super")  # what a path segment is (`crate::__rtf_mutant`)


@dataclass(frozen=True)
class Token:
    text: str
    kind: str
    line: int   # 1-based


@dataclass(frozen=True)
class Finding:
    construct: str
    line: int
    why: str

    def reason(self, where: str = "line") -> str:
        return f"forbidden_construct: {self.construct} ({where} {self.line}): {self.why}"


def tokens(code: str) -> list[Token]:
    """The leaf tokens of `code` in source order (inside macro token trees too), comments left out."""
    root = rust_ast.parse(code).root_node
    return [Token(rust_ast.text(n), n.type, n.start_point[0] + 1) for n in rust_ast.walk(root)
            if n.child_count == 0 and n.type not in ("line_comment", "block_comment")]


def paths(toks: list[Token]) -> Iterator[tuple[list[str], int]]:
    """Every `a::b::c` path: its segments and its line."""
    i = 0
    while i < len(toks):
        continued = i >= 2 and toks[i - 1].text == "::" and toks[i - 2].kind in _SEGMENT_KINDS
        if toks[i].kind not in _SEGMENT_KINDS or continued:
            i += 1
            continue
        segments, j = [toks[i].text], i + 1
        while j + 1 < len(toks) and toks[j].text == "::" and toks[j + 1].kind in _SEGMENT_KINDS:
            segments.append(toks[j + 1].text)
            j += 2
        yield segments, toks[i].line
        i = j


def _path_findings(toks: list[Token]) -> Iterator[Finding]:
    for segments, line in paths(toks):
        yield from _process_end(segments, line)
        yield from _named_escape(segments, line)


def _process_end(segments: list[str], line: int) -> Iterator[Finding]:
    for a, b in zip(segments, segments[1:]):
        if a == "process" and b in PROCESS_ENDS:
            yield Finding(f"std::process::{b}", line, "a unit test must not end the process")
    if segments[0] in ("libc", "nix"):
        hit = next((s for s in segments[1:] if s in LIBC_ESCAPES), None)
        if hit:
            yield Finding(f"{segments[0]}::{hit}", line, "a unit test must not end, signal or replace the process, "
                                                         "or write to a raw file descriptor")
    if len(segments) > 1 and segments[-1] in PROCESS_ENDS and "process" not in segments:
        yield Finding("::".join(segments), line, "a unit test must not end the process")


def _named_escape(segments: list[str], line: int) -> Iterator[Finding]:
    joined = "::".join(segments)
    for s in segments:
        if s in EXEC:
            yield Finding(joined, line, "exec replaces the test process, so no later test reports")
        elif s in RAW_FD:
            yield Finding(joined, line, "a raw file descriptor writes past libtest's output capture")
        elif s in PANIC_HOOKS:
            yield Finding(joined, line, "a panic hook decides what a failing test does, in place of libtest")
        elif s in HARNESS_NAMES:
            yield Finding(s, line, "the tests must not read how the harness runs them")
    for a, b in zip(segments, segments[1:]):
        if a == "env" and b in ENV_ACCESS:
            yield Finding(f"std::env::{b}", line, "the tests must not read or change the harness's environment")


def _exec_calls(toks: list[Token]) -> Iterator[Finding]:
    """`.exec()` on a Command, however the trait came into scope."""
    mentions_command = any(t.text == "Command" for t in toks)
    for a, b, c in zip(toks, toks[1:], toks[2:]):
        if mentions_command and a.text == "." and b.text == "exec" and c.text == "(":
            yield Finding("CommandExt::exec", b.line, "exec replaces the test process, so no later test reports")


def _use_findings(toks: list[Token]) -> Iterator[Finding]:
    """`use` declarations: groups and globs (`use std::process::{self, exit as quit}`, `use std::os::unix::prelude::*`)."""
    for i, tok in enumerate(toks):
        if tok.text != "use":
            continue
        end = next((k for k in range(i, len(toks)) if toks[k].text == ";"), len(toks))
        names = [t.text for t in toks[i + 1:end]]
        if "process" in names and ({"*", *PROCESS_ENDS} & set(names)):
            yield Finding("use std::process::" + next(n for n in names if n in ("*", *PROCESS_ENDS)), tok.line,
                          "a unit test must not end the process")
        if "os" in names and "*" in names and {"unix", "fd", "prelude"} & set(names):
            yield Finding("use " + "::".join(n for n in names if n not in ("::", ";")), tok.line,
                          "the glob brings CommandExt::exec and FromRawFd into scope")


def _macro_findings(toks: list[Token]) -> Iterator[Finding]:
    for a, b in zip(toks, toks[1:]):
        if b.text != "!" or a.kind != "identifier":
            continue
        if a.text in FILE_READING:
            yield Finding(f"{a.text}!", a.line, "reads files at compile time")
        elif a.text in INLINE_ASSEMBLY:
            yield Finding(f"{a.text}!", a.line, "inline assembly runs out of Rust's and the harness's sight")


def _module_findings(toks: list[Token]) -> Iterator[Finding]:
    for a, b, c in zip(toks, toks[1:], toks[2:]):
        if a.text == "mod" and b.kind == "identifier" and c.text == ";":
            yield Finding(f"mod {b.text};", a.line, "loads another file")


def _extern_findings(toks: list[Token]) -> Iterator[Finding]:
    for a, b in zip(toks, toks[1:]):
        if a.text == "extern" and b.text != "crate":
            yield Finding("extern " + (b.text if b.text != '"' else '"C"'), a.line,
                          "foreign functions run out of Rust's sight (libc's exit, write, ...)")


def attributes(toks: list[Token]) -> Iterator[tuple[list[str], int]]:
    """The identifiers of every `#[...]` / `#![...]` attribute, and its line."""
    for i, tok in enumerate(toks):
        if tok.text != "#":
            continue
        j = i + 1 + (i + 1 < len(toks) and toks[i + 1].text == "!")
        if j >= len(toks) or toks[j].text != "[":
            continue
        depth, k = 0, j
        while k < len(toks):
            depth += {"[": 1, "]": -1}.get(toks[k].text, 0)
            if depth == 0:
                break
            k += 1
        yield [t.text for t in toks[j + 1:k] if t.kind == "identifier"], tok.line


def _attribute_findings(toks: list[Token]) -> Iterator[Finding]:
    for names, line in attributes(toks):
        if names[:1] == ["path"]:
            yield Finding("#[path]", line, "loads another file")
        hit = next((n for n in names if n in LINKER_ATTRIBUTES), None)
        if hit:
            yield Finding(f"#[{hit}]", line, "the linker or loader runs it outside the tests (before main, under a C name)")


def _string_findings(code: str) -> Iterator[Finding]:
    root = rust_ast.parse(code).root_node
    for node in rust_ast.walk(root):
        if node.type not in ("string_literal", "raw_string_literal"):
            continue
        content = rust_ast.text(node).lstrip("rb#").strip('"#')
        line = node.start_point[0] + 1
        if content.startswith("/proc") or (content.startswith("/dev/") and not content.startswith(HARMLESS_DEVICES)):
            yield Finding(f'"{content[:40]}"', line, "the process's own files and devices (fds, memory, stdout) "
                                                      "reach past the harness")
        elif any(name in content for name in HARNESS_NAMES):
            yield Finding(f'"{content[:40]}"', line, "the tests must not read how the harness runs them")


def inclusion_findings(code: str) -> list[Finding]:
    """Compile-time file reads only: the check the function's own code gets (it is the corpus's, not the model's)."""
    toks = tokens(code)
    found = [f for f in _macro_findings(toks) if f.construct[:-1] in FILE_READING]
    found += _module_findings(toks)
    return found + [f for f in _attribute_findings(toks) if f.construct == "#[path]"]


def findings(code: str) -> list[Finding]:
    """Every forbidden construct of generated tests, in line order."""
    toks = tokens(code)
    found = [*_path_findings(toks), *_exec_calls(toks), *_use_findings(toks), *_macro_findings(toks),
             *_module_findings(toks), *_extern_findings(toks), *_attribute_findings(toks), *_string_findings(code)]
    return sorted(found, key=lambda f: f.line)


def refusal(tests: str, function_code: str | None = None) -> str | None:
    """Why the generated tests (and the function's code, for file reads only) are refused before any build, or None."""
    found = findings(tests) or (inclusion_findings(function_code) if function_code is not None else [])
    return found[0].reason() if found else None


def needs_expansion(tests: str) -> bool:
    """The tests define a macro, call one beyond the well-known ones, or use an attribute that may be a proc macro."""
    toks = tokens(tests)
    if any(t.text == "macro_rules!" for t in toks):  # one token where tree-sitter parsed the definition
        return True
    for a, b in zip(toks, toks[1:]):
        if b.text == "!" and a.kind == "identifier" and a.text not in WELL_KNOWN_MACROS:
            return True  # macro_rules! inside a token tree too
    for names, _ in attributes(toks):
        if not names or names[0] not in WELL_KNOWN_ATTRIBUTES:
            return True
        if names[0] == "derive" and set(names[1:]) - STD_DERIVES:
            return True
    return False


# ---- the macro-expanded check ------------------------------------------------------------------
EXPANDED_FILE = "target/rtf-expanded.rs"   # where every build may write; read without following links, then removed
EXPANSION_CAP = 16 << 20                # an expansion this large is no unit test: refused, not scanned
# Put between the function and the standalone tests while expanding: what follows it is the tests'.
TESTS_MARKER = "const __RTF_GENERATED_TESTS_FOLLOW: () = ();"


def expanded_refusal(ws: Workspace, sample_dir: Path, uid: int, target: CargoTarget,
                     tests_of: Callable[[str], str | None]) -> str | None:
    """Expand the crate's macros (rustc -Zunpretty=expanded, sandboxed like every build) and scan the tests' part.

    `tests_of(expanded)` cuts the generated tests out of the expanded crate (None: not found, nothing scanned).
    A crate that does not expand is not refused here: its build says why it does not compile.
    """
    out = sample_dir / EXPANDED_FILE
    flags = [*target.lint_cap(), "-Zallow-features=", "-Zunpretty=expanded", "-o", str(out)]
    build = ws.cargo(sample_dir, ["rustc", "--profile", "test", "--lib"], uid=uid, rustc_args=flags,
                     extra_env={"RUSTC_BOOTSTRAP": "1"}, target=target)
    if not build.success:
        return None
    text = _read_expansion(out)
    if text is None:  # rustc said it expanded, yet nothing can be read: fail closed, never skip the check
        return "forbidden_construct: the macro expansion of the tests could not be read, so it could not be checked"
    if len(text) >= EXPANSION_CAP:
        return f"forbidden_construct: macro expansion of {EXPANSION_CAP >> 20} MiB or more: no unit test expands so far"
    tests = tests_of(text)
    found = findings(tests) if tests is not None else []
    return found[0].reason("macro-expanded tests, line") if found else None


def _read_expansion(out: Path) -> str | None:
    """The expansion the sandbox wrote (never through a link it planted), at most EXPANSION_CAP characters; removed."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(EXPANSION_CAP)
    finally:
        for left in out.parent.glob(out.stem + "*"):  # rustc's dep-info file sits next to it
            left.unlink(missing_ok=True)
    return data.decode("utf-8", "replace")


def after_marker(expanded: str) -> str | None:
    """The standalone tests: everything after TESTS_MARKER."""
    _, found, tests = expanded.partition(TESTS_MARKER)
    return tests if found else None


def module_named(name: str) -> Callable[[str], str | None]:
    """The in-crate tests: the expanded `mod <name> {...}` wherever it sits in the crate."""
    def cut(expanded: str) -> str | None:
        modules = [rust_ast.parse(expanded).root_node]
        while modules:  # through modules only: a whole crate's function bodies are millions of nodes
            for node in modules.pop().named_children:
                if node.type != "mod_item" or (body := node.child_by_field_name("body")) is None:
                    continue
                if rust_ast.text(node.child_by_field_name("name")) == name:
                    return rust_ast.text(node)
                modules.append(body)
        return None
    return cut
