"""Read the samples file line by line; a bad line becomes a problem record, never a crash.

The run must go on past a malformed line and count it as a failure, so reading returns
both the good samples and one `InputProblem` per bad line (with its line number).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trainer.files import JsonLine, iter_jsonl

REQUIRED = ("id", "function_code", "generated_tests")
OPTIONAL_STR = ("reference_tests",)
CRATE_KEYS = ("dir", "file")


@dataclass(frozen=True)
class CrateRef:
    """Where an in-crate sample's function lives: a crate directory and a file in it (checked at evaluation)."""

    dir: str
    file: str


@dataclass
class Sample:
    id: str
    line: int
    function_code: str
    generated_tests: str
    reference_tests: str | None = None
    metadata: dict = field(default_factory=dict)
    crate: CrateRef | None = None   # None: the function is built alone (the standalone mode)


@dataclass
class InputProblem:
    id: str          # the sample's id when it could be read, else "line-N"
    line: int
    problem: str     # one line naming the field and what was expected


def parse_record(obj: object, line: int) -> Sample | InputProblem:
    """Validate one decoded JSON value against the samples schema."""
    if not isinstance(obj, dict):
        return InputProblem(f"line-{line}", line, f"line {line}: expected a JSON object, got {type(obj).__name__}")
    sid = obj.get("id")
    name = str(sid) if isinstance(sid, (str, int)) and str(sid) else f"line-{line}"
    for key in REQUIRED:
        if key not in obj:
            return InputProblem(name, line, f"line {line}: missing field '{key}'")
        if not isinstance(obj[key], str):
            return InputProblem(name, line, f"line {line}: field '{key}' must be a string, got {type(obj[key]).__name__}")
    if not obj["id"].strip():
        return InputProblem(name, line, f"line {line}: field 'id' is empty")
    if not obj["function_code"].strip():
        return InputProblem(name, line, f"line {line}: field 'function_code' is empty")
    if not obj["generated_tests"].strip():
        return InputProblem(name, line, f"line {line}: field 'generated_tests' is empty (no tests generated)")
    ref = obj.get("reference_tests")
    if ref is not None and not isinstance(ref, str):
        return InputProblem(name, line, f"line {line}: field 'reference_tests' must be a string or absent")
    meta = obj.get("metadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        return InputProblem(name, line, f"line {line}: field 'metadata' must be an object")
    crate = parse_crate_ref(obj.get("crate"))
    if isinstance(crate, str):
        return InputProblem(name, line, f"line {line}: sample '{name}': {crate}")
    return Sample(obj["id"], line, obj["function_code"], obj["generated_tests"], ref or None, meta, crate)


def parse_crate_ref(value: object) -> CrateRef | str | None:
    """The optional `crate` field's shape: {"dir": str, "file": "src/....rs"}; a problem string when off-shape."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"field 'crate' must be an object {{\"dir\": ..., \"file\": ...}}, got {type(value).__name__}"
    unknown = sorted(set(value) - set(CRATE_KEYS))
    if unknown:
        return f"field 'crate' has unknown keys {unknown} (expected {list(CRATE_KEYS)})"
    for key in CRATE_KEYS:
        if not isinstance(value.get(key), str) or not value[key].strip():
            return f"field 'crate.{key}' must be a non-empty string"
    if not value["file"].endswith(".rs"):
        return f"field 'crate.file' must name a Rust file (src/<path>.rs), got '{value['file']}'"
    return CrateRef(value["dir"], value["file"])


def read_samples(path: Path) -> list[Sample | InputProblem]:
    """Every non-blank line of `path`, in order, as a Sample or an InputProblem."""
    return _validate(iter_jsonl(path))


def from_dicts(records: list[dict]) -> list[Sample | InputProblem]:
    """The Python API's list-of-dicts input, validated like file lines (line = index + 1)."""
    return _validate(JsonLine(number, value=obj) for number, obj in enumerate(records, start=1))


def _validate(lines: Iterable[JsonLine]) -> list[Sample | InputProblem]:
    """Each line as a Sample, or as an InputProblem: unreadable, off-schema, or an id seen before."""
    out: list[Sample | InputProblem] = []
    seen: set[str] = set()
    for entry in lines:
        if entry.problem is not None:
            out.append(InputProblem(f"line-{entry.line}", entry.line, entry.problem))
            continue
        item = parse_record(entry.value, entry.line)
        if isinstance(item, Sample):
            if item.id in seen:
                item = InputProblem(item.id, entry.line, f"line {entry.line}: duplicate id '{item.id}'")
            else:
                seen.add(item.id)
        out.append(item)
    return out
