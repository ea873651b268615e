"""Compile a crate's dependencies once (per crate, version, manifest, features, toolchain) and lend them to its samples.

The template of a crate is its pristine copy (no generated tests) built the way a sample
is built, kept in the cache (`cache_dir()/crates/<key>/`). It is built in the sandbox as
the sample's uid, in a staging directory of the run (the crate's build scripts are code
we did not write, and the cache under root's home is out of the uid's reach), then handed
to root, made read-only and renamed into the cache. A sample's target directory is hard
links to it (crate.link_target), so cargo finds the dependencies Fresh; the sample cannot
change them (the files are root's and not writable by any sandbox uid) and the crate's own
artifacts are not linked at all, so its own build always starts from its own sources.

A crate whose pristine copy does not build offline gives every sample of it the same
one-line problem; that is remembered for the run, and in the cache (`<key>.failed`) when it
is the crate's (a timeout on a loaded machine is not: the next run tries again), keyed by the
registry's state, so installing a package makes the next run try again.

Which copy of the crate is built (`CrateTemplates.find`): every feature that resolves offline
first, then only the features the function needs; within each, the crate's own tests kept,
then switched off step by step (incrate.OWN_TEST_LEVELS) when they need stripped
dev-dependencies. A dependency that does not compile with this toolchain takes the features
that pull it in out of the set, once, instead of failing the crate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.files import exclusive_lock, write_atomic, write_json_atomic

from .crate import RUN_DIRS, BuildResult, Workspace
from .incrate import OWN_TEST_LEVELS, CrateCopy, plan_copy, write_copy
from .samples import Sample
from .sandbox import Limits
from .toolchain import REGISTRY

MARKER = "template.json"


@dataclass
class CrateTemplate:
    """The template a sample links its target to, or why the crate does not build offline."""

    dir: Path | None
    problem: str | None = None
    built_now: bool = False                 # this sample paid for the build
    seconds: float = 0.0                    # how long the template's build took (when built_now)
    lasting: bool = False                   # the problem is the crate's (resolution, compile errors), not the run's (time, output)


def first_error(build: BuildResult, limits: Limits, limit: int = 300) -> str:
    """The first error cargo or rustc reported (or the harness's reason for stopping it), on one line."""
    problem = build.run.problem(limits)
    if problem:
        return problem
    for line in build.run.stdout.splitlines():
        if line.startswith("{") and '"level":"error"' in line.replace(" ", ""):
            try:
                message = json.loads(line)["message"]
            except (json.JSONDecodeError, KeyError):
                continue
            spans = [s for s in message.get("spans", []) if s.get("is_primary")]
            where = f" at {spans[0]['file_name']}:{spans[0]['line_start']}" if spans else ""
            return (message.get("message", "") + where)[:limit]
    errors = [ln.strip() for ln in build.run.stderr.splitlines() if ln.strip().startswith("error")]
    text = errors[0] if errors else (build.run.stderr.strip().splitlines() or ["no output"])[-1]
    return text[:limit]


def failure_is_lasting(build: BuildResult, limits: Limits) -> bool:
    """Whether cargo or rustc itself said why the build failed (a resolution or compile error), so the next run
    would fail the same way. A build stopped by the harness (timeout), or killed from outside without a word from
    cargo (a process killed by the machine), is not: remembering it would fail the crate in every later run."""
    if build.run.problem(limits) is not None:
        return False
    return bool(build.errors()) or any(ln.strip().startswith("error") for ln in build.run.stderr.splitlines())


def dependents(lock_file: Path, name: str) -> set[str]:
    """Packages of a Cargo.lock that depend on `name`, directly or not (a dev-dependency built on the crate)."""
    try:
        packages = tomllib.loads(lock_file.read_text()).get("package", [])
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    uses = {p["name"]: {d.split(" ")[0] for d in p.get("dependencies", [])} for p in packages}
    found: set[str] = set()
    while new := {pkg for pkg, deps in uses.items() if pkg not in found and pkg != name and deps & (found | {name})}:
        found |= new
    return found


def own_artifacts(copy: CrateCopy, template_dir: Path | None = None) -> Callable[[Path], bool]:
    """Whether a template target path is the crate's own (its fingerprint, build script dir, rlib, test binary)
    or a dependent's: cargo rebuilds those after the crate, and they must not be the template's read-only links."""
    crate_names = {copy.name} | (dependents(template_dir / "Cargo.lock", copy.name) if template_dir else set())
    names = "|".join(re.escape(n) for c in sorted(crate_names) for n in {c, c.replace("-", "_")} | {copy.lib_name})
    pattern = re.compile(rf"^(lib)?({names})-[0-9a-f]{{16}}(\..+)?$")
    return lambda rel: bool(pattern.match(rel.name))


def _hand_to_root(top: Path, uid: int) -> str | None:
    """Every file and directory under `top` becomes root's, readable by all and writable by no one else.

    Only what the build uid or we wrote is touched: anything else, or a root file with another
    hard link (the build may have linked to a file outside), is refused, so that the chown and
    chmod here can never reach a file outside the template. Returns why it refused, or None.
    """
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames, ""]:
            path = Path(dirpath) / name if name else Path(dirpath)
            st = os.lstat(path)
            if st.st_uid not in (0, uid) or (st.st_uid == 0 and stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
                return f"the build left {path.relative_to(top)}, which it did not write (owner {st.st_uid}, {st.st_nlink} links)"
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames, ""]:
            path = Path(dirpath) / name if name else Path(dirpath)
            os.lchown(path, 0, 0)
            if not path.is_symlink():
                path.chmod(os.lstat(path).st_mode & 0o755)
    return None


class CrateTemplates:
    """The crate templates of one evaluation run (builds under a per-key lock, shared across processes)."""

    def __init__(self, ws: Workspace, staging: Path, *, coverage: bool):
        self.ws = ws
        self.root = ws.root / "crates"
        self.staging = staging
        self.coverage = coverage
        self.toolchain = ws.toolchain.rustc_version
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def find(self, sample: Sample, located: tuple[Path, str], uid: int) -> tuple[CrateCopy, CrateTemplate]:
        """The first copy of the sample's crate whose template builds (module docstring), and that template;
        else the last copy tried and its problem."""
        copy, template = None, None
        for all_features in (True, False):
            without: frozenset[str] = frozenset()
            levels = list(OWN_TEST_LEVELS)
            while levels:
                copy = plan_copy(sample, *located, own_tests=levels[0], all_features=all_features, without=without)
                template = self.get(copy, uid)
                if template.problem is None:
                    return copy, template
                broken = broken_dependency(template.problem)
                if broken is not None:
                    if not all_features or broken in without:
                        break  # a dependency the function itself needs: no level of own tests helps
                    without |= {broken}
                    continue
                needs_stripped = any(s.startswith("[dev-dependencies]") or ".dev-dependencies]" in s for s in copy.stripped)
                levels = levels[1:] if needs_stripped else []
            if copy is not None and copy.features == plan_copy(sample, *located, all_features=False).features:
                break  # all features were the needed ones: nothing new to try
        assert copy is not None and template is not None
        return copy, template

    def get(self, copy: CrateCopy, uid: int) -> CrateTemplate:
        """The crate's template, built now (as `uid`, sandboxed) unless the cache already has it."""
        key = copy.template_key(self.toolchain, self.coverage)
        final = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / f".{key}.lock"):  # one build per key, across threads and evaluator processes
            failed_file = self.root / f"{key}-{registry_stamp()}.failed"  # a new registry may resolve it
            with self._lock:
                failed = self._failed.get(key)
            if failed is None and failed_file.is_file():
                failed = failed_file.read_text()
            if failed is not None:
                return CrateTemplate(None, failed)
            if (final / MARKER).is_file():
                return CrateTemplate(final)
            template = self._build(copy, key, final, uid)
            if template.problem is not None:
                with self._lock:
                    self._failed[key] = template.problem
                if template.lasting:  # a compile error, not a timeout on a loaded machine: the next run gets it too
                    write_atomic(failed_file, template.problem)
            return template

    def _build(self, copy: CrateCopy, key: str, final: Path, uid: int) -> CrateTemplate:
        start = time.monotonic()
        stage = self.staging / key
        shutil.rmtree(stage, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        os.chmod(self.staging, 0o711)
        write_copy(copy, stage, with_tests=False)
        self.ws.prepare_build_dirs(stage, uid, None)
        build = self.ws.build_tests(stage, uid=uid, coverage=self.coverage, target=copy.target)
        if not build.success:
            shutil.rmtree(stage, ignore_errors=True)
            return CrateTemplate(None, f"the crate {copy.name} {copy.version} does not build offline as it is "
                                       f"(before the generated tests were added): {first_error(build, self.ws.build_limits)}",
                                 lasting=failure_is_lasting(build, self.ws.build_limits))
        for sub in (".toolchain", *RUN_DIRS):
            shutil.rmtree(stage / sub, ignore_errors=True)
        refused = _hand_to_root(stage, uid)
        if refused is not None:
            shutil.rmtree(stage, ignore_errors=True)
            return CrateTemplate(None, f"the template of {copy.name} {copy.version} was refused: {refused}")
        seconds = round(time.monotonic() - start, 3)
        write_json_atomic(stage / MARKER, {"crate": copy.name, "version": copy.version, "features": list(copy.features),
                                           "toolchain": self.toolchain, "coverage": self.coverage,
                                           "compiled": build.units(fresh=False), "seconds": seconds})
        shutil.rmtree(final, ignore_errors=True)
        shutil.move(stage, final)  # a rename: the staging area and the cache share a filesystem for the hard links
        return CrateTemplate(final, built_now=True, seconds=seconds)


_REGISTRY_CRATE = re.compile(re.escape(str(REGISTRY)) + r"/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/")


def broken_dependency(problem: str) -> str | None:
    """The registry crate a template's first error is in (a dependency that does not compile here), or None."""
    m = _REGISTRY_CRATE.search(problem)
    return m.group(1) if m else None


def registry_stamp() -> str:
    """Changes when a crate is added to or removed from the registry (its directory's mtime)."""
    try:
        return str(REGISTRY.stat().st_mtime_ns)
    except OSError:
        return "none"
