"""`python -m falsify.report` on fake evidence files: outputs, baseline regressions, atomic writes, bad input.

The fakes are real files in the real formats (a metric store written by trainer.monitor.store,
a YAML lock, safetensors-named adapter files, evaluator and plugin JSON), so the evidence
readers are exercised as in a real run; only the numbers are made up. No training runs here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from falsify.report import cli as report
from falsify.report import pipeline, scorecard
from falsify.report.evidence import ReportError
from falsify.report.rubric import RUBRIC_VERSION
from tests.test_rubric import good_summary
from trainer.experiment import sha256_of_dir
from trainer.monitor.store import MetricStore

HOLDOUT = [
    {"input": "pub fn add(a: i32, b: i32) -> i32 { a + b }", "output": "#[test]\nfn adds_two() { assert_eq!(add(1, 2), 3); }",
     "metadata": {"id": "demo::add"}},
    {"input": "pub fn neg(a: i32) -> i32 { -a }", "output": "#[test]\nfn negates() { assert_eq!(neg(2), -2); }",
     "metadata": {"id": "demo::neg"}},
]


def write_run(root: Path, *, losses=(2.0, 1.8, 1.6, 1.5), vals=(3.0, 1.7, 1.45), adapter=b"adapter-bytes") -> Path:
    """A finished 4-step experiment directory in the trainer's layout."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("name: fake\n", encoding="utf-8")
    store = MetricStore(root / "metrics.sqlite")
    store.set_meta(total_steps=4)
    for step, loss in enumerate(losses, 1):
        store.log_step(step, 0.1 * step, loss, 1e-3, 0.5, 100, 1000.0, 0.1 * step)
    for step, val in zip((0, 2, 4), vals):
        store.log_eval(step, val)
    store.log_hardware(cpu_percent=50.0, ram_used_mb=1000.0, ram_total_mb=2000.0)
    store.close()
    for name in ("step-4", "best"):
        (root / "checkpoints" / name).mkdir(parents=True)
        (root / "checkpoints" / name / "adapter_model.safetensors").write_bytes(adapter)
    final = root / "checkpoints" / "step-4"
    (root / "metrics.json").write_text(json.dumps({
        "status": "finished", "device": "cpu", "train_seconds": 12.5, "initial_val_loss": vals[0],
        "final_val_loss": vals[-1], "final_checkpoint": str(final), "random_init": True}), encoding="utf-8")
    lock = {"versions": {"python": "3.11.2", "torch": "2.13.0", "transformers": "5.23", "peft": "0.21",
                         "bitsandbytes": "0.50", "rustc": "rustc 1.95.0"},
            "device": "cpu", "seed": 42, "config_sha256": "c0ffee", "datasets": {"train.jsonl": "d1", "validation.jsonl": "d2"},
            "base_model_sha256": "basebase", "final_adapter_sha256": sha256_of_dir(final), "final_checkpoint": str(final)}
    (root / "reproducibility.lock").write_text(yaml.safe_dump(lock), encoding="utf-8")
    return root


def write_evaluation(eval_dir: Path, summary: dict) -> None:
    eval_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r["metadata"]["id"], "function_code": r["input"], "generated_tests": r["output"],
             "metadata": {"generation": {"adapter_sha256": "adapt", "model_sha256": "basebase", "max_new_tokens": 192}}}
            for r in HOLDOUT]
    (eval_dir / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (eval_dir / "generated.summary.json").write_text(json.dumps({
        "functions": 2, "median_seconds_per_function": 0.5, "tokens_per_s": 80.0, "model_sha256": "basebase",
        "adapter_sha256": "adapt", "checkpoint": "checkpoints/best", "generation": {"max_new_tokens": 192}}), encoding="utf-8")
    verdicts = [{"id": "demo::add", "compiles": True, "passes": True, "mutation_score": 1.0, "reasons": [], "extra": 1},
                {"id": "demo::neg", "compiles": False, "passes": False, "mutation_score": None,
                 "reasons": ["compile error: error[E0425]", "x"], "mutants": {"killed": 0}}]
    (eval_dir / "samples.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts), encoding="utf-8")
    (eval_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


FALSIFIERS = {"version": 1, "items": [
    {"nodeid": "contracts/training-runs.yaml::training-runs-v1::FALSIFY-RUN-001[lora]", "contract": "training-runs-v1",
     "falsifier": "FALSIFY-RUN-001", "tier": "tier2", "check": "same_seed_identical", "params": {"mode": "lora"},
     "outcome": "passed", "reason": "", "observed": {"max_diff": 0.0}, "rubric": ["r1_same_loss_curve"], "seconds": 3.2},
    {"nodeid": "contracts/qlora-memory.yaml::qlora-memory-v1::FALSIFY-QLORA-003", "contract": "qlora-memory-v1",
     "falsifier": "FALSIFY-QLORA-003", "tier": "tier3", "check": "vram", "params": {}, "outcome": "skipped",
     "reason": "requires CUDA", "observed": None, "rubric": ["e1_peak_vram"], "seconds": 0.0},
]}


@pytest.fixture
def world(tmp_path) -> dict:
    """An experiment with its same-seed repeat, evaluation, generation summary and falsifier results."""
    exp = write_run(tmp_path / "experiments" / "fake")
    write_run(tmp_path / "experiments" / "fake-repeat")
    write_evaluation(exp / "evaluation", good_summary())
    write_evaluation(exp / "evaluation-base", good_summary())  # the base model's zero-shot tests, same functions
    (exp / "evaluation" / "falsifiers.json").write_text(json.dumps(FALSIFIERS), encoding="utf-8")
    holdout = tmp_path / "holdout.jsonl"
    holdout.write_text("".join(json.dumps(r) + "\n" for r in HOLDOUT), encoding="utf-8")
    return {"exp": exp, "out": tmp_path / "reports", "holdout": holdout, "tmp": tmp_path}


def run_report(world, *extra: str) -> int:
    return report.main(["--experiment", str(world["exp"]), "--out", str(world["out"]), "--holdout", str(world["holdout"]), *extra])


def card_of(world, sub: str = "") -> dict:
    return json.loads((world["out"] / sub / "scorecard.json").read_text())


def item(card, iid):
    return next(i for i in card["items"] if i["id"] == iid)


# ---------------------------------------------------------------- end to end on existing evidence

@pytest.mark.slow
def test_report_from_an_existing_experiment_reuses_everything(world, capsys):
    assert run_report(world) == 0
    card = card_of(world)
    assert {s["status"] for s in card["stages"]} == {"reused"}
    assert card["rubric_version"] == RUBRIC_VERSION
    assert card["total"] == 97 and card["grade"] == "A+"  # everything but VRAM (CPU run: not run)
    assert item(card, "e1_peak_vram")["status"] == "not run"
    assert item(card, "e1_peak_vram")["falsifiers"][0]["reason"] == "requires CUDA"
    assert item(card, "r1_same_loss_curve")["evidence"]["points_a"] == 4
    assert item(card, "r1_same_loss_curve")["falsifiers"][0]["falsifier"] == "FALSIFY-RUN-001"
    prov = card["provenance"]
    assert prov["adapter_sha256"] == "adapt" and prov["base_model_sha256"] == "basebase"
    assert prov["datasets"][str(world["holdout"])] and prov["versions"]["torch"]
    assert "commit" in prov["git"]
    assert prov["traceability"] == {"records": 2, "with_model_adapter_and_settings": 2, "adapter_sha256s": ["adapt"],
                                    "match_generation_summary": True}
    assert card["curves"]["train loss (run A)"][0] == [1, 2.0]
    md = (world["out"] / "scorecard.md").read_text()
    assert "| c2_type_checks | passed | 5/5 |" in md and "P-GATE-004" in md
    html = (world["out"] / "scorecard.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # loss, categories, base vs tuned
    assert "sample-filter" in html and "error[E0425]; x" in html
    assert "<th>extra</th>" in html and "<th>mutants</th>" not in html
    assert "score 97/100 grade A+" in capsys.readouterr().out


def test_real_scores_follow_the_evidence_not_constants(world):
    write_evaluation(world["exp"] / "evaluation", good_summary(compile_rate=0.2, pass_rate=0.1, mutation_score=0.05))
    assert run_report(world) == 3  # scored; the failing gates reject the adapter
    card = card_of(world)
    assert card["total"] == 82
    gates = {g["id"]: g["status"] for g in card["gates"]}
    assert gates["P-GATE-001"] == gates["P-GATE-002"] == gates["P-GATE-003"] == "failed"


# ---------------------------------------------------------------- baseline

@pytest.mark.slow
def test_planted_regression_is_detected_and_named(world, capsys):
    assert run_report(world) == 0
    baseline = world["tmp"] / "good.json"
    shutil.copy(world["out"] / "scorecard.json", baseline)
    write_evaluation(world["exp"] / "evaluation", good_summary(compile_rate=0.5, comment_rate=0.1))  # worse model
    assert run_report(world, "--baseline", str(baseline)) == 1
    err = capsys.readouterr().err
    assert "c2_type_checks (5 -> 0" in err and "d2_comments" in err and "P-GATE-002" in err and "-7" in err
    card = card_of(world)
    diff = card["baseline"]
    assert diff["total_delta"] == -7 and diff["regression"] is True
    assert set(diff["regressed_items"]) == {"c2_type_checks", "d2_comments"}
    assert diff["newly_failing_gates"] == ["P-GATE-002"]
    assert "REGRESSION" in (world["out"] / "scorecard.md").read_text()
    assert "| c2_type_checks | failed | 0/5 |" in (world["out"] / "scorecard.md").read_text()
    assert "REGRESSION" in (world["out"] / "scorecard.html").read_text()


def test_scorecard_json_has_exactly_the_fields_of_its_schema(world):
    """scorecard.json's one definition (falsify.report.scorecard) is what the file holds, key for key."""
    assert run_report(world) == 0
    baseline = world["tmp"] / "old.json"
    shutil.copy(world["out"] / "scorecard.json", baseline)
    assert run_report(world, "--baseline", str(baseline)) == 0
    card = card_of(world)

    def keys(td):
        return set(td.__required_keys__ | td.__optional_keys__)
    assert set(card) == keys(scorecard.Scorecard) and set(card["counts"]) == keys(scorecard.Counts)
    assert all(set(i) == keys(scorecard.ScoredItem) for i in card["items"])
    assert all(set(f) == keys(scorecard.FalsifierBehind) for i in card["items"] for f in i["falsifiers"])
    assert all(set(g) == keys(scorecard.Gate) for g in card["gates"])
    assert all(set(c) == keys(scorecard.CategoryScore) for c in card["categories"].values())
    assert all(set(s) == keys(scorecard.StageRecord) for s in card["stages"]) and card["stages"]
    assert set(card["baseline"]) == keys(scorecard.BaselineDiff)
    assert all(set(r) == keys(scorecard.ItemDelta) for r in card["baseline"]["items"])


@pytest.mark.slow
def test_equal_or_better_than_baseline_exits_zero(world):
    write_evaluation(world["exp"] / "evaluation", good_summary(comment_rate=0.1))
    assert run_report(world) == 0
    baseline = world["tmp"] / "old.json"
    shutil.copy(world["out"] / "scorecard.json", baseline)
    assert run_report(world, "--baseline", str(baseline)) == 0  # same
    write_evaluation(world["exp"] / "evaluation", good_summary())
    assert run_report(world, "--baseline", str(baseline)) == 0  # better
    diff = card_of(world)["baseline"]
    assert diff["total_delta"] == 2 and diff["improved_items"] == ["d2_comments"] and not diff["regression"]


def test_a_newly_failing_gate_alone_is_a_regression(world, capsys):
    """Same total, but compile rate now under 0.90 while another item recovered."""
    write_evaluation(world["exp"] / "evaluation", good_summary(parse_rate=0.5))
    assert run_report(world) == 0
    baseline = world["tmp"] / "old.json"
    shutil.copy(world["out"] / "scorecard.json", baseline)
    write_evaluation(world["exp"] / "evaluation", good_summary(compile_rate=0.85))
    assert run_report(world, "--baseline", str(baseline)) == 1
    assert card_of(world)["baseline"]["total_delta"] == 0
    assert "gates newly failing: P-GATE-002" in capsys.readouterr().err


def test_incompatible_baseline_version_is_a_clear_error(world, capsys):
    assert run_report(world) == 0
    old = card_of(world)
    old["rubric_version"] = "0.3"
    baseline = world["tmp"] / "old.json"
    baseline.write_text(json.dumps(old))
    before = (world["out"] / "scorecard.json").read_bytes()
    capsys.readouterr()
    assert run_report(world, "--baseline", str(baseline)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(baseline) in err and "rubric_version" in err and len(err.splitlines()) == 1
    assert (world["out"] / "scorecard.json").read_bytes() == before


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("breakage,needle", [
    ("no_dir", "experiment directory not found"),
    ("no_config", "no config.yaml"),
    ("corrupt_metrics", "metrics.json: experiment metrics is not valid JSON"),
    ("metrics_field", "metrics.json: field 'train_seconds' is missing"),
    ("summary_field", "summary.json: field 'mutation_score' is missing"),
    ("summary_json", "summary.json: evaluator summary is not valid JSON"),
    ("falsifiers_version", "falsifiers.json: field 'version' is 7, expected 1"),
    ("lock_yaml", "reproducibility.lock: invalid YAML"),
    ("sqlite", "metrics.sqlite: unreadable metric store"),
])
def test_bad_input_is_one_line_naming_file_and_field(world, capsys, breakage, needle):
    exp = world["exp"]
    if breakage == "no_dir":
        shutil.rmtree(exp)
    elif breakage == "no_config":
        (exp / "config.yaml").unlink()
    elif breakage == "corrupt_metrics":
        (exp / "metrics.json").write_text("{not json")
    elif breakage == "metrics_field":
        m = json.loads((exp / "metrics.json").read_text())
        del m["train_seconds"]
        (exp / "metrics.json").write_text(json.dumps(m))
    elif breakage == "summary_field":
        s = good_summary()
        del s["mutation_score"]
        (exp / "evaluation" / "summary.json").write_text(json.dumps(s))
    elif breakage == "summary_json":
        (exp / "evaluation" / "summary.json").write_text("[1, 2")
    elif breakage == "falsifiers_version":
        (exp / "evaluation" / "falsifiers.json").write_text(json.dumps({"version": 7, "items": []}))
    elif breakage == "lock_yaml":
        (exp / "reproducibility.lock").write_text("versions: [unclosed\n")
    elif breakage == "sqlite":
        (exp / "metrics.sqlite").write_bytes(b"this is not a database" * 100)
    assert run_report(world) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and err.endswith(errors[0])  # progress lines, then one error
    assert "Traceback" not in err
    assert not (world["out"] / "scorecard.json").exists()


def test_bad_tiers_and_limit(world, capsys):
    assert run_report(world, "--tiers", "tier1,tier9") == 2
    assert "tier9" in capsys.readouterr().err
    assert run_report(world, "--limit", "0") == 2


# ---------------------------------------------------------------- atomic output

def test_a_failure_while_rendering_leaves_the_old_scorecard_intact(world, monkeypatch):
    assert run_report(world) == 0
    old = {n: (world["out"] / n).read_bytes() for n in ("scorecard.json", "scorecard.md", "scorecard.html")}
    write_evaluation(world["exp"] / "evaluation", good_summary(compile_rate=0.1))

    def broken(card, samples):
        raise RuntimeError("plotting crashed")
    monkeypatch.setattr("falsify.report.scorecard_html.render_html", broken)
    with pytest.raises(RuntimeError):
        run_report(world)
    assert {n: (world["out"] / n).read_bytes() for n in old} == old


def test_a_failure_mid_write_leaves_the_old_scorecard_intact_and_no_temp_files(world, monkeypatch):
    assert run_report(world) == 0
    old = {n: (world["out"] / n).read_bytes() for n in ("scorecard.json", "scorecard.md", "scorecard.html")}
    write_evaluation(world["exp"] / "evaluation", good_summary(compile_rate=0.1))
    calls = {"n": 0}
    real_write = scorecard.write_atomic

    def failing_write(path, data):  # the second file hits a full disk
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, data)
    monkeypatch.setattr(scorecard, "write_atomic", failing_write)
    with pytest.raises(OSError):
        run_report(world)
    assert {n: (world["out"] / n).read_bytes() for n in old} == old
    assert not list(world["out"].glob(".*.tmp")) and sorted(p.name for p in world["out"].iterdir()) == sorted(old)


# ---------------------------------------------------------------- pipeline stages

def test_a_failed_stage_is_recorded_and_its_dependants_skipped(tmp_path):
    out_file = tmp_path / "made.txt"
    stages = [
        pipeline.Stage("ok", [sys.executable, "-c", f"open({str(out_file)!r}, 'w').write('x')"], check_output=out_file),
        pipeline.Stage("boom", [sys.executable, "-c", "import sys; print('first'); print('evaluator exploded'); sys.exit(3)"]),
        pipeline.Stage("after", [sys.executable, "-c", "pass"], needs=["boom"]),
        pipeline.Stage("pytest-like", [sys.executable, "-c", "import sys; sys.exit(1)"], ok_codes=(0, 1)),
        pipeline.Stage("silent", [sys.executable, "-c", "pass"], check_output=tmp_path / "never.json"),
        pipeline.Stage("reused", [sys.executable, "-c", "raise SystemExit(9)"], done=lambda: "already there"),
        pipeline.Stage("action", action=lambda: (tmp_path / "act.txt").write_text("y")),
    ]
    results = {r.name: r for r in pipeline.run_stages(stages, tmp_path / "logs")}
    assert results["ok"].status == "ran" and out_file.read_text() == "x"
    assert results["boom"].status == "failed" and results["boom"].reason == "exit 3: evaluator exploded"
    assert Path(results["boom"].log).read_text().startswith("first")
    assert results["after"].status == "skipped" and "boom" in results["after"].reason
    assert results["pytest-like"].status == "ran"
    assert results["silent"].status == "failed" and "never.json" in results["silent"].reason
    assert results["reused"].status == "reused" and results["reused"].reason == "already there"
    assert results["action"].status == "ran" and (tmp_path / "act.txt").read_text() == "y"


def test_training_progress_reads_the_metric_store(tmp_path):
    root = write_run(tmp_path / "run")
    assert pipeline.training_progress(root)() == (4, 4)
    assert pipeline.training_progress(tmp_path / "absent")() is None


def test_default_plan_trains_twice_with_the_same_config(tmp_path):
    plan = pipeline.model_plan(None, limit=7, tiers=["tier1", "tier2"])
    cmds = {s.name: s.command for s in plan.stages}
    assert cmds["model"][-3:] == ["model", "prepare", "smollm2-135m-instruct"]  # the real base model, converted once
    assert cmds["train"][-5:] == ["--config", "smollm2-qlora", "--output", "experiments/smollm2-qlora", "--overwrite"]
    assert cmds["train-repeat"][-5:] == ["--config", "smollm2-qlora", "--output", "experiments/smollm2-qlora-repeat", "--overwrite"]
    assert cmds["generate"][-2:] == ["--limit", "7"]
    assert cmds["generate-base"][cmds["generate-base"].index("--checkpoint") + 1] == "base"
    assert "tier1 or tier2" in cmds["falsifiers"] and "--falsify-results" in cmds["falsifiers"]
    assert all(s.done is None or s.done() is None for s in plan.stages[1:])  # fresh: nothing is reused


def test_reference_samples_are_the_corpus_tests(tmp_path, world):
    out = tmp_path / "ref" / "generated.jsonl"
    pipeline.write_reference_samples(world["holdout"], out, limit=1)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["generated_tests"] == HOLDOUT[0]["output"] == rows[0]["reference_tests"]
    assert rows[0]["function_code"] == HOLDOUT[0]["input"] and rows[0]["id"] == "demo::add"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "fn f() {}", "output": "x"}\n{"input": 3}\n')
    with pytest.raises(ReportError, match=r"bad.jsonl:2: .*'input' and 'output'"):
        pipeline.write_reference_samples(bad, out, limit=10)


FAKE_EVALUATOR = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    rows = [json.loads(l) for l in Path(args["--samples"]).read_text().splitlines()]
    if any("BOOM" in r["generated_tests"] for r in rows):
        print("evaluator exploded"); sys.exit(3)
    out = Path(args["--out"]); out.mkdir(parents=True, exist_ok=True)
    passing = sum("assert" in r["generated_tests"] for r in rows)
    rate = passing / len(rows)
    cats = {c: 0 for c in ("has_generics", "has_lifetimes", "is_async", "has_unsafe", "uses_macros")}
    summary = {k: rate for k in ("compile_rate", "pass_rate", "mutation_score", "line_coverage_gain",
               "branch_coverage_gain", "bleu4", "codebleu", "parse_rate", "clippy_clean_rate", "link_rate",
               "descriptive_name_rate", "comment_rate", "proptest_strategy_rate")}
    summary.update(n=len(rows), trivial_assertion_rate=1 - rate, category_counts=cats, category_pass_counts=cats,
                   seconds_median=0.1, no_assertion_rate=1 - rate, function_result_assertion_rate=rate, edge_case_rate=rate)
    (out / "samples.jsonl").write_text("".join(json.dumps({"id": r["id"], "passed": True}) + "\\n" for r in rows))
    (out / "summary.json").write_text(json.dumps(summary))
""")


@pytest.fixture
def fake_evaluator(tmp_path, monkeypatch):
    script = tmp_path / "fake_evaluate.py"
    script.write_text(FAKE_EVALUATOR)
    real = pipeline._py

    def py(*args):
        return [sys.executable, str(script), *args[2:]] if args[:2] == ("-m", "falsify.evaluate") else real(*args)
    monkeypatch.setattr(pipeline, "_py", py)


def test_reference_generator_scores_corpus_tests_into_its_own_scorecard(world, fake_evaluator):
    code = report.main(["--generator", "reference", "--experiment", str(world["exp"]), "--out", str(world["out"]),
                        "--holdout", str(world["holdout"])])
    assert code == 0
    card = card_of(world, "reference")
    assert card["generator"] == "reference" and not (world["out"] / "scorecard.json").exists()
    assert item(card, "c2_type_checks")["status"] == "passed" and item(card, "c2_type_checks")["evidence"]["n"] == 2
    assert item(card, "r1_same_loss_curve")["status"] == "not run" and "reference" in item(card, "r1_same_loss_curve")["reason"]
    assert item(card, "e3_generation_time")["status"] == "not run"
    assert {s["name"]: s["status"] for s in card["stages"]} == {"corpus": "reused", "reference-samples": "ran", "evaluate": "ran"}
    assert (world["exp"] / "evaluation-reference" / "summary.json").is_file()
    assert "Reference tests" in (world["out"] / "reference" / "scorecard.md").read_text()


def test_a_crashing_evaluator_gives_not_run_items_and_exit_1(world, fake_evaluator, capsys):
    world["holdout"].write_text(json.dumps({"input": "fn f() {}", "output": "BOOM"}) + "\n")
    code = report.main(["--generator", "reference", "--experiment", str(world["exp"]), "--out", str(world["out"]),
                        "--holdout", str(world["holdout"])])
    assert code == 1
    card = card_of(world, "reference")
    assert item(card, "c1_parses")["status"] == "not run"
    assert "stage evaluate failed: exit 3: evaluator exploded" in item(card, "c1_parses")["reason"]
    assert "evaluate" in capsys.readouterr().err


def test_module_runs_as_a_script_with_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "falsify.report", "--experiment", str(tmp_path / "nope"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope'}: experiment directory not found"


# ---------------------------------------------------------------- the HTML in a real browser

CHROMIUM = Path("/usr/bin/chromium")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2000"]


def chromium(page: Path, tmp: Path) -> tuple[Path, str, list[str]]:
    """(screenshot, DOM after load, console lines) of a page in headless Chromium."""
    shot = tmp / "shot.png"
    a = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'profile1'}", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    b = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'profile2'}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    console = [ln for ln in (a.stderr + b.stderr).splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    return shot, b.stdout, console


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make setup installs it)")


@pytest.mark.slow
@needs_chromium
def test_scorecard_html_renders_in_headless_chromium(world, tmp_path):
    assert run_report(world) == 0
    shot, dom, console = chromium((world["out"] / "scorecard.html").resolve(), tmp_path)
    assert console == []  # no script error, no console output at all
    assert shot.is_file() and shot.stat().st_size > 50_000
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.05  # not a blank page
    # the load handler counts the plot images the browser actually decoded
    assert 'data-plots-loaded="3"' in dom, dom[:500]
    assert 'id="loss-plot"' in dom and 'id="category-plot"' in dom and 'id="comparison-plot"' in dom


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_sees_script_errors_and_broken_plots(tmp_path):
    """The check above can fail: a script error is reported and an undecodable plot is not counted."""
    from falsify.report.scorecard_html import SCRIPT

    page = tmp_path / "broken.html"
    page.write_text(f"<html><head><script>{SCRIPT}</script></head><body data-plots-loaded='0'>"
                    "<img class='plot' src='data:image/png;base64,AAAA'><script>noSuchFunction();</script></body></html>")
    _, dom, console = chromium(page, tmp_path)
    assert any("noSuchFunction" in ln for ln in console)
    assert 'data-plots-loaded="0"' in dom


# ---------------------------------------------------------------- base vs tuned, and the gates' verdict on the adapter

def write_verdicts(eval_dir: Path, compiled: int, n: int = 40) -> None:
    """Evaluator records for n functions, the first `compiled` of which compile and pass."""
    rows = [{"id": f"demo::f{i}", "compiles": i < compiled, "passes": i < compiled, "mutation_score": 0.8 if i < compiled else None,
             "line_coverage_gain": 0.5 if i < compiled else None, "reasons": []} for i in range(n)]
    (eval_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_the_scorecard_answers_whether_the_fine_tune_helped(world, capsys):
    write_verdicts(world["exp"] / "evaluation-base", compiled=4)
    write_verdicts(world["exp"] / "evaluation", compiled=32)
    assert run_report(world) == 0
    cmp = card_of(world)["comparison"]
    assert cmp["n"] == 40 and cmp["base"]["compile_rate"] == 0.1 and cmp["tuned"]["compile_rate"] == 0.8
    for rate in ("compile_rate", "pass_rate", "mutation_score", "coverage_gain"):
        d = cmp["delta"][rate]
        assert set(d) == {"value", "ci95", "p_value", "test", "verdict"} and d["ci95"][0] > 0 and d["p_value"] < 0.001
    assert cmp["verdict"] == "helped"
    assert "did the fine-tune help? helped" in capsys.readouterr().out
    assert "The fine-tune helped (n = 40" in (world["out"] / "scorecard.md").read_text()
    assert "id='comparison-verdict'>The fine-tune helped" in (world["out"] / "scorecard.html").read_text()


def test_no_base_comparison_is_said_not_hidden(world):
    assert run_report(world, "--no-base") == 0
    card = card_of(world)
    assert card["comparison"] is None and card["missing_evidence"]["comparison"] == "not asked for (--no-base)"
    assert not any(s["name"].endswith("-base") for s in card["stages"])
    assert "Not compared: not asked for (--no-base)" in (world["out"] / "scorecard.md").read_text()


def test_a_failing_gate_rejects_the_adapter_and_a_passing_run_clears_it(world, capsys):
    rejection = world["exp"] / "adapter-rejected.json"
    write_evaluation(world["exp"] / "evaluation", good_summary(compile_rate=0.5))
    assert run_report(world) == 3
    card = card_of(world)
    assert card["adapter"] == "rejected"
    gate = next(g for g in card["gates"] if g["id"] == "P-GATE-002")
    assert gate == {**gate, "threshold": 0.9, "value": 0.5, "passed": False, "status": "failed"}
    record = json.loads(rejection.read_text())
    assert record["adapter_sha256"] == "adapt" and any("P-GATE-002" in r for r in record["reasons"])
    assert "adapter REJECTED" in capsys.readouterr().out

    write_evaluation(world["exp"] / "evaluation", good_summary())
    assert run_report(world) == 0
    assert card_of(world)["adapter"] == "accepted" and not rejection.exists()
    assert "earlier rejection removed" in capsys.readouterr().out


def test_the_reference_generator_has_no_adapter_to_reject(world):
    write_evaluation(world["exp"] / "evaluation-reference", good_summary(compile_rate=0.1))
    assert run_report(world, "--generator", "reference") == 0
    card = card_of(world, "reference")
    assert card["adapter"] == "not judged" and card["comparison"] is None
    assert not (world["exp"] / "adapter-rejected.json").exists()


# ---------------------------------------------------------------- critic reranking against the first candidate

@pytest.fixture
def reranked_world(world) -> dict:
    """`world` as after `--critic`: the reranked samples in evaluation-reranked/, the first candidates' in evaluation-first/."""
    for side in ("evaluation-reranked", "evaluation-first"):
        write_evaluation(world["exp"] / side, good_summary())
    for side, compiled in (("evaluation-base", 2), ("evaluation-first", 20), ("evaluation-reranked", 20)):
        write_verdicts(world["exp"] / side, compiled)
    shutil.copy(world["exp"] / "evaluation" / "falsifiers.json", world["exp"] / "evaluation-reranked" / "falsifiers.json")
    critic = world["tmp"] / "critic"
    critic.mkdir()
    (critic / "config.yaml").write_text("name: critic\n", encoding="utf-8")
    return {**world, "critic": critic}


def test_the_scorecard_answers_whether_critic_reranking_helped(reranked_world, capsys):
    w = reranked_world
    write_verdicts(w["exp"] / "evaluation-first", compiled=5)
    write_verdicts(w["exp"] / "evaluation-reranked", compiled=30)
    assert run_report(w, "--critic", str(w["critic"])) == 0
    card = card_of(w)
    cmp = card["rerank_comparison"]
    assert cmp["sides"] == ["first candidate", "critic-reranked"] and cmp["question"] == "Did critic reranking help?"
    assert cmp["n"] == 40 and cmp["base"]["compile_rate"] == 0.125 and cmp["tuned"]["compile_rate"] == 0.75
    assert cmp["verdict"] == "helped" and cmp["delta"]["pass_rate"]["ci95"][0] > 0
    # the scored samples are the reranked ones, and base vs tuned compares the base with them
    assert card["comparison"]["tuned"]["compile_rate"] == 0.75
    assert {s["name"] for s in card["stages"]} >= {"generate", "evaluate", "evaluate-first", "generate-base"}
    assert "did critic reranking help? helped" in capsys.readouterr().out
    md = (w["out"] / "scorecard.md").read_text()
    assert "## Did critic reranking help?" in md and "Critic reranking helped (n = 40" in md
    assert "| rate (n = 40) | first candidate | critic-reranked |" in md
    assert "id='rerank-comparison-verdict'>Critic reranking helped" in (w["out"] / "scorecard.html").read_text()


def test_reranking_that_changes_nothing_is_said_so(reranked_world):
    w = reranked_world
    assert run_report(w, "--critic", str(w["critic"])) == 0
    cmp = card_of(w)["rerank_comparison"]
    assert cmp["verdict"] == "cannot be told apart" and cmp["sentence"].startswith("First candidate and critic-reranked cannot")


def test_without_critic_there_is_no_rerank_comparison_and_a_missing_side_is_named(reranked_world):
    w = reranked_world
    assert run_report(w, "--no-base") == 0
    assert card_of(w)["rerank_comparison"] is None and "rerank_comparison" not in card_of(w)["missing_evidence"]
    assert "reranking" not in (w["out"] / "scorecard.md").read_text()
    (w["exp"] / "evaluation-first" / "samples.jsonl").unlink()
    (w["exp"] / "evaluation-first" / "summary.json").unlink()
    assert run_report(w, "--critic", str(w["critic"]), "--tiers", "") == 1  # the evaluate-first stage has nothing to evaluate
    card = card_of(w)
    assert card["rerank_comparison"] is None and "evaluate-first" in card["missing_evidence"]["rerank_comparison"]


@pytest.mark.parametrize("extra, needle", [
    (["--candidates", "1"], "--candidates of at least 2"),
    (["--temperature", "0"], "--temperature above 0"),
    (["--generator", "reference"], "reference generator has none"),
])
def test_bad_rerank_options_are_one_line(reranked_world, capsys, extra, needle):
    w = reranked_world
    assert run_report(w, "--critic", str(w["critic"]), *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert run_report(w, "--critic", str(w["tmp"] / "nowhere")) == 2
    assert "not an experiment directory" in capsys.readouterr().err


def test_the_rerank_plan_samples_candidates_and_evaluates_the_first_ones(tmp_path):
    plan = pipeline.model_plan(tmp_path / "exp", limit=7, tiers=[], rerank=pipeline.Rerank(tmp_path / "critic", 5, 0.7))
    cmds = {s.name: s.command for s in plan.stages}
    assert cmds["generate"][-6:] == ["--candidates", "5", "--critic", str(tmp_path / "critic"), "--temperature", "0.7"]
    assert plan.eval_dir == tmp_path / "exp" / "evaluation-reranked" and plan.first_eval_dir == tmp_path / "exp" / "evaluation-first"
    assert cmds["evaluate-first"][cmds["evaluate-first"].index("--samples") + 1].endswith("evaluation-reranked/generated.first.jsonl")
    assert "--candidates" not in cmds["generate-base"]
