"""Two evaluator processes on one machine must not share a sandbox uid (each run kills its uid's processes)."""

import subprocess
import sys

import pytest

from falsify.evaluate.run import claim_slots


def test_claimed_slots_are_exclusive_until_released():
    first = claim_slots(2)
    second = claim_slots(2)
    assert not set(first) & set(second)
    for fh in first.values():
        fh.close()
    third = claim_slots(1)
    assert set(third) & set(first)  # released slots are reused
    for fh in [*second.values(), *third.values()]:
        fh.close()


@pytest.mark.slow
def test_two_concurrent_evaluations_both_judge_correctly():
    code = ("from falsify.checks import CHECKS; v = CHECKS['evaluator_discriminates'](); "
            "print(v.message); raise SystemExit(0 if v.passed else 1)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(3)]
    results = [(p.wait(timeout=600), p.stdout.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results


def test_temp_files_of_a_run_do_not_outlive_it(tmp_path):
    """The linker (cc) and the tests write temp files: TMPDIR is the run's private /tmp, a tmpfs gone with the run."""
    import os

    from falsify.evaluate.run import claimed_uid
    from falsify.evaluate.sandbox import Limits, run_sandboxed

    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")
    os.chmod(tmp_path, 0o755)
    name = f"rtf-cc-temp-{os.getpid()}"
    with claimed_uid() as uid:
        run = run_sandboxed(["sh", "-c", f'echo leak > "$TMPDIR/{name}" && echo "$TMPDIR"'], cwd=tmp_path, uid=uid,
                            limits=Limits(wall_s=10), env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "/tmp" and not os.path.exists(f"/tmp/{name}")
