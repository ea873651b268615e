"""The report evaluates in-crate by default: the sample writers give samples with `crate`,
`function_code` verbatim from the crate file and tests that bring their `use` lines;
`--standalone` gives the earlier shape. No training and no real evaluator run here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from falsify.report import cli as report
from falsify.report import pipeline
from tests.test_corpus_in_crate import helpy, records_of  # noqa: F401  (helpy is a fixture)
from tests.test_report import card_of, fake_evaluator, write_run  # noqa: F401  (fake_evaluator is a fixture)
from trainer.corpus.in_crate import with_test_imports

OLD_SHAPE = {"id", "function_code", "generated_tests", "reference_tests", "metadata"}


def corpus_holdout(helpy: Path, tmp_path: Path, monkeypatch) -> tuple[Path, list[dict]]:  # noqa: F811
    """A holdout file of the fixture crate's three records, as the corpus builder wrote them."""
    recs = sorted(records_of(helpy, tmp_path / "corpus", monkeypatch).values(), key=lambda r: r["metadata"]["id"])
    holdout = tmp_path / "corpus" / "holdout.jsonl"
    holdout.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs), encoding="utf-8")
    return holdout, recs


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_reference_samples_are_in_crate_with_verbatim_code_and_their_use_lines(helpy, tmp_path, monkeypatch):  # noqa: F811
    holdout, recs = corpus_holdout(helpy, tmp_path, monkeypatch)
    out = tmp_path / "ref" / "generated.jsonl"
    pipeline.write_reference_samples(holdout, out, limit=10)
    rows = read_rows(out)
    assert len(rows) == 3
    for row, rec in zip(rows, recs):
        meta = rec["metadata"]
        assert row["crate"] == {"dir": str(helpy), "file": meta["file"]}
        file_text = (helpy / meta["file"]).read_text(encoding="utf-8")
        assert row["function_code"] in file_text and row["function_code"].split() == rec["input"].split()
        assert row["generated_tests"] == meta["in_crate_tests"] and row["generated_tests"].startswith("use ")
        assert row["reference_tests"] == rec["output"]
    area = next(r for r in rows if r["id"].endswith("Square::area#0"))
    assert "\n        self.side * self.side\n    }" in area["function_code"]  # verbatim, not dedented
    assert "use crate::shapes::Square;" in area["generated_tests"]


def test_standalone_reference_samples_have_the_old_shape(helpy, tmp_path, monkeypatch):  # noqa: F811
    holdout, recs = corpus_holdout(helpy, tmp_path, monkeypatch)
    out = tmp_path / "ref" / "generated.jsonl"
    pipeline.write_reference_samples(holdout, out, limit=10, standalone=True)
    for row, rec in zip(read_rows(out), recs):
        assert set(row) == OLD_SHAPE
        assert (row["function_code"], row["generated_tests"], row["reference_tests"]) == (rec["input"], rec["output"], rec["output"])


def test_a_changed_crate_file_gives_a_sample_the_evaluator_can_reject(helpy, tmp_path, monkeypatch, caplog):  # noqa: F811
    holdout, recs = corpus_holdout(helpy, tmp_path, monkeypatch)
    (helpy / "src" / "lib.rs").write_text("// rewritten\n", encoding="utf-8")
    out = tmp_path / "ref" / "generated.jsonl"
    with caplog.at_level(logging.WARNING, logger="trainer"):
        pipeline.write_reference_samples(holdout, out, limit=10)
    double = next(r for r in read_rows(out) if r["id"].endswith("::double#0"))
    assert double["crate"]["file"] == "src/lib.rs" and double["function_code"] == recs[0]["input"]
    assert "src/lib.rs" in caplog.text and "metadata.function_span" in caplog.text


def test_model_plan_is_in_crate_by_default_and_standalone_on_request(helpy, tmp_path, monkeypatch):  # noqa: F811
    holdout, _ = corpus_holdout(helpy, tmp_path, monkeypatch)
    exp = tmp_path / "experiments" / "fake"
    default = pipeline.model_plan(exp, limit=3, tiers=[], holdout=holdout)
    generate = next(s for s in default.stages if s.name == "generate")
    assert not default.standalone and generate.command[generate.command.index("--input") + 1] == str(holdout)
    assert default.eval_dir == exp / "evaluation"

    plan = pipeline.model_plan(exp, limit=3, tiers=[], holdout=holdout, standalone=True)
    assert plan.standalone and plan.eval_dir == exp / "evaluation-standalone"
    stage = next(s for s in plan.stages if s.name == "standalone-holdout")
    generate = next(s for s in plan.stages if s.name == "generate")
    functions = Path(generate.command[generate.command.index("--input") + 1])
    assert "standalone-holdout" in generate.needs and functions.parent == plan.eval_dir
    stage.action()
    stripped = read_rows(functions)
    assert len(stripped) == 3 and not any({"crate_dir", "function_span"} & set(r["metadata"]) for r in stripped)
    assert [r["input"] for r in stripped] == [r["input"] for r in read_rows(holdout)]


def test_generator_reads_corpus_records_as_in_crate_samples(helpy, tmp_path, monkeypatch):  # noqa: F811
    from trainer.generate import read_functions

    holdout, recs = corpus_holdout(helpy, tmp_path, monkeypatch)
    rows = read_functions(holdout)
    for row, rec in zip(rows, recs):
        assert row["prompt_code"] == rec["input"]  # the model sees what it was trained on
        assert row["crate"] == {"dir": str(helpy), "file": rec["metadata"]["file"]}
        assert row["function_code"] in (helpy / rec["metadata"]["file"]).read_text(encoding="utf-8")
    pipeline.write_standalone_holdout(holdout, tmp_path / "standalone.jsonl")
    for row, rec in zip(read_functions(tmp_path / "standalone.jsonl"), recs):
        assert "crate" not in row and row["function_code"] == rec["input"]


def test_generated_tests_get_the_imports_a_test_module_has():
    assert with_test_imports("#[test]\nfn t() {}") == "use super::*;\n\n#[test]\nfn t() {}"
    assert with_test_imports("proptest! { #[test] fn p(x in 0u8..3) { prop_assert!(x < 3); } }").startswith(
        "use super::*;\nuse proptest::prelude::*;\n\n")
    assert with_test_imports("use super::*;\n#[test]\nfn t() {}") == "use super::*;\n#[test]\nfn t() {}"
    assert with_test_imports("  ") == "  "  # nothing generated stays nothing, for the evaluator to report


def test_report_standalone_flag_writes_its_own_scorecard_from_old_shape_samples(helpy, tmp_path, monkeypatch,  # noqa: F811
                                                                               fake_evaluator):  # noqa: F811
    holdout, _ = corpus_holdout(helpy, tmp_path, monkeypatch)
    exp = write_run(tmp_path / "experiments" / "fake")
    out = tmp_path / "reports"
    args = ["--generator", "reference", "--experiment", str(exp), "--out", str(out), "--holdout", str(holdout)]
    assert report.main([*args, "--standalone"]) == 0
    rows = read_rows(exp / "evaluation-reference-standalone" / "generated.jsonl")
    assert rows and all(set(r) == OLD_SHAPE for r in rows)
    assert card_of({"out": out}, "reference/standalone")["generator"] == "reference"
    assert report.main(args) == 0  # the default: in-crate samples, the scorecard in its usual place
    assert all("crate" in r for r in read_rows(exp / "evaluation-reference" / "generated.jsonl"))
    assert (out / "reference" / "scorecard.json").is_file()
