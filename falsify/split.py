"""Run a forked tier-1 run's items on every core: worker processes forked from the run, one queue.

Why: after the warm interpreter (falsify/warm/) removed the imports, what is left of
`pytest -m tier1` is about 3 s of checks that run mostly single-threaded Python, on a
machine with 2 cores. Why not pytest-xdist: its workers are new interpreters, and each
would pay the 4 s torch/transformers import again; forks of the warm run share it.
What it buys (2026-12-03, alternating pairs, `python -m falsify.bench tier1`): median 2.5 s
against 3.1 s in one process on a quiet machine; with other work on both cores, 2.5 to 6.6 s
against 4.6 s (one torch thread) or 27 to 52 s (torch's default of a thread per core, which
spin on each other when the cores are busy). The 5 s tier-1 budget holds at load only split.

How (the run's own process is the coordinator and runs no item itself):
  * the selected items' indexes go into a pipe; each worker reads 2 bytes at a time
    (pipe reads that small are atomic), so the queue needs no lock and balances itself;
  * a worker runs each item through pytest's whole `pytest_runtest_protocol` (fixtures,
    capture, warnings, timeouts), with its terminal reporter removed, and sends every
    report and warning as one JSON line (pytest's own report serialization, as xdist does);
  * the coordinator replays them through its hooks in collection order, so the terminal,
    `--falsify-results`, junit-xml, `-x` and the exit status see what a serial run sees;
  * a worker that dies fails the item it was running (with the signal) and the items it
    had reserved run in the coordinator afterwards.
Runs forked from the warm interpreter use it by default (their heap holds torch and no thread
has started); any other run with `--falsify-jobs N`. `--falsify-jobs 1` runs the items in the
run's own process. Never with threads running or CUDA initialised (forking is unsafe then).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import threading
from dataclasses import dataclass, field

import pytest

from falsify.warm.protocol import send_signal
from falsify.warm.server import reseed

QUEUE_WORD = 2  # bytes per item index in the queue pipe (<= PIPE_BUF, so one read takes exactly one)
MIN_ITEMS_PER_WORKER = 4  # below this, forking and replaying costs more than it saves
MAX_WORKERS = 4


def workers_for(session, wanted: str) -> tuple[int, str]:
    """How many workers this run gets, and why (printed in the run's output)."""
    config = session.config
    torch = sys.modules.get("torch")
    for reason, present in (("--pdb", config.option.usepdb), ("--trace", config.getoption("trace", False)),
                            ("-s (no capture)", config.getoption("capture") == "no"),
                            ("threads are running", threading.active_count() > 1),
                            ("CUDA is initialised", torch is not None and torch.cuda.is_initialized())):
        if present:  # forking would be unsafe (threads, CUDA) or the run is interactive
            return 1, f"not split: {reason}"
    if wanted != "auto":
        return int(wanted), f"--falsify-jobs {wanted}"
    cpus = len(os.sched_getaffinity(0))
    n = max(1, min(cpus, MAX_WORKERS, len(session.items) // MIN_ITEMS_PER_WORKER))
    return n, f"{cpus} usable cores, {len(session.items)} items"


def runtestloop(session, forked: bool) -> bool | None:
    """pytest_runtestloop: split a warm run (or one given --falsify-jobs); None leaves the run to pytest."""
    wanted = session.config.getoption("falsify_jobs", default="auto")
    if wanted == "auto" and not forked:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        return None  # pytest's loop reports the collection errors
    if session.config.option.collectonly or len(session.items) < 2:
        return None
    n, why = workers_for(session, wanted)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None and (n > 1 or wanted != "auto"):
        terminal.write_line(f"falsify: {len(session.items)} items on {n} worker processes forked from this run "
                            f"({why}; --falsify-jobs 1 runs them in this process)" if n > 1 else
                            f"falsify: {len(session.items)} items in this process ({why})")
    if n < 2:
        return None
    session.config._tmp_path_factory.getbasetemp()
    Coordinator(session, n).run()
    return True


@dataclass
class Worker:
    pid: int
    stream: object  # the read end of its event pipe, as a binary file
    reserved: list[int] = field(default_factory=list)  # items it took and has not finished
    buffer: bytearray = field(default_factory=bytearray)
    reaped: bool = False  # after that its pid may belong to another process: never signal it


class Coordinator:
    """Forks the workers, collects their events, replays them in collection order."""

    def __init__(self, session, n: int):
        self.session, self.items, self.hook = session, session.items, session.config.hook
        self.events: dict[int, list[dict]] = {i: [] for i in range(len(self.items))}
        self.done: set[int] = set()
        self.replayed = 0
        self.leftover: list[int] = []  # reserved by a worker that died before starting them
        queue_r, queue_w = os.pipe()
        os.write(queue_w, b"".join(i.to_bytes(QUEUE_WORD, "little") for i in range(len(self.items))))
        os.close(queue_w)
        self.workers: list[Worker] = []
        for _ in range(n):
            out_r, out_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                for w in self.workers:
                    w.stream.close()
                os.close(out_r)
                _work(session, queue_r, out_w, n)  # never returns
            os.close(out_w)
            self.workers.append(Worker(pid, os.fdopen(out_r, "rb", buffering=0)))
        os.close(queue_r)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for w in self.workers:
            selector.register(w.stream, selectors.EVENT_READ, w)
        try:
            while selector.get_map():
                for key, _ in selector.select():
                    worker = key.data
                    chunk = worker.stream.read(65536)
                    if chunk:
                        self._feed(worker, chunk)
                    else:
                        selector.unregister(worker.stream)
                        self._ended(worker)
                self._replay()
            for n, i in enumerate(self.leftover):  # run here what a dead worker had reserved but not started
                following = self.leftover[n + 1] if n + 1 < len(self.leftover) else None
                self.hook.pytest_runtest_protocol(item=self.items[i],
                                                  nextitem=None if following is None else self.items[following])
                self._check_stop()
        finally:  # stopped early (-x, Ctrl-C, an error here): no worker outlives the run
            for w in self.workers:
                if not w.reaped:
                    send_signal(w.pid, signal.SIGKILL)
                    _reap(w)
                w.stream.close()

    def _feed(self, worker: Worker, chunk: bytes) -> None:
        worker.buffer.extend(chunk)
        *lines, rest = worker.buffer.split(b"\n")
        worker.buffer[:] = rest
        for line in lines:
            event = json.loads(line)
            i = event["i"]
            if event["kind"] == "take":
                worker.reserved.append(i)
            elif event["kind"] == "done":
                worker.reserved.remove(i)
                self.done.add(i)
            else:
                self.events[i].append(event)

    def _ended(self, worker: Worker) -> None:
        status = _reap(worker)
        if not worker.reserved:
            return
        running, *later = worker.reserved
        if not self.events[running]:
            later.insert(0, running)
        else:  # it died inside this item: the item fails, saying how
            item = self.items[running]
            how = f"killed by signal {-status}" if status is not None and status < 0 else f"exit status {status}"
            self.events[running].append({"kind": "report", "data": _crash_report(self.hook, item, worker.pid, how)})
            self.events[running].append({"kind": "logfinish", "nodeid": item.nodeid, "location": item.location})
            self.done.add(running)
        for i in later:
            self.done.add(i)  # replayed as nothing; run afterwards in this process
            self.leftover.append(i)
        worker.reserved.clear()

    def _replay(self) -> None:
        config = self.session.config
        while self.replayed < len(self.items) and self.replayed in self.done:
            for event in self.events.pop(self.replayed):
                kind = event["kind"]
                if kind == "logstart":
                    self.hook.pytest_runtest_logstart(nodeid=event["nodeid"], location=tuple(event["location"]))
                elif kind == "logfinish":
                    self.hook.pytest_runtest_logfinish(nodeid=event["nodeid"], location=tuple(event["location"]))
                elif kind == "report":
                    report = self.hook.pytest_report_from_serializable(config=config, data=event["data"])
                    _retuple(report)
                    self.hook.pytest_runtest_logreport(report=report)
                elif kind == "warning":
                    self.hook.pytest_warning_recorded.call_historic(kwargs=dict(
                        warning_message=_warning(event), when="runtest", nodeid=event["nodeid"], location=None))
            self.replayed += 1
            self._check_stop()

    def _check_stop(self) -> None:
        if self.session.shouldfail:
            raise self.session.Failed(self.session.shouldfail)
        if self.session.shouldstop:
            raise self.session.Interrupted(self.session.shouldstop)


# --- the worker ------------------------------------------------------------------------------------------

class _Forwarder:
    """A worker's stand-in for the terminal: every event becomes one JSON line to the coordinator."""

    def __init__(self, config, out_fd: int):
        self.config, self.out_fd, self.current = config, out_fd, None

    def send(self, kind: str, i: int | None = None, **fields) -> None:
        data = json.dumps({"kind": kind, "i": self.current if i is None else i, **fields}, default=str).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.out_fd, view):]

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.send("logstart", nodeid=nodeid, location=location)

    def pytest_runtest_logreport(self, report) -> None:
        self.send("report", data=self.config.hook.pytest_report_to_serializable(config=self.config, report=report))

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.send("logfinish", nodeid=nodeid, location=location)

    def pytest_warning_recorded(self, warning_message, when, nodeid, location) -> None:
        if when == "runtest":  # earlier ones (config, collection) the coordinator recorded itself
            category = warning_message.category
            self.send("warning", nodeid=nodeid, message=str(warning_message.message),
                      category=f"{category.__module__}.{category.__qualname__}",
                      filename=warning_message.filename, lineno=warning_message.lineno)


def _share_cores(n_workers: int) -> None:
    """One intra-op thread per core between the workers: torch's default (all cores in each
    worker) made a 2-worker run on 2 cores ten times slower, its threads spinning on each other."""
    threads = max(1, len(os.sched_getaffinity(0)) // n_workers)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:  # read when torch is imported
        os.environ["OMP_NUM_THREADS"] = str(threads)


def _work(session, queue_fd: int, out_fd: int, n_workers: int) -> None:
    """A worker's life: fresh capture files and seeds, then items from the queue until it is empty."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the coordinator stops its workers itself
        config = session.config
        manager = config.pluginmanager
        terminal = manager.get_plugin("terminalreporter")
        if terminal is not None:
            manager.unregister(terminal)
        capture = manager.get_plugin("capturemanager")
        if capture is not None and capture._global_capturing is not None:
            # The inherited capture files are shared with the other processes (one file offset):
            # close this process's copies, without reading them, and open its own.
            capture._global_capturing.stop_capturing()
            capture._global_capturing = None
            capture.start_global_capturing()
            capture.suspend_global_capture()
        forwarder = _Forwarder(config, out_fd)
        manager.register(forwarder, "falsify-split-forwarder")
        reseed()  # a fresh process draws new seeds; forks would share them
        _share_cores(n_workers)
        items = session.items

        def take() -> int | None:
            word = os.read(queue_fd, QUEUE_WORD)
            if not word:
                return None
            forwarder.send("take", int.from_bytes(word, "little"))
            return int.from_bytes(word, "little")

        current = take()
        while current is not None:
            following = take()
            forwarder.current = current
            config.hook.pytest_runtest_protocol(item=items[current], nextitem=None if following is None else items[following])
            forwarder.send("done")
            current = following
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 3
    finally:
        os._exit(code)


# --- helpers ---------------------------------------------------------------------------------------------

def _crash_report(hook, item, pid: int, how: str) -> dict:
    from _pytest.reports import TestReport

    report = TestReport(nodeid=item.nodeid, location=item.location, keywords={k: 1 for k in item.keywords},
                        outcome="failed", when="call", sections=[], duration=0.0, user_properties=[],
                        longrepr=f"the worker process running this item (pid {pid}, forked from this run to use "
                                 f"another core) ended: {how}. Rerun with --falsify-jobs 1 to run it in the main process.")
    return hook.pytest_report_to_serializable(config=item.config, report=report)


def _retuple(report) -> None:
    """JSON made lists of the tuples pytest expects (a skip's longrepr, the location, user properties)."""
    report.location = tuple(report.location)
    if isinstance(report.longrepr, list):
        report.longrepr = tuple(report.longrepr)
    report.user_properties = [tuple(p) for p in report.user_properties]


def _warning(event: dict):
    import importlib
    import warnings

    module, _, name = event["category"].rpartition(".")
    try:
        category = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        category = UserWarning
    return warnings.WarningMessage(category(event["message"]), category, event["filename"], event["lineno"])


def _reap(worker: Worker) -> int | None:
    """The worker's exit code (negative: killed by that signal)."""
    worker.reaped = True
    try:
        return os.waitstatus_to_exitcode(os.waitpid(worker.pid, 0)[1])
    except ChildProcessError:
        return None


def add_option(parser) -> None:
    def jobs(value: str) -> str:
        if value == "auto" or (value.isdigit() and int(value) >= 1):
            return value
        raise pytest.UsageError(f"--falsify-jobs: expected 'auto' or a whole number >= 1, got {value!r}")

    parser.getgroup("falsify").addoption(
        "--falsify-jobs", default="auto", type=jobs, metavar="N",
        help="worker processes for a run forked from the warm interpreter (default auto: one per usable core, "
             "at most 4; 1 runs the items in the run's own process)")
