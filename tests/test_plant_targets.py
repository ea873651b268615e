"""No planted defect patches the harness: every plant in tests/test_planted_defects.py reaches the trainer, the
evaluator (falsify/evaluate, the product FALSIFY-EVAL checks) or a library they use, never a check or its machinery.

A plant that patched the check would show that the check can be edited to fail, not that it catches the defect.
"""

from __future__ import annotations

import sys
import types

import pytest

from tests.test_planted_defects import CASES

UNDER_TEST = ("falsify.evaluate",)  # inside falsify/, but a product the checks judge, not the harness


def is_harness(module: str) -> bool:
    return (module == "falsify" or module.startswith("falsify.")) and not module.startswith(UNDER_TEST)


def owner_modules(obj) -> set[str]:
    """The modules that hold `obj` (a dict patched with setitem) at top level or one level down."""
    owners = set()
    for name, module in list(sys.modules.items()):
        for value in list(module.__dict__.values()) if isinstance(module, types.ModuleType) else []:
            if value is obj or (type(value) is dict and any(v is obj for v in value.values())):
                owners.add(name)
    return owners


class RecordingPatch(pytest.MonkeyPatch):
    """A MonkeyPatch that records the module of every target it patches."""

    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def setattr(self, target, name, value=None, raising=True):
        module = target.__name__ if isinstance(target, types.ModuleType) else getattr(target, "__module__", repr(target))
        self.targets.append(module)
        return super().setattr(target, name, value, raising=raising)

    def setitem(self, dic, name, value):
        self.targets.extend(owner_modules(dic) or {"<an unowned dict>"})
        return super().setitem(dic, name, value)

    def setenv(self, name, value, prepend=None):
        if name == "PYTHONPATH":  # in_subprocesses: the plant is the sitecustomize it writes there
            root = str(value).split(":")[0]
            with open(f"{root}/sitecustomize.py") as fh:
                code = fh.read()
            self.targets.extend(line.split()[1] for line in code.splitlines() if line.strip().startswith("import "))
        return super().setenv(name, value, prepend)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_plant_patches_the_trainer_or_a_library(case):
    _name, _params, defect, plant, _slow = case
    patch = RecordingPatch()
    try:
        plant(patch)
    finally:
        patch.undo()
    assert patch.targets, f"the plant for {defect!r} patched nothing"
    harness = sorted({t for t in patch.targets if is_harness(t)})
    assert not harness, f"the plant for {defect!r} patches the harness ({', '.join(harness)}) instead of the trainer or a library"


def test_the_rule_catches_a_plant_in_a_check():
    """The old QLORA-001 plant (the check's own size formula patched) is refused by the same recording."""
    import falsify.checks.shapes as shapes

    patch = RecordingPatch()
    try:
        patch.setattr(shapes, "_storage_bytes", lambda t: 0)
    finally:
        patch.undo()
    assert [t for t in patch.targets if is_harness(t)] == ["falsify.checks.shapes"]
