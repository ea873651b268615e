"""The check registry: named checks that contracts call with params.

A check is a plain function decorated with `@check("name")`. Its keyword parameters
(with annotations and defaults) are the params a contract may pass; anything else is
rejected at load time, so a typo cannot silently disable a falsifier. It returns a
`Verdict`: whether the prediction held, and what was observed (the evidence the
report shows). Checks run the trainer's real code paths; they never re-implement it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHECKS: dict[str, Check] = {}


@dataclass
class Verdict:
    passed: bool
    observed: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass
class Check:
    name: str
    func: Callable[..., Verdict]
    doc: str
    params: dict[str, inspect.Parameter]

    def bad_params(self, params: dict[str, Any]) -> list[str]:
        """Problems with `params` for this check (unknown, missing, wrong type)."""
        problems = [f"unknown param '{k}' (accepted: {', '.join(self.params) or 'none'})" for k in params if k not in self.params]
        for name, p in self.params.items():
            if name not in params:
                if p.default is inspect.Parameter.empty:
                    problems.append(f"missing required param '{name}'")
                continue
            expected = p.annotation if isinstance(p.annotation, type) else None
            value = params[name]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if expected is not None and not isinstance(value, expected):
                problems.append(f"param '{name}' must be {expected.__name__}, got {type(value).__name__} {value!r}")
        return problems

    def __call__(self, **params: Any) -> Verdict:
        verdict = self.func(**params)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"check {self.name} returned {type(verdict).__name__}, not a Verdict")
        return verdict


def check(name: str) -> Callable[[Callable[..., Verdict]], Callable[..., Verdict]]:
    """Register `func` as check `name`. Parameters must be keyword-only with annotations."""

    def register(func: Callable[..., Verdict]) -> Callable[..., Verdict]:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        sig = inspect.signature(func, eval_str=True)
        CHECKS[name] = Check(name, func, inspect.getdoc(func) or "", dict(sig.parameters))
        return func

    return register
