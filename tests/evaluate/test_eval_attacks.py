"""The project's own adversarial suite (README, "Threat model"): generated tests that try to forge a pass.

Each file in `attacks/` is the tests of one sample for `clamp` (eval_cases.CLAMP), headed by
comment lines that say what it attacks and which verdict it must get:

    // attack: <what it tries, in words>
    // expect: <failure kind with every layer on>
    // expect-unrefused: <failure kind with static refusal off>   (optional)

`expect-unrefused` is how the suite proves the run-time layers on their own: an attack the
static refusal stops must still fail when it runs. `none` means "passes" (a control).
Runs cargo: the whole suite is evaluated in two evaluator runs (static refusal on, off).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import psutil
import pytest
from eval_cases import CLAMP, sample

from falsify.evaluate import evaluate_samples
from falsify.evaluate.sandbox import SANDBOX_UID_BASE

ATTACKS = Path(__file__).parent / "attacks"
# Issue 15's classes; a file's name starts with its class (early_exit_ffi.rs, forged_output_summary.rs, ...)
CLASSES = ("control", "early_exit", "forged_output", "code_before_main", "panic_hook", "should_panic",
           "weak_assertion", "host_leak", "disk_write")
HEADER = re.compile(r"^// (attack|expect|expect-unrefused): (.+)$", re.M)
DISK_LIMIT_MB = 32  # the disk_write attacks fill this much, not the default 256 MiB
# What the host_leak attacks leave behind if the sandbox lets them: file names and a daemon's command line.
LEAK_NAMES = ("rtf-attack-leak-*", "rtf-daemon-was-here")


def _attacks() -> dict[str, dict[str, str]]:
    found = {}
    for path in sorted(ATTACKS.glob("*.rs")):
        header = dict(HEADER.findall(path.read_text()))
        assert {"attack", "expect"} <= set(header), f"{path.name}: needs `// attack:` and `// expect:` header lines"
        found[path.stem] = header | {"tests": path.read_text()}
    return found


def _verdicts(tmp_path: Path, attacks: dict[str, dict[str, str]], static_refusal: bool) -> dict[str, dict]:
    rows = [sample(name, CLAMP, a["tests"]) for name, a in attacks.items()]
    evaluate_samples(rows, tmp_path, jobs=2, mutation=True, coverage=False, timeout=10.0, build_timeout=60.0, reruns=1,
                     static_refusal=static_refusal, disk_limit_mb=DISK_LIMIT_MB)
    return {r["id"]: r for r in map(json.loads, (tmp_path / "samples.jsonl").read_text().splitlines())}


def _kind(expect: str) -> str | None:
    return None if expect.strip() == "none" else expect.strip()


def test_the_suite_has_an_attack_per_class():
    names = list(_attacks())
    missing = [c for c in CLASSES if not any(n.startswith(c) for n in names)]
    stray = [n for n in names if not n.startswith(CLASSES)]
    assert not missing and not stray, {"classes without an attack": missing, "files of no class": stray}


@pytest.mark.slow
def test_every_attack_gets_its_verdict(tmp_path):
    attacks = _attacks()
    records = _verdicts(tmp_path, attacks, static_refusal=True)
    wrong = {name: (records[name]["failure"], records[name]["reasons"][-3:]) for name, a in attacks.items()
             if records[name]["failure"] != _kind(a["expect"])}
    assert not wrong, wrong
    names = [arg for n in LEAK_NAMES for arg in ("-o", "-name", n)][1:]
    left = subprocess.run(["find", "/", "/dev/shm", "-xdev", "-uid", f"+{SANDBOX_UID_BASE - 1}", "(", *names, ")"],
                          capture_output=True, text=True).stdout.split()
    alive = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if LEAK_NAMES[1] in " ".join(p.info["cmdline"] or [])]
    assert not left and not alive, {"files left on the host": left, "processes still running": alive}


@pytest.mark.slow
def test_run_time_layers_catch_attacks_without_static_refusal(tmp_path):
    attacks = {name: a for name, a in _attacks().items() if "expect-unrefused" in a}
    if not attacks:
        pytest.fail("no attack declares `// expect-unrefused:`; the run-time layers are untested")
    records = _verdicts(tmp_path, attacks, static_refusal=False)
    wrong = {name: (records[name]["failure"], records[name]["reasons"][-3:]) for name, a in attacks.items()
             if records[name]["failure"] != _kind(a["expect-unrefused"])}
    assert not wrong, wrong
