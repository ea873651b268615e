"""Contracts: YAML claims, each with falsifiers that name a check, its params and a tier.

Loading is strict (unknown keys, wrong types, missing fields, unknown checks, params a
check does not accept, rubric items that do not exist): every error names the file, the
line, the contract and falsifier id, the field and what was expected. The same loader
serves the pytest plugin and `python -m falsify.lint`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import TrainerError
from trainer.typed_yaml import SchemaError, build, compose_with_lines

TIERS = ("tier1", "tier2", "tier3")
REQUIREMENTS = ("cpu", "cuda")
STATUSES = ("draft", "active", "retired")
CONTRACT_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*-v\d+$")
FALSIFIER_ID = re.compile(r"^FALSIFY-[A-Z0-9]+-\d{3}$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class ContractError(TrainerError):
    """A contract that cannot be trusted to run as written."""


@dataclass
class Falsifier:
    id: str
    tier: str
    check: str
    prediction: str
    if_fails: str
    requires: list[str] = field(default_factory=lambda: ["cpu"])
    params: dict[str, Any] = field(default_factory=dict)
    parametrize: list[dict[str, Any]] = field(default_factory=list)  # each entry extends params: one item each
    rubric: list[str] = field(default_factory=list)
    line: int = field(default=0, metadata={"internal": True})

    def param_sets(self) -> list[dict[str, Any]]:
        return [{**self.params, **extra} for extra in self.parametrize] or [dict(self.params)]


@dataclass
class Contract:
    id: str
    version: str
    status: str
    description: str
    falsifiers: list[Falsifier]
    references: list[str] = field(default_factory=list)
    refutes: list[str] = field(default_factory=list)  # seed claims this contract's evidence contradicts
    path: Path = field(default=Path("<contract>"), metadata={"internal": True})

    @property
    def active(self) -> bool:
        return self.status == "active"


def param_label(params: dict[str, Any]) -> str:
    """`preset=tiny,mode=lora`: the bracketed part of the pytest item name."""
    return ",".join(f"{k}={v}" for k, v in params.items())


def load_contract(path: Path, *, known_rubric: set[str] | None = None) -> Contract:
    """Parse and validate one contract file; raises ContractError naming file:line and field."""
    from falsify.checks import CHECKS  # registers every check

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: cannot read contract ({exc})") from None
    try:
        data, lines = compose_with_lines(text, str(path))
    except TrainerError as exc:
        raise ContractError(str(exc)) from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}:1: a contract must be a YAML mapping, got {type(data).__name__}")
    try:
        contract = build(Contract, data, "", str(path), lines)
    except SchemaError as exc:
        who = f"contract {data.get('id', '?')}"
        parts = exc.key.split(".")
        if parts[0] == "falsifiers" and len(parts) > 1 and parts[1].isdigit():
            items = data.get("falsifiers") or []
            index = int(parts[1])
            fid = items[index].get("id", "?") if index < len(items) and isinstance(items[index], dict) else "?"
            who += f" falsifier {fid}"
        raise ContractError(f"{exc.where}: {who}: field '{exc.key}': {exc.problem}") from None
    contract.path = path
    cid = contract.id

    def fail(key: str, message: str, fid: str | None = None) -> ContractError:
        where = f"{path}:{lines.get(key, 1)}"
        who = f"contract {cid}" + (f" falsifier {fid}" if fid else "")
        return ContractError(f"{where}: {who}: field '{key}': {message}")

    if not CONTRACT_ID.match(cid):
        raise fail("id", f"expected lowercase words joined by '-' ending in a version like '-v1', got {cid!r}")
    if not VERSION.match(contract.version):
        raise fail("version", f"expected semantic version like 1.0.0, got {contract.version!r}")
    if contract.status not in STATUSES:
        raise fail("status", f"expected one of {', '.join(STATUSES)}, got {contract.status!r}")
    if not contract.falsifiers:
        raise fail("falsifiers", "a contract needs at least one falsifier")
    seen: set[str] = set()
    for i, f in enumerate(contract.falsifiers):
        key = f"falsifiers.{i}"
        f.line = lines.get(key, 1)
        if not FALSIFIER_ID.match(f.id):
            raise fail(f"{key}.id", f"expected an id like FALSIFY-LORA-001, got {f.id!r}", f.id)
        if f.id in seen:
            raise fail(f"{key}.id", "duplicate falsifier id in this contract", f.id)
        seen.add(f.id)
        if f.tier not in TIERS:
            raise fail(f"{key}.tier", f"expected one of {', '.join(TIERS)}, got {f.tier!r}", f.id)
        bad = [r for r in f.requires if r not in REQUIREMENTS]
        if bad:
            raise fail(f"{key}.requires", f"expected items from {', '.join(REQUIREMENTS)}, got {bad}", f.id)
        for text_field in ("prediction", "if_fails"):
            if not getattr(f, text_field).strip():
                raise fail(f"{key}.{text_field}", "must say something (a falsifier without it explains nothing)", f.id)
        check = CHECKS.get(f.check)
        if check is None:
            raise fail(f"{key}.check", f"unknown check {f.check!r} (see `python -m falsify.lint --list-checks`)", f.id)
        for j, params in enumerate(f.param_sets()):
            problems = check.bad_params(params)
            if problems:
                where = f"{key}.parametrize.{j}" if f.parametrize else f"{key}.params"
                raise fail(where, f"check {f.check}: " + "; ".join(problems), f.id)
        labels = [param_label(p) for p in f.param_sets()]
        if len(set(labels)) != len(labels):
            raise fail(f"{key}.parametrize", "two parameter sets are identical", f.id)
        if known_rubric is not None:
            unknown = [r for r in f.rubric if r not in known_rubric]
            if unknown:
                raise fail(f"{key}.rubric", f"unknown rubric item(s) {unknown} (see falsify/report/rubric.py)", f.id)
    return contract


def rubric_ids() -> set[str]:
    """The rubric's item ids, for validating `rubric:` references."""
    from falsify.report.rubric import ITEMS

    return set(ITEMS)


def find_contracts(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(itertools.chain(p.glob("*.yaml"), p.glob("*.yml")))
        elif p.exists():
            files.append(p)
        else:
            raise ContractError(f"{p}: no such contract file or directory")
    return files


def load_all(paths: list[Path]) -> tuple[list[Contract], list[str]]:
    """Every contract under `paths`, and the errors (one string each) of those that failed.

    Checks across files too: a falsifier id used by two contracts is an error.
    """
    known = rubric_ids()
    contracts, errors, owners = [], [], {}
    for file in find_contracts(paths):
        try:
            contract = load_contract(file, known_rubric=known)
        except ContractError as exc:
            errors.append(str(exc))
            continue
        clash = False
        for f in contract.falsifiers:
            if f.id in owners:
                errors.append(f"{file}:{f.line}: contract {contract.id} falsifier {f.id}: field 'id': "
                              f"duplicate of the one in {owners[f.id]}")
                clash = True
            owners.setdefault(f.id, f"{file} ({contract.id})")
        if contract.id in {c.id for c in contracts}:
            errors.append(f"{file}:1: contract {contract.id}: field 'id': duplicate contract id")
            clash = True
        if not clash:
            contracts.append(contract)
    return contracts, errors
