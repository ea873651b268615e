"""The prepare stage: one sample becomes a crate on disk, ready for the build stages.

Standalone (no `crate` field): a throwaway crate with the function and its tests in
src/lib.rs (crate.assemble). In-crate: a copy of the sample's real crate with the tests
appended to the function's file (incrate), its dependencies linked from the crate's
template (crate_template). Either way the later stages see one `PreparedCrate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import incrate
from .crate import STANDALONE, CargoTarget, Workspace, assemble, refusal
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
    refused: str | None               # why the code is refused before any build, or None
    copy: incrate.CrateCopy | None = None


def prepare_standalone(ws: Workspace, sample: Sample, sample_dir: Path, uid: int) -> PreparedCrate:
    layout = assemble(sample.function_code, sample.generated_tests)
    ws.prepare(sample_dir, layout.source, uid)
    return PreparedCrate(STANDALONE, layout.function_lines, layout.tests_bytes, "src/lib.rs", layout.source, "2021",
                         None, refusal(sample.generated_tests) or refusal(sample.function_code))


def prepare_in_crate(ws: Workspace, templates: CrateTemplates, sample: Sample, rec: SampleRecord, sample_dir: Path,
                     uid: int) -> PreparedCrate | None:
    """Copy the sample's crate with its tests appended and dependencies linked; None when the sample ends here.

    Only the generated tests are refused for reading files: the function is the crate's own code.
    """
    located = incrate.locate(sample)
    if isinstance(located, str):
        record_input_problem(rec, located)
        return None
    copy = incrate.plan_copy(sample, *located)
    with timed(rec, "crate_template"):
        template = templates.get(copy, uid)
        if template.problem is not None and any(s.startswith("[dev-dependencies]") or ".dev-dependencies]" in s
                                                for s in copy.stripped):
            # the crate's own tests may need what was stripped: try once more without them
            copy = incrate.plan_copy(sample, *located, own_tests=False)
            template = templates.get(copy, uid)
    rec["crate"] = copy.record()
    if template.problem is not None or template.dir is None:
        record_crate_build(rec, template.problem or "no template")
        return None
    rec["crate"]["template"] = "built" if template.built_now else "reused"
    if template.built_now:
        rec["crate"]["template_seconds"] = template.seconds
    incrate.write_copy(copy, sample_dir, with_tests=True)
    (sample_dir / MODULE_CHECK_FILE).write_text(copy.module_source)
    ws.prepare_build_dirs(sample_dir, uid, template.dir, skip=own_artifacts(copy))
    return PreparedCrate(copy.target, copy.function_lines, copy.tests_bytes, MODULE_CHECK_FILE, copy.module_source,
                         copy.edition, copy.test_filter, refusal(sample.generated_tests), copy)


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
