"""The contracts plugin and loader: collection, naming, markers, failure reports, bad input, lint."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from falsify import contracts
from falsify.lint import main as lint_main

pytest_plugins = ["pytester"]

GOOD = (Path(__file__).parent / "data" / "demo-contract.yaml").read_text()  # shared with test_warm.py
RUBRIC = {"x3_assertions_meaningful", "r1_same_loss_curve"}


@pytest.fixture(autouse=True)
def known_rubric(monkeypatch):
    """Pin the rubric ids these tests use (the real rubric is tested on its own)."""
    monkeypatch.setattr(contracts, "rubric_ids", lambda: set(RUBRIC))


def write(pytester, name: str, text: str):
    path = pytester.path / "contracts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_items_are_named_marked_and_pass(pytester):
    write(pytester, "demo.yaml", GOOD)
    result = pytester.runpytest("contracts", "-m", "tier1", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*demo-v1::FALSIFY-DEMO-001?rule=C-HP-003,expect=warn,*PASSED*"])


def test_nodeids_select_a_contract_a_falsifier_or_one_param_set(pytester):
    """The ids printed in a report can be pasted back on the command line (as for any pytest test)."""
    write(pytester, "demo.yaml", GOOD)
    listed = pytester.runpytest("contracts", "--collect-only", "-q", "-p", "no:cacheprovider").stdout.lines
    one = next(line for line in listed if "expect=ok" in line)
    assert one.startswith("contracts/demo.yaml::demo-v1::FALSIFY-DEMO-001[")
    for selector, count in ((one, 1), ("contracts/demo.yaml::demo-v1::FALSIFY-DEMO-001", 2),
                            ("contracts/demo.yaml::demo-v1", 2)):
        pytester.runpytest(selector, "-p", "no:cacheprovider").assert_outcomes(passed=count)


def test_failure_shows_claim_prediction_observed_and_if_fails(pytester):
    write(pytester, "demo.yaml", GOOD.replace("expect: warn", "expect: ok", 1))
    result = pytester.runpytest("contracts", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*REFUTED demo-v1::FALSIFY-DEMO-001*demo.yaml:6*", "*claim:*alpha rule*",
                                 "*prediction:*alpha = rank is flagged*", "*observed:*C-HP-003*warn (expected ok)*",
                                 "*if_fails:*the rule is not applied*"])


@pytest.mark.parametrize("mutate, expected", [
    (lambda t: t.replace("    prediction:", "    predicton:"),
     "*demo.yaml:12: contract demo-v1 falsifier FALSIFY-DEMO-001: field 'falsifiers.0.predicton': is unknown*"),
    (lambda t: t.replace("tier: tier1", "tier: tier9"),
     "*demo.yaml:7: contract demo-v1 falsifier FALSIFY-DEMO-001: field 'falsifiers.0.tier': expected one of tier1, tier2, tier3*"),
    (lambda t: t.replace("check: hyperparameter_rule", "check: no_such_check"),
     "*field 'falsifiers.0.check': unknown check 'no_such_check'*"),
    (lambda t: t.replace("expect: warn,", "expectation: warn,"),
     "*field 'falsifiers.0.parametrize.0': check hyperparameter_rule: unknown param 'expectation'*missing required param 'expect'*"),
    (lambda t: t.replace("version: 1.0.0\n", ""), "*demo.yaml*missing required key(s): version*"),
    (lambda t: t.replace("status: active", "status: [active"), "*demo.yaml:4: YAML syntax error*"),
    (lambda t: t.replace("    tier: tier1\n", "    tier: tier1\n    tier: tier2\n"),
     "*demo.yaml:8: key 'falsifiers.0.tier' appears twice (first on line 7)*"),
    (lambda t: t.replace("[x3_assertions_meaningful]", "[x9_nonexistent]"),
     "*field 'falsifiers.0.rubric': unknown rubric item(s) ['x9_nonexistent']*"),
    (lambda t: t.replace("version: 1.0.0", "version: v1"), "*field 'version': expected semantic version*"),
    (lambda t: t[: t.index("falsifiers:")] + "falsifiers: []\n", "*field 'falsifiers': a contract needs at least one falsifier*"),
])
def test_bad_contract_is_an_error_item_and_the_rest_still_runs(pytester, mutate, expected):
    write(pytester, "demo.yaml", mutate(GOOD))
    write(pytester, "other.yaml", GOOD.replace("demo-v1", "other-v1").replace("FALSIFY-DEMO", "FALSIFY-OTHER"))
    result = pytester.runpytest("contracts", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([expected.replace("[", "[[]")])
    assert lint_main([str(pytester.path / "contracts" / "demo.yaml")]) == 1


def test_lint_counts_tiers_and_rejects_duplicates(pytester, capsys):
    write(pytester, "demo.yaml", GOOD)
    assert lint_main([str(pytester.path / "contracts")]) == 0
    assert "1 contracts verified" in capsys.readouterr().out
    write(pytester, "twin.yaml", GOOD.replace("demo-v1", "twin-v1"))
    assert lint_main([str(pytester.path / "contracts")]) == 1
    assert "FALSIFY-DEMO-001: field 'id': duplicate of the one in" in capsys.readouterr().err


def test_lint_on_missing_path_is_an_error(tmp_path, capsys):
    assert lint_main([str(tmp_path / "nope")]) == 1
    assert "no such contract file or directory" in capsys.readouterr().err


def test_tier3_without_cuda_is_skipped_with_reason_not_empty(pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the skip path is for machines without it")
    write(pytester, "gpu.yaml", GOOD.replace("tier: tier1", "tier: tier3\n    requires: [cuda]"))
    result = pytester.runpytest("contracts", "-m", "tier3", "-rs", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*requires CUDA, which this machine does not have*"])


def test_results_json_records_outcomes_and_evidence(pytester):
    write(pytester, "demo.yaml", GOOD.replace("expect: ok", "expect: warn"))
    out = pytester.path / "results.json"
    pytester.runpytest("contracts", f"--falsify-results={out}", "-p", "no:cacheprovider")
    data = json.loads(out.read_text())
    outcomes = sorted((i["falsifier"], i["outcome"]) for i in data["items"])
    assert outcomes == [("FALSIFY-DEMO-001", "failed"), ("FALSIFY-DEMO-001", "passed")]
    passed = next(i for i in data["items"] if i["outcome"] == "passed")
    assert passed["observed"]["level"] == "warn" and passed["rubric"] == ["x3_assertions_meaningful"]
    assert passed["tier"] == "tier1" and passed["contract"] == "demo-v1"


def test_retired_contracts_are_not_collected(pytester):
    write(pytester, "demo.yaml", GOOD.replace("status: active", "status: retired"))
    result = pytester.runpytest("contracts", "-p", "no:cacheprovider")
    assert result.ret == 5  # nothing collected: the CI script turns this into a failure


def test_shipped_contracts_lint_clean(capsys, monkeypatch, request):
    monkeypatch.undo()  # the real rubric this time
    root = request.config.rootpath
    assert lint_main([str(root / "contracts")]) == 0, capsys.readouterr().err
    assert "0 with errors" in capsys.readouterr().out
