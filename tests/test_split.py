"""Items split over worker processes (falsify/split.py) must report exactly what a serial run reports.

Each test runs pytest in a subprocess (pytester): the same selection once in one process
(`--falsify-jobs 1`) and once on two forked workers (`--falsify-jobs 2`), then compares the
per-item outcomes in terminal order, the `--falsify-results` evidence and the exit status.
The shipped hyperparameter contract supplies real falsifiers; the probes below cover the
pytest side (failures, skips, warnings, captured output, a worker killed mid-item).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONTRACT = Path(__file__).resolve().parents[1] / "contracts" / "hyperparameters.yaml"
PROBES = """\
import os, signal, time, warnings
import pytest

@pytest.mark.parametrize("n", range(6))
def test_records_its_process(n, tmp_path):
    time.sleep(0.1)
    print("captured output", n)
    (tmp_path / "pid").write_text(str(os.getpid()))
    pids = os.environ["PROBE_PIDS"]
    open(pids, "a").write(f"{os.getpid()}\\n")
    deadline = time.monotonic() + 60
    while os.environ.get("PROBE_BARRIER") and len(set(open(pids).read().split())) < 2:
        assert time.monotonic() < deadline, "no second process took a probe"  # it would, if there were one
        time.sleep(0.05)

def test_fails():
    assert 1 == 2, "planted failure"

def test_skips():
    pytest.skip("planted skip")

def test_warns():
    warnings.warn("a warning raised in a worker", UserWarning)

def test_crashes():
    if os.environ.get("PROBE_CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)
"""
OUTCOME_LINE = re.compile(r"^(.*::.*?) (PASSED|FAILED|SKIPPED|ERROR)\b.*\[ *\d+%\]$")


@pytest.fixture
def probes(pytester, monkeypatch):
    pytester.makepyfile(test_probes=PROBES)
    (pytester.path / "contracts").mkdir()
    (pytester.path / "contracts" / CONTRACT.name).write_text(CONTRACT.read_text())
    monkeypatch.setenv("PROBE_PIDS", str(pytester.path / "pids.txt"))
    monkeypatch.setenv("COLUMNS", "400")  # one line per item in -v output, however long its id
    return pytester


def run(pytester, jobs: int, *args: str):
    """One run; returns the result, its outcome lines in terminal order, and its evidence JSON."""
    results = pytester.path / f"results-{jobs}.json"
    (pytester.path / "pids.txt").write_text("")
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider",
                                           "--falsify-results", str(results),
                                           f"--falsify-jobs={jobs}", *args)
    lines = [m.groups() for m in map(OUTCOME_LINE.match, result.outlines) if m]
    evidence = [(i["nodeid"], i["outcome"], json.dumps(i["observed"], sort_keys=True))
                for i in json.loads(results.read_text())["items"]] if results.exists() else []
    pids = set((pytester.path / "pids.txt").read_text().split())
    return result, lines, evidence, pids


def test_split_run_reports_what_a_serial_run_reports(probes, monkeypatch):
    serial, serial_lines, serial_evidence, serial_pids = run(probes, 1)
    monkeypatch.setenv("PROBE_BARRIER", "1")  # a probe waits for one in another process: both workers take some
    split, split_lines, split_evidence, split_pids = run(probes, 2)
    assert len(serial_pids) == 1 and len(split_pids) == 2, "the items really ran in two workers"
    assert "items on 2 worker processes forked from this run (--falsify-jobs 2" in split.stdout.str()
    assert "items in this process (--falsify-jobs 1)" in serial.stdout.str()
    assert split_lines == serial_lines and len(split_lines) == 14 + 10  # same items, same order, same outcomes
    assert split_evidence == serial_evidence and len(split_evidence) == 14
    assert split.ret == serial.ret == 1
    for result in (serial, split):
        result.assert_outcomes(passed=22, failed=1, skipped=1, warnings=1)
        result.stdout.fnmatch_lines(["*planted failure*", "*a warning raised in a worker*"])
    assert "captured output" not in split.stdout.str()  # captured per item, as in a serial run


def test_a_worker_killed_inside_an_item_fails_that_item_and_the_rest_still_run(probes, monkeypatch):
    monkeypatch.setenv("PROBE_CRASH", "1")
    result, lines, _, _ = run(probes, 2)
    assert ("test_probes.py::test_crashes", "FAILED") in lines
    result.stdout.fnmatch_lines(["*worker process running this item*ended: killed by signal 9*"])
    result.assert_outcomes(passed=21, failed=2, skipped=1, warnings=1)


def test_exitfirst_stops_a_split_run(probes):
    result, lines, _, _ = run(probes, 2, "-x", "-k", "fails or records")
    assert result.ret == 1 and lines[-1] == ("test_probes.py::test_fails", "FAILED")
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_interactive_runs_are_not_split(probes):
    result, lines, _, pids = run(probes, 2, "-s", "-k", "records")
    assert len(pids) == 1 and "items in this process (not split: -s (no capture))" in result.stdout.str()
    assert result.ret == 0


def test_bad_jobs_value_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("--falsify-jobs", "two")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--falsify-jobs: expected 'auto' or a whole number >= 1, got 'two'*"])


def test_comparison_catches_a_forwarder_that_drops_failures(probes):
    """Planted defect: workers that lose their failure reports. The comparison above must see it."""
    probes.makeconftest("""
        from falsify import split

        send = split._Forwarder.pytest_runtest_logreport
        split._Forwarder.pytest_runtest_logreport = lambda self, report: None if report.failed else send(self, report)
    """)
    serial, serial_lines, _, _ = run(probes, 1)
    split, split_lines, _, _ = run(probes, 2)
    assert split_lines != serial_lines and split.ret != serial.ret
