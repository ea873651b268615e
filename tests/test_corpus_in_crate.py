"""Corpus records are evaluable inside their crate: location, verbatim span, tests as an appended module.

The last test does what the evaluator does (append each record's `in_crate_tests` as a
`#[cfg(test)] mod` to the function's file, `cargo test` offline) on a crate with no
dependencies, so it proves the rewritten use lines and helpers compile and pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from falsify.evaluate.libtest_report import declared_test_names
from trainer.corpus import splits
from trainer.corpus.build import build_corpus
from trainer.corpus.in_crate import CrateSourceError, module_path, verbatim_function
from trainer.data import SYSTEM_PROMPT, render_prompt

HELPY_LIB = r'''// A crate macro named like a std one: in the crate, an integration test's `use std::concat;` is ambiguous with it.
#[allow(unused_macros)]
macro_rules! concat {
    ($a:expr, $b:expr) => {
        $a + $b
    };
}

pub mod shapes;

pub fn double(x: u32) -> u32 {
    x * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> u32 {
        21
    }

    #[test]
    fn doubles_setup() {
        assert_eq!(double(setup()), 42);
    }
}
'''

HELPY_SHAPES = r'''use std::fmt;

pub struct Square {
    pub side: u32,
}

impl Square {
    pub fn area(&self) -> u32 {
        self.side * self.side
    }
}

impl fmt::Display for Square {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "square {}", self.side)
    }
}

pub mod inner {
    pub fn triple(x: u32) -> u32 {
        x * 3
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn triples() {
            assert_eq!(triple(2), super::super::Square { side: 6 }.side);
        }
    }
}
'''

HELPY_INTEGRATION = r'''use helpy::shapes::{self, Square};

fn square(side: u32) -> Square {
    Square { side }
}

#[test]
fn area_of_three() {
    assert_eq!(square(3).area(), 9);
    assert_eq!(helpy::double(2), 4);
    assert_eq!(format!("{}", shapes::Square { side: 1 }), "square 1");
}
'''

# Binds `Square` to something else than tests/integration.rs does: one flat module could not hold both files' tests.
HELPY_TILES = r'''use helpy::shapes::Square as Tile;
use std::collections::BTreeMap as Square;

#[test]
fn areas_by_side() {
    let mut areas = Square::new();
    areas.insert(2, Tile { side: 2 }.area());
    assert_eq!(areas[&2], 4);
}
'''

# A test file for another platform: its tests must stay under its cfg (here nothing it calls exists).
HELPY_ELSEWHERE = r'''#![cfg(feature = "on-another-platform")]
use helpy::shapes::Square;

#[test]
fn area_on_another_platform() {
    assert_eq!(Square { side: 5 }.area(), helpy::only_there());
}
'''

HELPY_CONCAT = r'''use std::concat;

#[test]
fn doubles_a_concatenated_number() {
    let n: u32 = concat!("2", "1").parse().unwrap();
    assert_eq!(helpy::double(n), 42);
}
'''


@pytest.fixture
def helpy(tmp_path) -> Path:
    """A registry with one crate whose tests sit in three places: the function's own file,
    a nested module of another file, and tests/ (an integration test with a helper)."""
    crate = tmp_path / "registry" / "helpy-0.1.0"
    for rel, text in {"Cargo.toml": '[package]\nname = "helpy"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
                      "src/lib.rs": HELPY_LIB, "src/shapes.rs": HELPY_SHAPES, "tests/integration.rs": HELPY_INTEGRATION,
                      "tests/again.rs": "#[test]\nfn area_of_three() {\n    assert_eq!(helpy::shapes::Square { side: 3 }.area(), 9);\n}\n",
                      "tests/tiles.rs": HELPY_TILES,
                      "tests/elsewhere.rs": HELPY_ELSEWHERE,
                      "tests/concat.rs": HELPY_CONCAT,
                      }.items():
        (crate / rel).parent.mkdir(parents=True, exist_ok=True)
        (crate / rel).write_text(text, encoding="utf-8")
    return crate


def records_of(helpy: Path, out: Path, monkeypatch) -> dict[str, dict]:
    monkeypatch.setattr(splits, "HOLDOUT_PER_CATEGORY", 0)  # no crate held out: every record in a split
    build_corpus(helpy.parent, out, crates="all")
    recs = [json.loads(line) for name in ("train", "validation", "test")
            for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["metadata"]["function"]: r for r in recs}


def test_records_carry_crate_dir_file_and_a_span_that_is_the_function(helpy, tmp_path, monkeypatch):
    recs = records_of(helpy, tmp_path / "out", monkeypatch)
    assert set(recs) == {"double", "Square::area", "triple"}
    for rec in recs.values():
        meta = rec["metadata"]
        assert meta["crate_dir"] == str(helpy)
        data = (Path(meta["crate_dir"]) / meta["file"]).read_bytes()
        span = meta["function_span"]
        text = data[span["start_byte"]:span["end_byte"]].decode()
        assert text.startswith("pub fn ") and text.endswith("}")
        assert data.decode().splitlines()[span["start_line"] - 1].strip().startswith(text.splitlines()[0])
        assert data.decode().splitlines()[span["end_line"] - 1].strip() == "}"
        assert text.split() == rec["input"].split()  # the same tokens; only the indentation differs
        assert verbatim_function(meta, rec["input"]) == text
    area = recs["Square::area"]
    assert area["input"] != verbatim_function(area["metadata"], area["input"])  # a method: `input` is dedented
    assert "    }" in verbatim_function(area["metadata"], area["input"])


def test_verbatim_function_refuses_a_span_that_no_longer_holds_the_function(helpy, tmp_path, monkeypatch):
    meta = records_of(helpy, tmp_path / "out", monkeypatch)["double"]["metadata"]
    with pytest.raises(CrateSourceError, match="does not hold the record's function"):
        verbatim_function(meta, "pub fn other() {}")
    with pytest.raises(CrateSourceError, match="function_span .* is outside"):
        verbatim_function({**meta, "function_span": {**meta["function_span"], "end_byte": 10**6}}, "x")
    with pytest.raises(CrateSourceError, match="cannot read crate file"):
        verbatim_function({**meta, "file": "src/gone.rs"}, "x")


def test_in_crate_tests_bring_the_use_lines_and_helpers_they_need(helpy, tmp_path, monkeypatch):
    recs = records_of(helpy, tmp_path / "out", monkeypatch)
    double = recs["double"]["metadata"]["in_crate_tests"]
    assert double.startswith("use super::*;")  # the tests' module sat in the function's own file
    assert "fn setup() -> u32" in double and "fn doubles_setup()" in double  # its helper travels with it
    assert "crate::double(2)" in double and "helpy::" not in double  # an integration test names the crate
    # `use std::concat;` would be ambiguous with the crate's own `macro_rules! concat`: the macro is called by path
    assert "use std::concat;" not in double and 'std::concat!("2", "1")' in double
    area = recs["Square::area"]["metadata"]["in_crate_tests"]
    assert area.splitlines()[:2] == ["use crate::shapes;", "use crate::shapes::Square;"]  # `use helpy::shapes::{self, Square}`
    assert "fn square(side: u32) -> Square" in area
    assert recs["Square::area"]["output"].count("fn area_of_three()") == 2  # tests/again.rs and tests/integration.rs ...
    assert area.count("fn area_of_three()") == 1 and "fn area_of_three_2()" in area  # one module, one name each
    # tests/tiles.rs binds `Square` to a BTreeMap: its tests get a module of their own, where that binding holds
    assert "use crate::shapes::Square;" in area.split("mod from_tiles {")[0]
    nested = area.split("mod from_tiles {\nuse super::*;\n")[1]
    assert "use std::collections::BTreeMap as Square;" in nested and "fn areas_by_side()" in nested
    assert "fn areas_by_side()" not in area.split("mod from_tiles {")[0]
    assert '#[cfg(feature = "on-another-platform")]\nmod from_elsewhere {\nuse super::*;' in area
    triple = recs["triple"]["metadata"]["in_crate_tests"]
    # The tests sat in shapes::inner::tests; the appended module sits in shapes.
    assert triple.startswith("use crate::shapes::inner::*;")
    assert "super::Square { side: 6 }" in triple
    assert recs["double"]["output"].startswith("#[test]")  # the training answer is unchanged


def test_module_path_of_crate_files():
    assert module_path("src/lib.rs") == [] and module_path("src/main.rs") == []
    assert module_path("src/a.rs") == ["a"] and module_path("src/a/mod.rs") == ["a"] and module_path("src/a/b.rs") == ["a", "b"]
    assert module_path("tests/x.rs") is None and module_path("src/bin/tool.rs") is None


def compile_and_run_appended(crate: Path, recs: dict[str, dict], tmp_path: Path, *, own_tests: bool = True) -> None:
    """What the evaluator does to each record: its `in_crate_tests` appended to the function's file as a
    `#[cfg(test)] mod`; then `cargo test` offline must build them all and pass every one. `own_tests=False`
    cuts the files' own test modules, as the evaluator switches them off when they need a stripped dev-dependency."""
    work = tmp_path / "work"
    shutil.copytree(crate, work)
    for n, rec in enumerate(sorted(recs.values(), key=lambda r: r["metadata"]["id"])):
        meta = rec["metadata"]
        target = work / meta["file"]
        assert verbatim_function({**meta, "crate_dir": str(work)}, rec["input"]) in target.read_text()
        if not own_tests:
            target.write_text(target.read_text().split("\n#[cfg(test)]")[0])
        body = "\n".join("    " + line for line in meta["in_crate_tests"].splitlines())
        target.write_text(target.read_text() + f"\n#[cfg(test)]\nmod rtf_generated_{n} {{\n{body}\n}}\n")
    manifest = work / "Cargo.toml"
    manifest.write_text(manifest.read_text().split("[dev-dependencies]")[0])  # as the evaluator strips them offline
    proc = subprocess.run(["cargo", "test", "--offline", "--lib", "-q", "rtf_generated"], cwd=work, capture_output=True,
                          text=True, timeout=240, env={**__import__("os").environ, "CARGO_TARGET_DIR": str(tmp_path / "target")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = sum(len(declared_test_names(r["metadata"]["in_crate_tests"])) for r in recs.values())  # not those under a cfg
    assert f"{expected} passed" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_appended_reference_modules_compile_and_pass_in_the_crate(helpy, tmp_path, monkeypatch):
    if shutil.which("cargo") is None:
        pytest.skip("cargo not installed")
    compile_and_run_appended(helpy, records_of(helpy, tmp_path / "out", monkeypatch), tmp_path)


GAPPY_LIB = r'''pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

pub fn sub(a: u32, b: u32) -> u32 {
    a - b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(1, 2), 3);
    }

    trait Named {
        fn name(&self) -> &'static str;
    }

    struct Entry;

    impl<'a> Named for &'a Entry {
        fn name(&self) -> &'static str {
            "entry"
        }
    }

    #[test]
    fn adds_named_entries() {
        assert_eq!((&Entry).name(), "entry");
        assert_eq!(add(0, 0), 0);
    }

    #[test]
    fn adds_under_loom() {
        loom::model(|| assert_eq!(add(1, 1), 2));
    }
}

#[cfg(test)]
mod loom_tests {
    use super::*;
    use loom::thread;

    #[test]
    fn subs() {
        thread::spawn(|| assert_eq!(sub(3, 1), 2));
    }
}

#[cfg(test)]
mod ready_tests {
    use super::*;
    use std::future;

    macro_rules! future {
        () => {
            future::ready(add(2, 2))
        };
    }

    #[test]
    fn adds_in_a_future() {
        let _ready = future!();
        assert_eq!(add(2, 2), 4);
    }
}
'''

GAPPY_SUPPORT_USER = r'''mod support {
    pub mod helpers;
}

use support::helpers::three;

#[test]
fn adds_three() {
    assert_eq!(gappy::add(three(), 0), 3);
}

mod nested {
    use super::*;

    #[test]
    fn adds_three_nested() {
        assert_eq!(gappy::add(three(), 1), 4);
    }
}
'''


@pytest.fixture
def gappy(tmp_path) -> Path:
    """A crate whose tests need what the machine or the appended module lacks: a dev-dependency the
    registry does not have (loom), and a helper in a module file of tests/ (tests/support/helpers.rs)."""
    crate = tmp_path / "registry" / "gappy-0.1.0"
    for rel, text in {"Cargo.toml": '[package]\nname = "gappy"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                    '[dev-dependencies]\nloom = "0.5"\n',
                      "src/lib.rs": GAPPY_LIB, "tests/support_user.rs": GAPPY_SUPPORT_USER,
                      "tests/support/helpers.rs": "pub fn three() -> u32 {\n    3\n}\n",
                      "tests/nested.rs": "use std::collections::HashSet;\n\nmod inner {\n    use super::*;\n\n    #[test]\n"
                                         "    fn adds_inside() {\n        let sums: HashSet<u32> = [gappy::add(1, 1)].into();\n"
                                         "        assert!(sums.contains(&2));\n    }\n}\n"}.items():
        (crate / rel).parent.mkdir(parents=True, exist_ok=True)
        (crate / rel).write_text(text, encoding="utf-8")
    return crate


def test_tests_that_cannot_build_in_their_crate_here_are_left_out_and_counted(gappy, tmp_path, monkeypatch):
    recs = records_of(gappy, tmp_path / "out", monkeypatch)
    assert set(recs) == {"add"}  # sub's only test runs under loom: no record, counted
    tests = recs["add"]["metadata"]["in_crate_tests"]
    assert "fn adds()" in tests and "fn adds_in_a_future()" in tests
    assert "loom" not in tests and "adds_three" not in tests and "loom" not in recs["add"]["output"]
    assert "use std::future;" in tests  # a helper macro named `future` does not shadow the module's import
    assert "impl<'a> Named for &'a Entry" in tests and "trait Named" in tests  # an impl for `&Entry` travels with Entry
    assert "use std::collections::HashSet;" in tests and "fn adds_inside()" in tests  # `use super::*;` of a nested module
    report = json.loads((tmp_path / "out" / "corpus_report.json").read_text())
    assert report["skipped_tests"] == {"needs_local_module": 2, "needs_unpackaged_crate": 2}  # adds_three and its nested twin
    assert report["skipped_functions"]["tests_not_buildable_here"] == 1
    if shutil.which("cargo") is not None:
        compile_and_run_appended(gappy, recs, tmp_path, own_tests=False)


def test_crate_context_has_the_use_lines_and_the_types_the_function_names(helpy, tmp_path, monkeypatch):
    recs = records_of(helpy, tmp_path / "out", monkeypatch)
    area = recs["Square::area"]
    assert area["metadata"]["crate_context"] == "use std::fmt;\n\npub struct Square {\n    pub side: u32,\n}"
    assert recs["double"]["metadata"]["crate_context"] == ""  # lib.rs has no use lines, double names no type of it
    old = (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
           "Generate tests for this function:\n```rust\nfn f() {}\n```<|im_end|>\n<|im_start|>assistant\n")
    assert render_prompt("fn f() {}") == old == render_prompt("fn f() {}", "")  # records without context: unchanged
    shown = render_prompt(area["input"], area["metadata"]["crate_context"])
    assert shown.index(area["input"]) < shown.index("pub struct Square") < shown.index("<|im_start|>assistant")
