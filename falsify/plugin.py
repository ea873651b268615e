"""pytest plugin: YAML contracts become pytest items (after pytest's "non-python tests" example).

One item per falsifier and parameter set, named `contract_id::falsifier_id[params]`,
marked with its tier (and `gpu` when it needs CUDA). A contract that fails to load
becomes one failing item naming the file, line and field; the rest of the suite runs.
`--falsify-results FILE` writes every falsifier outcome with its observed evidence as
JSON, for the scorecard (machine-readable; nothing scrapes pytest's text).
`pytest -m tier1` hands itself to the warm interpreter when one is running (falsify/warm/;
`python -m falsify.warm start` or `make tier1` starts it); a run forked from it spreads its
items over the cores (falsify/split.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from falsify import contracts as _contracts
from falsify.contracts import ContractError, Falsifier, load_contract, param_label
from trainer.files import write_atomic

MARKERS = {
    "tier1": "falsifier tier 1: CPU, seconds, on every save",
    "tier2": "falsifier tier 2: CPU integration (short real trainings), on every commit",
    "tier3": "falsifier tier 3: GPU, nightly; skipped with the reason where CUDA is absent",
    "gpu": "needs CUDA",
}
RESULTS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("falsify", "YAML contracts")
    group.addoption("--contracts", action="append", default=[], metavar="PATH",
                    help="contract file or directory to collect (besides contracts/ dirs on the command line)")
    group.addoption("--falsify-results", metavar="FILE", help="write falsifier outcomes and evidence as JSON")
    from falsify import split

    split.add_option(parser)


def pytest_configure(config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[RESULTS_KEY] = {}
    extra = [Path(p).resolve() for p in config.getoption("contracts", default=[]) or []]
    config._falsify_extra = extra
    for path in extra:
        if not path.exists():
            raise pytest.UsageError(f"--contracts {path}: no such file or directory")
        config.args.append(str(path))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """`pytest -m tier1` runs in a fork of the warm interpreter when one is running (falsify/warm/);
    without one it runs here, cold, and says how to start one. FALSIFY_WARM=0: always here, silently."""
    from falsify.warm import client, protocol

    if (config.option.markexpr.strip() != protocol.SERVED_MARKEXPR or config.invocation_params.plugins
            or protocol.FORKED_ENV in os.environ or os.environ.get("FALSIFY_WARM") == "0"):
        return None
    return client.handoff(list(config.invocation_params.args), config.invocation_params.dir)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """A run forked from the warm interpreter spreads its items over the cores (falsify/split.py)."""
    from falsify import split

    return split.runtestloop(session, forked=_fork_info() is not None)


def _fork_info() -> dict | None:
    """What the warm interpreter told this process when it forked it; None in any other process
    (the run's own subprocesses inherit the variable, but they start cold)."""
    from falsify.warm import protocol

    info = json.loads(os.environ.get(protocol.FORKED_ENV, "{}"))
    return info if info.get("pid") == os.getpid() else None


def pytest_report_header(config):
    info = _fork_info()
    if info is not None:
        return (f"falsify: forked from the warm interpreter (pid {info['server']}; preloaded "
                f"{', '.join(info['preloaded'])} in {info['preload_s']} s; FALSIFY_WARM=0 runs cold)")
    return None


def _is_contract(file_path: Path, config) -> bool:
    if file_path.suffix not in (".yaml", ".yml"):
        return False
    if file_path.parent.name == "contracts":
        return True
    return any(file_path == p or p in file_path.parents for p in getattr(config, "_falsify_extra", []))


def pytest_collect_file(parent, file_path: Path):
    if _is_contract(file_path, parent.config):
        return ContractFile.from_parent(parent, path=file_path)
    return None


class ContractFile(pytest.File):
    def collect(self):
        try:
            contract = load_contract(self.path, known_rubric=_contracts.rubric_ids())
        except ContractError as exc:
            yield ContractLoadError.from_parent(self, name="load", message=str(exc))
            return
        if contract.active:
            yield ContractNode.from_parent(self, name=contract.id, contract=contract)


class ContractNode(pytest.Collector):
    """One contract: a level of its own, so `file.yaml::contract-id::FALSIFIER-ID` selects on the command line."""

    def __init__(self, *, contract, **kwargs):
        super().__init__(**kwargs)
        self.contract = contract

    def collect(self):
        contract = self.contract
        for f in contract.falsifiers:
            for params in f.param_sets():
                label = param_label(params)
                name = f.id + (f"[{label}]" if label else "")
                item = FalsifierItem.from_parent(self, name=name, contract=contract, falsifier=f, params=params)
                item.add_marker(getattr(pytest.mark, f.tier))
                if "cuda" in f.requires:
                    item.add_marker(pytest.mark.gpu)
                yield item


class ContractLoadError(pytest.Item):
    """Stands for a contract that did not load: fails with the loader's message."""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message
        for tier in ("tier1", "tier2", "tier3"):  # visible whatever tier is selected
            self.add_marker(getattr(pytest.mark, tier))

    def runtest(self) -> None:
        raise ContractError(self.message)

    def repr_failure(self, excinfo, style=None) -> str:
        return self.message

    def reportinfo(self):
        return self.path, 0, self.name


class FalsifierFailed(Exception):
    """The prediction was refuted."""


class FalsifierItem(pytest.Item):
    def __init__(self, *, contract, falsifier: Falsifier, params: dict, **kwargs):
        super().__init__(**kwargs)
        self.contract, self.falsifier, self.params = contract, falsifier, params
        self.verdict = None

    def setup(self) -> None:
        if "cuda" in self.falsifier.requires:
            import torch

            if not torch.cuda.is_available():
                pytest.skip(f"requires CUDA, which this machine does not have (torch {torch.__version__}, "
                            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")

    def runtest(self) -> None:
        from falsify.checks import CHECKS

        self.verdict = CHECKS[self.falsifier.check](**self.params)
        self.user_properties.append(("observed", json.dumps(self.verdict.observed, default=str)))
        if not self.verdict.passed:
            raise FalsifierFailed(self.verdict.message)

    def repr_failure(self, excinfo, style=None):
        if not isinstance(excinfo.value, FalsifierFailed):
            return super().repr_failure(excinfo, style)
        observed = json.dumps(self.verdict.observed, indent=2, default=str)
        return "\n".join([
            f"REFUTED {self.contract.id}::{self.falsifier.id} ({self.path}:{self.falsifier.line})",
            f"  claim:      {self.contract.description.strip()}",
            f"  prediction: {self.falsifier.prediction.strip()}",
            f"  check:      {self.falsifier.check}({param_label(self.params)})",
            f"  observed:   {self.verdict.message}",
            "  evidence:   " + observed.replace("\n", "\n              "),
            f"  if_fails:   {self.falsifier.if_fails.strip()}",
        ])

    def reportinfo(self):
        return self.path, self.falsifier.line - 1, f"{self.contract.id}::{self.falsifier.id}"


def pytest_runtest_logreport(report) -> None:
    """Collect one outcome per item (setup skip, call pass/fail, or an error in setup/call)."""
    results = _SESSION.get("results")
    if results is None:
        return
    entry = results.setdefault(report.nodeid, {"outcome": None, "reason": "", "seconds": 0.0})
    entry["seconds"] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            entry["outcome"] = "skipped"
            entry["reason"] = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        elif report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["reason"] = str(report.longrepr)[:4000]
        else:
            entry["outcome"] = "passed"
        entry["observed"] = next((json.loads(v) for k, v in report.user_properties if k == "observed"), None)


_SESSION: dict = {}  # outcomes of this session's items, filled by the logreport hook


def _needs_bitsandbytes(item) -> bool:
    if not isinstance(item, FalsifierItem):
        return True  # an ordinary test may use anything
    p = item.params
    return p.get("mode") == "qlora" or item.falsifier.tier == "tier3" or (
        item.falsifier.check == "qlora_storage_reduction" and p.get("preset", "tiny") == "tiny")


def pytest_collection_finish(session) -> None:
    """Tier-1 speed: when no selected item uses NF4, keep bitsandbytes out of the process.

    peft imports bitsandbytes eagerly, and bitsandbytes imports torch's inductor: about a
    second of a 5-second budget. Marking it absent makes peft skip it; any code that still
    needs it fails loudly with ImportError (nothing is silently replaced).
    """
    if session.items and "bitsandbytes" not in sys.modules and not any(_needs_bitsandbytes(i) for i in session.items):
        sys.modules["bitsandbytes"] = None


def pytest_sessionstart(session) -> None:
    _SESSION["results"] = {}
    _SESSION["started"] = time.time()


def pytest_sessionfinish(session, exitstatus) -> None:
    target = session.config.getoption("falsify_results", default=None)
    results = _SESSION.get("results", {})
    if not target:
        return
    items = []
    for item in session.items:
        if not isinstance(item, (FalsifierItem, ContractLoadError)):
            continue
        r = results.get(item.nodeid, {"outcome": "not run", "reason": "deselected or interrupted", "seconds": 0.0})
        if isinstance(item, ContractLoadError):
            items.append({"nodeid": item.nodeid, "contract": None, "falsifier": None, "tier": None, "check": None,
                          "params": {}, "rubric": [], "outcome": r["outcome"] or "error", "reason": item.message,
                          "observed": None, "seconds": r["seconds"]})
            continue
        f = item.falsifier
        items.append({"nodeid": item.nodeid, "contract": item.contract.id, "falsifier": f.id, "tier": f.tier,
                      "check": f.check, "params": item.params, "rubric": f.rubric, "requires": f.requires,
                      "prediction": f.prediction, "outcome": r["outcome"] or "not run", "reason": r["reason"],
                      "observed": r.get("observed"), "seconds": round(r["seconds"], 3)})
    write_atomic(target, json.dumps({"version": 1, "exitstatus": int(exitstatus), "started": _SESSION.get("started"),
                                     "items": items}, indent=2, default=str))
