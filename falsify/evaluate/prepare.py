"""The prepare stage: one sample becomes a crate on disk, ready for the build stages.

Standalone (no `crate` field): a throwaway crate with the function and its tests in
src/lib.rs (crate.assemble). In-crate: a copy of the sample's real crate with the tests
appended to the function's file (incrate), its dependencies linked from the crate's
template (crate_template). Either way the later stages see one `PreparedCrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

from . import forbidden, incrate
from .crate import STANDALONE, CargoTarget, Layout, Workspace, assemble
from .crate_template import CrateTemplates, own_artifacts
from .mutation_operators import HELPER
from .mutation_runner import SchemaPlace
from .samples import Sample
from .verdict import SampleRecord, record_crate_build, record_input_problem, timed

MODULE_CHECK_FILE = ".rtf-generated-module.rs"  # the generated module alone, for the parse check


@dataclass(frozen=True)
class PreparedCrate:
    """What the build, run and measure stages need to know about a sample's crate."""

    target: CargoTarget
    function_lines: tuple[int, int]   # in target.file
    tests_bytes: tuple[int, int]      # the generated tests' bytes in target.file (clippy counts warnings there)
    parse_file: str                   # the file rustfmt must accept (relative to the sample dir)
    parse_source: str                 # ... and its text (tree-sitter's position of a syntax error)
    edition: str
    test_filter: str | None           # libtest filter: only these tests are the sample's
    source_refusal: str | None        # why the source is refused before any build (forbidden.refusal), or None
    copy: incrate.CrateCopy | None = None
    expanded_check: Callable[[], str | None] | None = None  # forbidden.expanded_refusal, when the tests need it

    @cached_property
    def refused(self) -> str | None:
        """Why the code is refused before any build: the source check, then (run only when asked) the expanded one."""
        if self.source_refusal is not None or self.expanded_check is None:
            return self.source_refusal
        return self.expanded_check()


def prepare_standalone(ws: Workspace, sample: Sample, sample_dir: Path, uid: int) -> PreparedCrate:
    layout = assemble(sample.function_code, sample.generated_tests)
    ws.prepare(sample_dir, layout.source, uid)
    expand = partial(expand_standalone, ws, layout, sample_dir, uid) if forbidden.needs_expansion(sample.generated_tests) else None
    return PreparedCrate(STANDALONE, layout.function_lines, layout.tests_bytes, "src/lib.rs", layout.source, "2021",
                         None, forbidden.refusal(sample.generated_tests, sample.function_code), expanded_check=expand)


def expand_standalone(ws: Workspace, layout: Layout, sample_dir: Path, uid: int) -> str | None:
    """The expanded check of a standalone crate: lib.rs gets a marker before the tests while rustc expands it."""
    start = len(layout.source.encode()[:layout.tests_bytes[0]].decode())
    ws.write_source(sample_dir, layout.source[:start] + forbidden.TESTS_MARKER + "\n" + layout.source[start:])
    try:
        return forbidden.expanded_refusal(ws, sample_dir, uid, STANDALONE, forbidden.after_marker)
    finally:
        ws.write_source(sample_dir, layout.source)


def prepare_in_crate(ws: Workspace, templates: CrateTemplates, sample: Sample, rec: SampleRecord, sample_dir: Path,
                     uid: int) -> PreparedCrate | None:
    """Copy the sample's crate with its tests appended and dependencies linked; None when the sample ends here.

    Only the generated tests are refused (forbidden.py): the function is the crate's own code.
    """
    located = incrate.locate(sample)
    if isinstance(located, str):
        record_input_problem(rec, located)
        return None
    with timed(rec, "crate_template"):
        copy, template = templates.find(sample, located, uid)
    rec["crate"] = copy.record()
    if template.problem is not None or template.dir is None:
        record_crate_build(rec, template.problem or "no template")
        return None
    rec["crate"]["template"] = "built" if template.built_now else "reused"
    if template.built_now:
        rec["crate"]["template_seconds"] = template.seconds
    incrate.write_copy(copy, sample_dir, with_tests=True)
    (sample_dir / MODULE_CHECK_FILE).write_text(copy.module_source)
    ws.prepare_build_dirs(sample_dir, uid, template.dir, skip=own_artifacts(copy, template.dir))
    expand = (partial(forbidden.expanded_refusal, ws, sample_dir, uid, copy.target, forbidden.module_named(copy.module))
              if forbidden.needs_expansion(sample.generated_tests) else None)
    return PreparedCrate(copy.target, copy.function_lines, copy.tests_bytes, MODULE_CHECK_FILE, copy.module_source,
                         copy.edition, copy.test_filter, forbidden.refusal(sample.generated_tests), copy,
                         expand)


def in_crate_place(copy: incrate.CrateCopy, sample_dir: Path) -> SchemaPlace:
    """Mutation in place: the function's variants go into its own file of the copy, the schema helper into the
    crate root (the switches call `crate::__rtf_mutant()`), and only the generated module's tests run."""
    root_text = (sample_dir / copy.lib_file).read_text() if copy.lib_file != copy.file else None

    def write(code: str, with_helper: bool) -> str:
        source = copy.with_function(code)
        helper = "\n" + HELPER if with_helper else ""
        if root_text is None:
            source += helper
        else:
            incrate.write_inside(sample_dir, copy.lib_file, root_text + helper)
        incrate.write_inside(sample_dir, copy.file, source)
        return source

    return SchemaPlace(write, copy.target, copy.test_filter)
