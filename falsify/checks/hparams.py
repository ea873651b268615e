"""Check that each hyperparameter rule fires where it should and stays quiet where it should not."""

from __future__ import annotations

from falsify.checks.registry import Verdict, check


@check("hyperparameter_rule")
def hyperparameter_rule(*, rule: str, expect: str, overrides: dict, token_lengths: list = [],  # noqa: B006
                        class_counts: dict = {}) -> Verdict:  # noqa: B006
    """Diagnose a config with `overrides` (dotted keys) and compare the rule's level with `expect`."""
    from trainer.config import Config
    from trainer.hparams import RULES, diagnose
    from trainer.typed_yaml import build

    if rule not in RULES:
        return Verdict(False, {"rule": rule}, f"unknown rule {rule}; known: {', '.join(RULES)}")
    data: dict = {"model": {"preset": "tiny"}, "training": {"mode": "qlora"}}
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    cfg = build(Config, data, "", "<check>", {})  # types checked; semantic validation is what is under test
    findings = [f for f in diagnose(cfg, token_lengths=token_lengths or None, class_counts=class_counts or None) if f.rule == rule]
    level = findings[0].level if findings else "not applicable"
    return Verdict(level == expect, {"rule": rule, "level": level, "expected": expect,
                                     "message": findings[0].message if findings else None, "overrides": overrides},
                   f"{rule} ({RULES[rule]}): {level} (expected {expect})" + (f": {findings[0].message}" if findings else ""))
