"""Turn a sample into a throwaway cargo crate and build it offline, sandboxed.

Speed: proptest and its dependencies are compiled once into a template target
directory in the cache (`$RTF_CACHE_DIR`, default ~/.cache/rust-test-falsify/evaluator).
Each sample gets its own target directory made of hard links to the template's files,
so cargo sees the dependencies as fresh, parallel samples never wait on cargo's build
lock, and no sample can overwrite another's binary.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainer.corpus import rust_ast
from trainer.files import exclusive_lock

from .sandbox import Limits, RunResult, run_sandboxed
from .toolchain import REGISTRY, Toolchain

CRATE_NAME = "sample"

CARGO_CONFIG = f"""[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{REGISTRY}"

[net]
offline = true

# No debug info: nothing reads it (coverage has its own mapping; panics carry their own locations),
# and for a big crate (tokio) it is a fifth of each build. The config overrides the crate's manifest.
[profile.dev]
debug = 0

[profile.test]
debug = 0
"""

# Cargo's RUSTC_WORKSPACE_WRAPPER in every build of a sample: with RTF_CLIPPY_DRIVER set (a linted build),
# clippy-driver compiles the test unit, whose lints are counted; everything else of the crate (its plain lib,
# when a dev-dependency built on the crate links it: tokio-test on tokio) is plain rustc, where clippy would
# only cost time. The same wrapper in every build, linted or not, keeps that plain lib's fingerprint, so the
# macro expansion's build of it is reused by the test build (cargo hashes the wrapper of workspace members).
LINT_WRAPPER = """#!/bin/sh
case " $* " in *" --test "*) [ -n "$RTF_CLIPPY_DRIVER" ] && exec "$RTF_CLIPPY_DRIVER" "$@" ;; esac
exec "$@"
"""
LINT_WRAPPER_FILE = "rtf-lint-wrapper"   # in the crate's cargo home: root's, not writable by the sandbox uid

CARGO_TOML = f"""[package]
name = "{CRATE_NAME}"
version = "0.1.0"
edition = "2021"
build = false          # no build script: generated code never runs at build time
autobins = false
autoexamples = false
autotests = false
autobenches = false

[lib]
path = "src/lib.rs"
doctest = false

[dependencies]
proptest = "1"

[profile.dev]
debug = 0

[workspace]
"""

TEST_PRELUDE = "    use super::*;\n    #[allow(unused_imports)]\n    use proptest::prelude::*;\n"

# Flags of the coverage build, for the sample crate only (`cargo rustc` passes them to the
# last crate): branch coverage is a `-Z` option, enabled on stable through
# RUSTC_BOOTSTRAP=1; `-Zallow-features=` keeps every `#![feature]` an error, so the
# generated code is still held to stable Rust.
COVERAGE_FLAGS = ["-C", "instrument-coverage", "-Zcoverage-options=branch", "-Zallow-features="]

BUILD_LIMITS = Limits(wall_s=120, cpu_s=240, memory_bytes=6 << 30, file_bytes=1 << 30, processes=512,
                      output_bytes=4 << 20)

# The sandbox uid's directories of a prepared crate: coverage profiles (generated tests, no-test
# baseline, reruns, the crate's existing tests, both merged) and the test binary's working directories.
RUN_DIRS = ("prof", "prof-base", "prof-rerun", "prof-existing", "prof-both", "run", "run-existing")


def config_stamp() -> str:
    """Changes with the cargo config every build uses (its profiles): cached builds made under another are not reused."""
    return hashlib.sha256(CARGO_CONFIG.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    root = os.environ.get("RTF_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "rust-test-falsify" / "evaluator"


@dataclass(frozen=True)
class CargoTarget:
    """The lib target cargo builds and the file that holds the sample's code (standalone: the sample crate's lib.rs)."""

    lib_name: str = CRATE_NAME
    file: str = "src/lib.rs"
    features: tuple[str, ...] = ()
    in_crate: bool = False

    def feature_args(self) -> list[str]:
        return ["--features", ",".join(self.features)] if self.features else []

    def lint_cap(self) -> list[str]:
        return ["--cap-lints", "warn"] if self.in_crate else []

    def clippy_levels(self) -> list[str]:
        """clippy's levels in a linted build. Its deny-by-default correctness lints warn: a lint is counted, never a
        compile failure. In a crate, clippy is allowed everywhere but in the generated module (`#[warn(clippy::all)]`
        on it): tokio's own thousands of lints would only cost output."""
        return ["-A", "clippy::all"] if self.in_crate else ["-W", "clippy::correctness"]


STANDALONE = CargoTarget()


@dataclass
class Layout:
    """Where each part of the assembled lib.rs sits (1-based inclusive lines, byte ranges)."""
    source: str
    function_lines: tuple[int, int]
    tests_bytes: tuple[int, int]


def assemble(function_code: str, generated_tests: str, helper: str = "") -> Layout:
    """lib.rs = the function (from line 1), optional schema helper, then the tests module.

    Tests that are already a module (`mod tests {...}`) are placed as they are; bare
    `#[test]` functions and `proptest!` blocks are wrapped in `#[cfg(test)] mod tests`.
    """
    head = function_code.rstrip() + "\n"
    n_lines = head.count("\n")
    if helper:
        head += "\n" + helper.rstrip() + "\n"
    head += "\n"
    tree = rust_ast.parse(generated_tests)
    is_module = any(c.type == "mod_item" for c in tree.root_node.named_children)
    if is_module:
        tests = generated_tests.rstrip() + "\n"
    else:
        body = "\n".join(("    " + ln) if ln.strip() else "" for ln in generated_tests.rstrip().splitlines())
        tests = "#[cfg(test)]\nmod tests {\n" + TEST_PRELUDE + body + "\n}\n"
    start = len(head.encode())
    source = head + tests
    return Layout(source, (1, n_lines), (start, len(source.encode())))


def first_syntax_error(source: str) -> str | None:
    """Where tree-sitter sees the first syntax error of `source` ("line N"), or None when it parses all of it."""
    root = rust_ast.parse(source).root_node
    if not root.has_error:
        return None
    for node in rust_ast.walk(root):
        if node.type == "ERROR" or node.is_missing:
            return f"line {node.start_point[0] + 1}"
    return "unknown position"


@dataclass
class Diagnostic:
    level: str
    message: str
    rendered: str
    code: str | None
    spans: list[tuple[int, int]] = field(default_factory=list)   # primary spans in lib.rs, byte offsets
    lines: list[int] = field(default_factory=list)                # primary span start lines


@dataclass
class BuildResult:
    run: RunResult
    success: bool
    executable: Path | None
    diagnostics: list[Diagnostic]
    artifacts: list[tuple[str, bool]] = field(default_factory=list)   # (target name, fresh) per unit cargo reported
    linted: bool = False   # clippy ran in this compile: its lints are among the diagnostics

    def units(self, *, fresh: bool) -> list[str]:
        """Targets cargo reported as reused from the target directory (`fresh`) or compiled by this build."""
        return sorted({name for name, was_fresh in self.artifacts if was_fresh == fresh})

    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level in ("error", "error: internal compiler error")]

    def failed_on_clippy(self) -> bool:
        """The build failed because of clippy, not the code: a clippy lint denied, or the driver crashed."""
        return not self.success and any(d.level == "error: internal compiler error" or (d.code or "").startswith("clippy::")
                                        for d in self.errors())

    def error_text(self, limit: int = 1500) -> str:
        """The compiler's own error text, trimmed, or the harness's reason."""
        text = "\n".join(d.rendered.strip() for d in self.errors() if d.rendered)
        if not text:
            text = self.run.stderr.strip()[-limit:]
        return text[:limit] + (" ..." if len(text) > limit else "")

    def warnings_in(self, byte_range: tuple[int, int]) -> list[Diagnostic]:
        """Warnings whose primary span starts inside `byte_range` of lib.rs (e.g. the tests module)."""
        lo, hi = byte_range
        return [d for d in self.diagnostics if d.level == "warning" and any(lo <= start < hi for start, _ in d.spans)]


def compiled_sources(executable: Path) -> set[str] | None:
    """The source files rustc read for this test binary (its dep-info file, `<executable>.d`, as paths
    relative to the crate), or None when there is none. A file absent from it is not part of this
    platform's build with these features (tokio's `src/net/windows/`): its tests cannot run here."""
    try:
        text = Path(f"{executable}.d").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    first = text.split("\n\n", 1)[0]
    _, _, deps = first.partition(": ")
    return {d.replace("\\ ", " ") for d in re.split(r"(?<!\\) ", deps.strip()) if d}


def parse_cargo_json(stdout: str, target: CargoTarget = STANDALONE) -> tuple[list[Diagnostic], Path | None, bool, list[tuple[str, bool]]]:
    """Diagnostics of the sample's lib target in its file, its test executable, cargo's success flag, and each unit's freshness."""
    diags: list[Diagnostic] = []
    exe: Path | None = None
    success = False
    artifacts: list[tuple[str, bool]] = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        reason = msg.get("reason")
        name = msg.get("target", {}).get("name")
        if reason == "compiler-artifact":
            artifacts.append((str(name), bool(msg.get("fresh"))))
        if reason == "compiler-message" and name == target.lib_name:
            m = msg["message"]
            prim = [s for s in m.get("spans", []) if s.get("is_primary") and s.get("file_name", "").endswith(target.file)]
            diags.append(Diagnostic(m.get("level", ""), m.get("message", ""), m.get("rendered") or "",
                                    (m.get("code") or {}).get("code"),
                                    [(s["byte_start"], s["byte_end"]) for s in prim],
                                    [s["line_start"] for s in prim]))
        elif reason == "compiler-artifact" and name == target.lib_name and msg.get("executable"):
            exe = Path(msg["executable"])
        elif reason == "build-finished":
            success = bool(msg.get("success"))
    return diags, exe, success, artifacts


def link_target(src: Path, dest: Path, uid: int, skip: Callable[[Path], bool] = lambda rel: False) -> None:
    """Make `dest` a target directory of hard links to the template target `src`, writable by `uid`.

    The directories are the sample's own (so cargo can add and replace files), but every
    linked file stays the template's: owned by root and not writable by the sandbox uid, so
    a sample can replace a link in its own directory but never change the template's bytes.
    `skip(rel)` leaves out files (relative to `src`), e.g. a crate's own artifacts.
    """
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        if rel.parts[:2] in (("debug", "incremental"),) or skip(rel):
            dirnames[:] = []
            continue
        out = dest / rel
        out.mkdir(parents=True, exist_ok=True)
        os.chown(out, uid, uid)
        for name in filenames:
            if name in (".cargo-lock", ".rustc_info.json") or skip(rel / name):
                continue  # files cargo rewrites: the sample gets its own
            os.link(Path(dirpath) / name, out / name)


class Workspace:
    """The cache (cargo home, template target) and the builds of one evaluation run."""

    def __init__(self, toolchain: Toolchain, cargo_jobs: int = 1, build_limits: Limits = BUILD_LIMITS):
        self.toolchain = toolchain
        self.cargo_jobs = cargo_jobs
        self.build_limits = build_limits
        self.root = cache_dir()
        self.template = self.root / "template"
        self._lock = threading.Lock()

    # ---- template: dependencies compiled once -------------------------------------------
    def warm(self) -> None:
        """Compile proptest into the template, once per cache (clippy runs in the same build: `build_tests`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, exclusive_lock(self.root / ".template.lock"):  # another evaluator process may be building it now
            marker = self.template / f"warm-{self.toolchain.rustc_version.replace(' ', '_')}-{config_stamp()}"
            if marker.exists():
                return
            shutil.rmtree(self.template, ignore_errors=True)
            (self.template / "src").mkdir(parents=True)
            (self.template / "cargo-home").mkdir()
            (self.template / "cargo-home" / "config.toml").write_text(CARGO_CONFIG)
            (self.template / "Cargo.toml").write_text(CARGO_TOML.replace(f'name = "{CRATE_NAME}"', 'name = "rtf_template"'))
            (self.template / "src" / "lib.rs").write_text(
                "pub fn id(x: u8) -> u8 { x }\n#[cfg(test)]\nmod tests {\n" + TEST_PRELUDE
                + "    proptest! { #[test] fn p(x in any::<u8>()) { prop_assert_eq!(super::id(x), x); } }\n}\n")
            env = self._env(self.template, self.toolchain.sysroot)
            proc = subprocess.run(["cargo", "test", "--no-run", "--quiet"], cwd=self.template, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"could not build proptest offline from {REGISTRY} in {self.template}: "
                                   + proc.stderr.strip()[-800:])
            marker.write_text("ok\n")

    # ---- per sample -----------------------------------------------------------------------
    def prepare(self, sample_dir: Path, source: str, uid: int) -> None:
        """Write the crate (read-only to the sandbox) and a writable hard-linked target dir."""
        sample_dir.mkdir(parents=True)
        (sample_dir / "src").mkdir()
        (sample_dir / "src" / "lib.rs").write_text(source)
        (sample_dir / "Cargo.toml").write_text(CARGO_TOML)
        self.prepare_build_dirs(sample_dir, uid, self.template)

    def prepare_build_dirs(self, crate_dir: Path, uid: int, template: Path | None,
                           skip: Callable[[Path], bool] = lambda rel: False) -> None:
        """Around a written crate: its lock file, cargo home, toolchain mount point, the target linked from
        `template` (None: cargo starts from nothing), and the run and profile dirs; only these are the
        sandbox uid's, the sources stay root's."""
        os.chown(crate_dir, uid, uid)
        os.chmod(crate_dir, 0o700)
        if template is not None:
            shutil.copy2(template / "Cargo.lock", crate_dir / "Cargo.lock")
            os.chown(crate_dir / "Cargo.lock", uid, uid)
        home = crate_dir / "cargo-home"
        home.mkdir()
        (home / "config.toml").write_text(CARGO_CONFIG)
        (home / LINT_WRAPPER_FILE).write_text(LINT_WRAPPER)
        (home / LINT_WRAPPER_FILE).chmod(0o755)
        os.chown(home, uid, uid)
        (crate_dir / ".toolchain").mkdir()
        if template is not None:
            link_target(template / "target", crate_dir / "target", uid, skip)
        for sub in RUN_DIRS:
            (crate_dir / sub).mkdir()
            os.chown(crate_dir / sub, uid, uid)

    def write_source(self, sample_dir: Path, source: str) -> None:
        (sample_dir / "src" / "lib.rs").write_text(source)

    def _env(self, crate_dir: Path, toolchain_dir: Path) -> dict[str, str]:
        wrapper = crate_dir / "cargo-home" / LINT_WRAPPER_FILE
        return ({"RUSTC_WORKSPACE_WRAPPER": str(wrapper)} if wrapper.exists() else {}) | {
            "PATH": f"{toolchain_dir}/bin:/usr/bin:/bin",
            "HOME": str(crate_dir),
            "CARGO_HOME": str(crate_dir / "cargo-home") if (crate_dir / "cargo-home").exists() else str(self.template / "cargo-home"),
            "CARGO_TARGET_DIR": str(crate_dir / "target"),
            "RUSTC": f"{toolchain_dir}/bin/rustc",
            "CARGO_INCREMENTAL": "0",
            "CARGO_TERM_COLOR": "never",
            "LANG": "C.UTF-8",
        }

    def cargo(self, sample_dir: Path, args: list[str], *, uid: int, rustc_args: list[str] | None = None,
              extra_env: dict[str, str] | None = None, target: CargoTarget = STANDALONE) -> BuildResult:
        """Run cargo on the sample crate inside the sandbox, JSON messages on stdout."""
        limits = self.build_limits
        mount = sample_dir / ".toolchain"
        env = self._env(sample_dir, mount) | (extra_env or {})
        argv = ([str(mount / "bin" / "cargo")] + args + target.feature_args()
                + ["--message-format=json", "-j", str(self.cargo_jobs)])
        if rustc_args:
            argv += ["--", *rustc_args]
        run = run_sandboxed(argv, cwd=sample_dir, uid=uid, limits=limits, env=env,
                            binds=((self.toolchain.sysroot, mount),), writable=(sample_dir,))
        diags, exe, success, artifacts = parse_cargo_json(run.stdout, target)
        return BuildResult(run, success and run.ok, exe, diags, artifacts)

    def build_tests(self, sample_dir: Path, *, uid: int, coverage: bool, quiet: bool = False, lint: bool = False,
                    target: CargoTarget = STANDALONE) -> BuildResult:
        """Compile the crate's lib test binary (instrumented for coverage when asked); `--lib` only.

        One codegen unit: for a crate this small it builds about a third faster. `quiet`
        caps lints (the mutant schema's extra parentheses would warn by the dozen); a real
        crate's lints are capped at warn (an old `#![deny(warnings)]` meets today's lints).

        `lint` runs clippy in the same compile, the way `cargo clippy` does: clippy-driver wraps
        rustc for the crate's test build (`RUSTC_WORKSPACE_WRAPPER`, `LINT_WRAPPER`; dependencies
        stay plain rustc, so the cache is shared). One compile instead of two; the levels are
        `CargoTarget.clippy_levels`. Should the linted build still fail on clippy's account (a
        test's own `#![deny(clippy::...)]`, a clippy crash), it is rebuilt without clippy and the
        result says so.
        """
        flags = ["-C", "codegen-units=1"] + (["--cap-lints", "allow"] if quiet else target.lint_cap())
        env = {"RUSTC_BOOTSTRAP": "1"} if coverage else {}
        args = ["rustc", "--profile", "test", "--lib"]
        rustc_args = flags + (COVERAGE_FLAGS if coverage else [])
        if lint and not quiet and self.toolchain.has_clippy and (sample_dir / "cargo-home" / LINT_WRAPPER_FILE).exists():
            wrapper = {"RTF_CLIPPY_DRIVER": str(sample_dir / ".toolchain" / "bin" / "clippy-driver")}
            linted = self.cargo(sample_dir, args, rustc_args=rustc_args + target.clippy_levels(), uid=uid,
                                extra_env=env | wrapper, target=target)
            if linted.success or not linted.failed_on_clippy():
                linted.linted = True
                return linted
        return self.cargo(sample_dir, args, rustc_args=rustc_args, uid=uid, extra_env=env, target=target)

    def rustfmt(self, sample_dir: Path, *, uid: int, file: str = "src/lib.rs", edition: str = "2021") -> RunResult:
        """rustfmt formats a copy (to stdout): it succeeds only if rustc's parser accepts the file."""
        mount = sample_dir / ".toolchain"
        argv = [str(mount / "bin" / "rustfmt"), "--edition", edition, "--emit", "stdout", file]
        return run_sandboxed(argv, cwd=sample_dir, uid=uid, limits=self.build_limits,
                             env=self._env(sample_dir, mount), binds=((self.toolchain.sysroot, mount),), writable=(sample_dir,))

