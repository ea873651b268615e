"""The rubric's arithmetic, grades, gates, "not run" handling and falsifier overrides (pure, no files)."""

from __future__ import annotations

import copy

import pytest

from falsify.evaluate.summary import SUMMARY_FIELDS
from falsify.report.evidence import Evidence
from falsify.report.rubric import CATEGORIES, ITEMS, RUBRIC_VERSION, grade, score

CATS = ("has_generics", "has_lifetimes", "is_async", "has_unsafe", "uses_macros")


def good_summary(**overrides) -> dict:
    """An evaluator summary that meets every threshold."""
    s = {"n": 40, "compile_rate": 0.95, "pass_rate": 0.9, "mutation_score": 0.8, "line_coverage_gain": 0.2,
         "branch_coverage_gain": 0.1, "bleu4": 0.3, "codebleu": 0.4, "trivial_assertion_rate": 0.0,
         "parse_rate": 1.0, "clippy_clean_rate": 0.9, "link_rate": 0.95, "descriptive_name_rate": 0.9,
         "comment_rate": 0.6, "proptest_strategy_rate": 0.9, "category_counts": {c: 4 for c in CATS},
         "category_pass_counts": {c: 4 for c in CATS}, "seconds_median": 2.0, "no_assertion_rate": 0.0,
         "function_result_assertion_rate": 0.9, "edge_case_rate": 0.7}
    s.update(overrides)
    return s


def run(loss=((1, 2.0), (2, 1.5)), evals=((0, 3.0), (2, 1.4)), sha="aa", device="cpu", **metrics) -> dict:
    lock = {"versions": {"python": "3.11", "torch": "2", "transformers": "5", "peft": "0.2", "bitsandbytes": "0.5",
                         "rustc": "rustc 1.95"}, "device": device, "seed": 42, "config_sha256": "c",
            "datasets": {"train.jsonl": "d1", "validation.jsonl": "d2"}, "final_adapter_sha256": "ff"}
    m = {"status": "finished", "device": device, "train_seconds": 120.0, "final_val_loss": evals[-1][1], **metrics}
    return {"metrics": m, "loss_curve": list(loss), "eval_curve": list(evals), "lock": lock, "adapter_sha256": sha,
            "final_adapter_sha256": "ff", "peak_vram_mb": None}


def full_evidence(**kw) -> Evidence:
    ev = Evidence(summary=good_summary(), experiment=run(), repeat=run(),
                  generation={"median_seconds_per_function": 0.4, "functions": 40, "tokens_per_s": 90.0}, falsifiers=[])
    for k, v in kw.items():
        setattr(ev, k, v)
    return ev


def item(card: dict, iid: str) -> dict:
    return next(i for i in card["items"] if i["id"] == iid)


def test_table_matches_spec():
    assert sum(i.points for i in ITEMS.values()) == 100
    assert dict(CATEGORIES) == {"Reproducibility": 20, "Compilation": 20, "Correctness": 20, "Coverage": 15,
                                "Efficiency": 10, "Edge cases": 10, "Documentation": 5}
    assert len(ITEMS) == 26 and RUBRIC_VERSION
    assert ITEMS["e2_training_time"].points == 4 and ITEMS["d3_proptest_strategy_names"].points == 1
    assert all(i.threshold and i.source for i in ITEMS.values())


def test_full_evidence_on_cpu_scores_97_with_vram_not_run():
    card = score(full_evidence())
    assert item(card, "e1_peak_vram")["status"] == "not run"
    assert "CUDA" in item(card, "e1_peak_vram")["reason"]
    assert card["total"] == 97 and card["grade"] == "A+"
    assert card["counts"] == {"passed": 25, "failed": 0, "not run": 1}
    gates = {g["id"]: g["status"] for g in card["gates"]}
    assert gates == {"P-GATE-001": "passed", "P-GATE-002": "passed", "P-GATE-003": "passed", "P-GATE-004": "not run"}


def test_cuda_run_scores_vram_and_gate_4():
    ev = full_evidence(experiment={**run(device="cuda:0"), "peak_vram_mb": 9000.0})
    card = score(ev)
    assert item(card, "e1_peak_vram")["status"] == "failed"
    assert {g["id"]: g["status"] for g in card["gates"]}["P-GATE-004"] == "failed"
    ev.experiment["peak_vram_mb"] = 3000.0
    card = score(ev)
    assert card["total"] == 100 and item(card, "e1_peak_vram")["points"] == 3


@pytest.mark.parametrize("total,letter", [(100, "A+"), (95, "A+"), (94, "A"), (90, "A"), (89, "B+"), (85, "B+"),
                                          (84, "B"), (80, "B"), (79, "C"), (70, "C"), (69, "F"), (0, "F")])
def test_grades(total, letter):
    assert grade(total) == letter


@pytest.mark.parametrize("field,value,iid", [
    ("parse_rate", 0.94, "c1_parses"), ("compile_rate", 0.89, "c2_type_checks"),
    ("clippy_clean_rate", 0.79, "c3_no_clippy_warnings"), ("link_rate", 0.5, "c4_links"),
    ("pass_rate", 0.84, "x1_pass_original"), ("mutation_score", 0.69, "x2_fail_mutants"),
    ("no_assertion_rate", 0.06, "x3_assertions_meaningful"), ("function_result_assertion_rate", 0.79, "x3_assertions_meaningful"),
    ("trivial_assertion_rate", 0.06, "x4_no_tautologies"),
    ("branch_coverage_gain", 0.049, "v1_branch_coverage_gain"), ("line_coverage_gain", 0.09, "v2_line_coverage_gain"),
    ("edge_case_rate", 0.49, "v3_edge_cases_present"), ("descriptive_name_rate", 0.79, "d1_test_names"),
    ("comment_rate", 0.49, "d2_comments"), ("proptest_strategy_rate", 0.49, "d3_proptest_strategy_names"),
])
def test_each_rate_item_fails_just_below_its_threshold(field, value, iid):
    base = score(full_evidence())
    card = score(full_evidence(summary=good_summary(**{field: value})))
    got = item(card, iid)
    assert got["status"] == "failed" and got["points"] == 0 and got["evidence"][field] == value
    assert card["total"] == base["total"] - ITEMS[iid].points
    assert card["categories"][ITEMS[iid].category]["points"] == base["categories"][ITEMS[iid].category]["points"] - ITEMS[iid].points


def test_edge_case_category_share_and_empty_category():
    s = good_summary(category_counts={**{c: 4 for c in CATS}, "is_async": 0},
                     category_pass_counts={**{c: 4 for c in CATS}, "has_unsafe": 3, "is_async": 0})
    card = score(full_evidence(summary=s))
    assert item(card, "g3_async")["status"] == "not run" and "is_async" in item(card, "g3_async")["reason"]
    assert item(card, "g4_unsafe")["status"] == "failed"  # 3/4 = 0.75 < 0.85
    assert item(card, "g4_unsafe")["evidence"]["pass_share"] == 0.75
    assert item(card, "g1_generics")["status"] == "passed"


def test_gate_2_and_3_follow_the_summary():
    card = score(full_evidence(summary=good_summary(compile_rate=0.5, mutation_score=0.1)))
    gates = {g["id"]: g for g in card["gates"]}
    assert gates["P-GATE-002"]["status"] == "failed" and gates["P-GATE-002"]["value"] == 0.5
    assert gates["P-GATE-003"]["status"] == "failed" and gates["P-GATE-003"]["value"] == 0.1


def test_gate_1_fails_below_90():
    s = good_summary(compile_rate=0.5, pass_rate=0.1)  # -10 points -> 87
    card = score(full_evidence(summary=s))
    assert card["total"] == 87 and card["grade"] == "B+"
    assert {g["id"]: g["status"] for g in card["gates"]}["P-GATE-001"] == "failed"


def test_missing_evidence_is_not_run_with_its_reason_and_scores_zero():
    ev = Evidence(missing={"summary": "stage evaluate failed: exit 1: boom", "experiment": "no run",
                           "repeat": "no repeat", "generation": "no gen", "falsifiers": "none"})
    card = score(ev)
    assert card["total"] == 0 and card["counts"]["not run"] == 26
    assert item(card, "c2_type_checks")["reason"] == "stage evaluate failed: exit 1: boom"
    assert item(card, "r1_same_loss_curve")["reason"] == "no run"
    assert item(card, "e3_generation_time")["reason"] == "no gen"
    gates = {g["id"]: g for g in card["gates"]}
    assert gates["P-GATE-002"]["status"] == "not run" and "evaluate failed" in gates["P-GATE-002"]["reason"]


def test_none_values_and_zero_samples_are_not_run():
    card = score(full_evidence(summary=good_summary(mutation_score=None, proptest_strategy_rate=None)))
    assert item(card, "x2_fail_mutants")["status"] == "not run"
    assert item(card, "d3_proptest_strategy_names")["status"] == "not run"
    assert {g["id"]: g["status"] for g in card["gates"]}["P-GATE-003"] == "not run"
    card = score(full_evidence(summary=good_summary(n=0)))
    assert all(item(card, i)["status"] == "not run" for i in ("c1_parses", "x1_pass_original", "g1_generics"))


def test_tests_without_any_assertion_fail_x3():
    card = score(full_evidence(summary=good_summary(no_assertion_rate=1.0, function_result_assertion_rate=None,
                                                    trivial_assertion_rate=None)))
    assert item(card, "x3_assertions_meaningful")["status"] == "failed"
    assert item(card, "x4_no_tautologies")["status"] == "not run"  # nothing asserted: nothing to judge


def test_reproducibility_detects_a_different_loss_weights_and_eval():
    ev = full_evidence(repeat=run(loss=((1, 2.0), (2, 1.5000001)), evals=((0, 3.0), (2, 1.41)), sha="bb"))
    card = score(ev)
    assert item(card, "r1_same_loss_curve")["status"] == "failed"
    assert item(card, "r1_same_loss_curve")["evidence"]["max_abs_diff"] == pytest.approx(1e-7)
    assert item(card, "r2_same_final_weights")["status"] == "failed"
    assert item(card, "r3_same_eval_metrics")["status"] == "failed"
    assert card["categories"]["Reproducibility"]["points"] == 5  # only the lock


def test_reproducibility_not_run_without_repeat():
    ev = full_evidence(repeat=None)
    ev.missing["repeat"] = "stage train-repeat failed: exit 1: oom"
    card = score(ev)
    assert item(card, "r1_same_loss_curve")["status"] == "not run"
    assert "oom" in item(card, "r2_same_final_weights")["reason"]
    assert item(card, "r4_environment_locked")["status"] == "passed"


def test_lock_gaps_and_wrong_adapter_hash_fail_r4():
    bad = run()
    bad["lock"] = copy.deepcopy(bad["lock"])
    bad["lock"]["versions"]["rustc"] = None
    del bad["lock"]["seed"]
    card = score(full_evidence(experiment=bad))
    r4 = item(card, "r4_environment_locked")
    assert r4["status"] == "failed" and "versions.rustc" in r4["reason"] and "seed" in r4["reason"]
    lied = run()
    lied["final_adapter_sha256"] = "00"
    assert item(score(full_evidence(experiment=lied)), "r4_environment_locked")["status"] == "failed"
    nolock = run()
    nolock["lock"] = None
    assert item(score(full_evidence(experiment=nolock)), "r4_environment_locked")["status"] == "failed"


def test_training_and_generation_time():
    slow = run(train_seconds=5 * 3600.0)
    assert item(score(full_evidence(experiment=slow)), "e2_training_time")["status"] == "failed"
    stopped = run(status="stopped_by_guard")
    assert item(score(full_evidence(experiment=stopped)), "e2_training_time")["status"] == "failed"
    card = score(full_evidence(generation={"median_seconds_per_function": 1.5}))
    assert item(card, "e3_generation_time")["status"] == "failed"


def test_a_failed_falsifier_fails_the_items_behind_it_and_skips_are_listed():
    falsifiers = [
        {"nodeid": "contracts/t.yaml::run::FALSIFY-RUN-001[lora]", "falsifier": "FALSIFY-RUN-001", "tier": "tier2",
         "outcome": "failed", "reason": "loss differs", "rubric": ["r1_same_loss_curve", "r2_same_final_weights"]},
        {"nodeid": "contracts/t.yaml::lock::FALSIFY-LOCK-001", "falsifier": "FALSIFY-LOCK-001", "tier": "tier3",
         "outcome": "skipped", "reason": "requires CUDA", "rubric": ["r4_environment_locked"]},
        {"nodeid": "contracts/t.yaml::x::FALSIFY-X-001", "falsifier": "FALSIFY-X-001", "tier": "tier1",
         "outcome": "passed", "reason": "", "rubric": ["r3_same_eval_metrics"]},
    ]
    card = score(full_evidence(falsifiers=falsifiers))
    r1, r2, r3, r4 = (item(card, f"r{k}_" + s) for k, s in
                      ((1, "same_loss_curve"), (2, "same_final_weights"), (3, "same_eval_metrics"), (4, "environment_locked")))
    assert r1["status"] == r2["status"] == "failed" and "FALSIFY-RUN-001" in r1["reason"]
    assert r3["status"] == "passed" and r3["falsifiers"][0]["status"] == "passed"
    assert r4["status"] == "passed" and r4["falsifiers"][0]["status"] == "not run"
    assert r4["falsifiers"][0]["reason"] == "requires CUDA"
    assert card["total"] == 87


def test_summary_fields_are_the_documented_ones():
    assert set(SUMMARY_FIELDS) <= set(good_summary())
