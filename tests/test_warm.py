"""The warm interpreter (falsify/warm/): a forked run must behave exactly like a cold one.

Each test drives real processes: a server started with `python -m falsify.warm start` in a
private socket directory, and `python -m pytest -m tier1` in a scratch project whose
contracts and probe tests are cheap. A warm run and a cold run of the same selection must
give the same outcomes and exit status; everything else here is about not lying (stale
servers refused, project code imported fresh) and not leaking (killed callers stop their run,
and nothing but `start` starts a server).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# The plugin tests' demo contract with its second case made wrong, so that a run fails (exit 1).
CONTRACT = (Path(__file__).parent / "data" / "demo-contract.yaml").read_text().replace("expect: ok", "expect: warn")
PROBES = """\
import json, os, signal, time
import pytest

@pytest.mark.tier1
def test_fresh_project_code():
    import falsify.warm
    run = json.loads(os.environ.get("FALSIFY_WARM_FORKED", "{}")).get("pid", os.getpid())  # a split run's workers: their parent
    assert falsify.warm.LOADED_IN_PID in (os.getpid(), run), "falsify.warm came from the server, not from disk"

@pytest.mark.tier1
def test_sleep_probe():
    if "PROBE_PID_FILE" not in os.environ:
        pytest.skip("only with PROBE_PID_FILE")
    open(os.environ["PROBE_PID_FILE"], "w").write(str(os.getpid()))
    time.sleep(120)

@pytest.mark.tier1
def test_crash_probe():
    if "PROBE_CRASH" not in os.environ:
        pytest.skip("only with PROBE_CRASH")
    os.kill(os.getpid(), signal.SIGKILL)
"""
SUMMARY = re.compile(r"(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s")


def _env(warm_dir: str, **extra) -> dict:
    """Use a server in `warm_dir` (if one is running there)."""
    env = {**os.environ, "FALSIFY_WARM_DIR": warm_dir, **extra}
    env.pop("FALSIFY_WARM", None)
    return env


def _warm(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falsify.warm", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd="/")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("warm-project")
    (root / "contracts").mkdir()
    (root / "contracts" / "demo.yaml").write_text(CONTRACT)
    (root / "test_probes.py").write_text(PROBES)
    return root


@pytest.fixture(scope="module")
def server():
    """A warm interpreter in its own socket directory (short: a Unix socket path has 107 bytes)."""
    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir)
    started = _warm(["start", "--idle-timeout", "600"], env)
    assert started.returncode == 0, started.stderr
    yield env
    stopped = _warm(["stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while any(Path(warm_dir).glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(warm_dir).glob("*.sock")), "the socket outlived the server"
    shutil.rmtree(warm_dir, ignore_errors=True)


def _pytest(project: Path, env: dict, *args: str, **popen) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-m", "tier1", "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300, **popen)


def _runs(env: dict) -> int:
    return json.loads(_warm(["status", "--json"], env).stdout)["runs"]


@pytest.mark.parametrize("jobs", ["auto", "2"])  # auto: too few items to split; 2: on two forked workers
def test_warm_run_gives_the_cold_outcomes(project, server, tmp_path, jobs):
    before = _runs(server)
    warm = _pytest(project, server, "--falsify-results", str(tmp_path / "warm.json"), f"--falsify-jobs={jobs}")
    assert ("items on 2 worker processes" in warm.stdout) == (jobs == "2")
    cold = _pytest(project, {**server, "FALSIFY_WARM": "0"}, "--falsify-results", str(tmp_path / "cold.json"))
    assert _runs(server) == before + 1, "exactly the warm run went through the server"
    assert "forked from the warm interpreter" in warm.stdout and "forked" not in cold.stdout
    assert warm.returncode == cold.returncode == 1  # one refuted prediction in the demo contract
    assert SUMMARY.findall(warm.stdout)[-1] == SUMMARY.findall(cold.stdout)[-1] == "1 failed, 2 passed, 2 skipped"
    assert "REFUTED demo-v1::FALSIFY-DEMO-001" in warm.stdout
    outcomes = [{(i["nodeid"], i["outcome"], json.dumps(i["observed"], sort_keys=True)) for i in
                 json.loads((tmp_path / f"{name}.json").read_text())["items"]} for name in ("warm", "cold")]
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) == 2


def test_project_code_is_imported_from_disk_in_each_run(project, server):
    result = _pytest(project, server, "-k", "fresh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forked from the warm interpreter" in result.stdout


def test_the_pytest_command_uses_the_server(project, server):
    """`pytest` (the console script, whose interpreter path differs from sys.executable's) is served too."""
    script = Path(sys.executable).parent / "pytest"
    result = subprocess.run([str(script), "-m", "tier1", "-p", "no:cacheprovider", "-k", "fresh"], cwd=project,
                            env=server, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forked from the warm interpreter" in result.stdout, result.stderr


def test_stale_server_is_refused_with_the_reason_and_the_run_goes_cold(project, server):
    before = _runs(server)
    result = _pytest(project, {**server, "HF_PROBE_SETTING": "1"}, "-k", "fresh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "server not used (environment variables differ: HF_PROBE_SETTING" in result.stderr
    assert _runs(server) == before and "forked" not in result.stdout


def test_other_selections_never_use_the_server(project, server):
    before = _runs(server)
    result = _pytest(project, server, "-k", "fresh", "-m", "tier1 or tier2")  # the last -m wins
    assert result.returncode == 0 and _runs(server) == before


def test_no_server_and_a_dead_socket(project, tmp_path):
    cold = _pytest(project, _env(str(tmp_path)), "-k", "fresh")
    hint = [line for line in cold.stderr.splitlines() if line.startswith("falsify.warm:")]
    assert cold.returncode == 0 and "forked" not in cold.stdout
    assert hint == ["falsify.warm: no warm interpreter is running; this run is cold. `python -m falsify.warm start` "
                    "(or `make tier1`) makes the next runs skip the imports"]
    import socket

    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir)
    path = _socket_path(env)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # a socket file nobody listens on (a server killed with -9)
    dead.close()
    result = _pytest(project, env, "-k", "fresh")
    assert result.returncode == 0 and "no server answers" in result.stderr and not path.exists()
    shutil.rmtree(warm_dir, ignore_errors=True)


def _socket_path(env: dict) -> Path:
    code = "from falsify.warm import protocol; print(protocol.socket_path())"
    return Path(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True).stdout.strip())


def _wait_for(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout} s")


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


SLEEP_SELECTIONS = {"serial": ["-k", "sleep"], "split": ["-k", "sleep or fresh", "--falsify-jobs=2"]}


@pytest.mark.parametrize("selection", SLEEP_SELECTIONS)
def test_killed_caller_stops_its_run(project, server, tmp_path, selection):
    pid_file = tmp_path / "probe.pid"
    caller = subprocess.Popen([sys.executable, "-m", "pytest", "-m", "tier1", "-p", "no:cacheprovider",
                               *SLEEP_SELECTIONS[selection]],
                              cwd=project, env={**server, "PROBE_PID_FILE": str(pid_file)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = int(_wait_for(pid_file))
    assert run != caller.pid  # the test runs in the server's fork, not in the caller
    caller.kill()
    caller.wait()
    assert _gone(run), f"run {run} kept going after its caller was killed"


@pytest.mark.parametrize("selection", SLEEP_SELECTIONS)
def test_ctrl_c_reaches_the_run(project, server, tmp_path, selection):
    pid_file = tmp_path / "probe.pid"
    caller = subprocess.Popen([sys.executable, "-m", "pytest", "-m", "tier1", "-p", "no:cacheprovider",
                               *SLEEP_SELECTIONS[selection]],
                              cwd=project, env={**server, "PROBE_PID_FILE": str(pid_file)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = int(_wait_for(pid_file))
    caller.send_signal(signal.SIGINT)
    out, _ = caller.communicate(timeout=60)
    assert caller.returncode == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out and _gone(run)


def test_a_run_killed_by_a_signal_reports_it(project, server):
    result = _pytest(project, {**server, "PROBE_CRASH": "1"}, "-k", "crash")
    assert result.returncode == 128 + signal.SIGKILL


def test_status_reports_what_was_preloaded_and_nothing_of_the_project(server):
    status = json.loads(_warm(["status", "--json"], server).stdout)
    assert status["usable"] is True and status["why_not"] is None
    assert {"torch", "transformers", "hypothesis", "pytest"} <= set(status["versions"])
    text = _warm(["status"], server)
    assert text.returncode == 0 and re.match(rf"warm interpreter pid {status['pid']}, up \d+ s, \d+ runs, preloaded in "
                                             r"[\d.]+ s; usable from this environment$", text.stdout.strip()), text.stdout
    stale = _warm(["status"], {**server, "HF_PROBE_SETTING": "1"})
    assert stale.returncode == 0 and "NOT usable: environment variables differ: HF_PROBE_SETTING" in stale.stdout


def test_status_without_a_server_says_how_to_start_one(tmp_path):
    result = _warm(["status"], _env(str(tmp_path)))
    assert result.returncode == 1 and "no warm interpreter is running" in result.stderr
    assert "start one with: python -m falsify.warm start" in result.stderr


def test_preloading_refuses_project_modules():
    """The guard that keeps stale project code out of every fork (shown by planting it)."""
    code = "import trainer.config\nfrom falsify.warm import server\nserver.preload()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "project modules were preloaded: trainer, trainer.config" in result.stderr


def test_probe_fails_when_the_server_leaks_its_own_copy(project, tmp_path):
    """Planted defect: a server that does not forget the project's modules fails the fresh-import probe."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""\
        import falsify.warm.server
        falsify.warm.server.purge_project_modules = lambda: None
    """))
    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir, PYTHONPATH=str(site))
    assert _warm(["start", "--idle-timeout", "120"], env).returncode == 0
    try:
        result = _pytest(project, env, "-k", "fresh")
        assert "forked from the warm interpreter" in result.stdout
        assert result.returncode == 1 and "falsify.warm came from the server" in result.stdout
    finally:
        _warm(["stop"], env)
        shutil.rmtree(warm_dir, ignore_errors=True)


def test_idle_server_exits_and_removes_its_socket():
    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir)
    served = _warm(["serve", "--idle-timeout", "1"], env, timeout=120)
    assert served.returncode == 0, served.stderr
    assert "exiting: idle for 1 s" in served.stderr and not any(Path(warm_dir).glob("*.sock"))
    shutil.rmtree(warm_dir, ignore_errors=True)


def test_a_second_server_is_refused(server):
    second = _warm(["serve"], server)
    assert second.returncode == 1 and "already running" in second.stderr
    assert json.loads(_warm(["status", "--json"], server).stdout)["usable"] is True


def _holder(env: dict) -> int | None:
    code = "from falsify.warm import protocol; print(protocol.holder())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    return None if out == "None" else int(out)


def test_cold_runs_start_no_server(project):
    """Opt-in: `pytest -m tier1` never spawns a daemon, however often it runs cold."""
    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir)
    try:
        for _ in range(2):
            cold = _pytest(project, env, "-k", "fresh")
            assert cold.returncode == 0 and "forked" not in cold.stdout
            assert "no warm interpreter is running; this run is cold" in cold.stderr
        time.sleep(0.5)  # a server spawned in the background would hold the lock from its first instant
        assert _holder(env) is None and not any(Path(warm_dir).glob("*.sock"))
        off = _pytest(project, {**env, "FALSIFY_WARM": "0"}, "-k", "fresh")
        assert off.returncode == 0 and "forked" not in off.stdout and "falsify.warm" not in off.stderr
    finally:
        shutil.rmtree(warm_dir, ignore_errors=True)


def test_a_starting_server_is_not_waited_for(project):
    """A process holding the lock without a socket is "starting": the run goes cold at once and says so."""
    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir)
    lock = _socket_path(env).with_suffix(".lock")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, str(os.getpid()).encode())
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _pytest(project, env, "-k", "fresh")
        assert f"a warm interpreter is still starting (pid {holder.pid}); this run is cold" in result.stderr
        assert result.returncode == 0 and "forked" not in result.stdout
        status = _warm(["status"], env)
        assert status.returncode == 1 and f"a warm interpreter is starting (pid {holder.pid}" in status.stderr
    finally:
        holder.kill()
        holder.wait()
        shutil.rmtree(warm_dir, ignore_errors=True)


def test_start_right_after_stop_gets_a_new_server():
    """`stop` returns once the server has exited, so a `start` right after never mistakes it for a starting one."""
    warm_dir = tempfile.mkdtemp(prefix="rtf-warm-")
    env = _env(warm_dir)
    try:
        assert _warm(["start", "--idle-timeout", "120"], env).returncode == 0
        first = json.loads(_warm(["status", "--json"], env).stdout)["pid"]
        stopped = _warm(["stop"], env)
        assert stopped.returncode == 0 and f"stopped warm interpreter pid {first}" in stopped.stdout
        restarted = _warm(["start", "--idle-timeout", "120"], env)
        assert restarted.returncode == 0, restarted.stderr
        assert json.loads(_warm(["status", "--json"], env).stdout)["pid"] != first
    finally:
        _warm(["stop"], env)
        shutil.rmtree(warm_dir, ignore_errors=True)
