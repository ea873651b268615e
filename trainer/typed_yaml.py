"""Typed YAML: parse with line numbers and build dataclasses, rejecting unknown keys and wrong types.

Shared by experiment configs and contracts: both must fail loudly, naming the file, the
line and the key, because a typo that silently becomes a default disables what it named.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

import yaml

from trainer.errors import TrainerError


class SchemaError(TrainerError):
    """A YAML value that does not fit its dataclass: where (file:line), which key, what was wrong."""

    def __init__(self, where: str, key: str, problem: str):
        self.where, self.key, self.problem = where, key, problem
        super().__init__(f"{where}: key '{key}' {problem}")


# YAML 1.2 numbers that PyYAML's 1.1 resolver leaves as strings: `2e-4`, `1e4`, `.5e3` (1.1 wants a dot and a signed
# exponent). Added after the 1.1 resolvers, so `10000` stays an int and `0.0002` a float as before.
NUMBER_WITH_EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class NumberLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (libyaml's when PyYAML has it), reading numbers as people write them."""


NumberLoader.add_implicit_resolver("tag:yaml.org,2002:float", NUMBER_WITH_EXPONENT, list("-+0123456789."))


def load_scalar(text: str) -> Any:
    """One `--set` value, parsed as a YAML file's value would be (`2e-4` is a float there too)."""
    return yaml.load(text, Loader=NumberLoader)


def compose_with_lines(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML keeping the line of every key, so errors can point at it.

    libyaml's loader when PyYAML has it (5x faster than the pure-Python one: tier 1 parses
    every contract on each run); scalars are resolved by the same safe constructor, with
    exponent numbers (`2e-4`) read as floats (`NumberLoader`).
    """
    loader = NumberLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        loader.dispose()
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise TrainerError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    lines: dict[str, int] = {}

    def convert(n: yaml.Node, prefix: str) -> Any:
        if isinstance(n, yaml.MappingNode):
            out = {}
            for key_node, value_node in n.value:
                key = key_node.value
                dotted = f"{prefix}.{key}" if prefix else key
                if key in out:
                    raise TrainerError(f"{source}:{key_node.start_mark.line + 1}: key '{dotted}' appears twice "
                                       f"(first on line {lines[dotted]})")
                lines[dotted] = key_node.start_mark.line + 1
                out[key] = convert(value_node, dotted)
            return out
        if isinstance(n, yaml.SequenceNode):
            items = []
            for i, v in enumerate(n.value):
                lines[f"{prefix}.{i}"] = v.start_mark.line + 1
                items.append(convert(v, f"{prefix}.{i}"))
            return items
        return loader.construct_object(n, deep=True)

    try:
        return (convert(node, "") if node is not None else {}), lines
    finally:
        loader.dispose()


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, key, where)
            except TrainerError:
                continue
    elif origin is list:
        if isinstance(value, list):
            return [coerce(v, typing.get_args(tp)[0], key, where) for v in value]
    elif origin is dict:
        if isinstance(value, dict):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # `1e4` is a float to YAML; as a count it means 10000
            return int(value)
    elif isinstance(value, tp):
        return value
    raise SchemaError(where, key, f"expects {type_name(tp)}, got {value!r} ({type(value).__name__})")


def build(cls: type, data: Any, prefix: str, source: str, lines: dict[str, int]) -> Any:
    where = f"{source}:{lines.get(prefix, 1)}" if prefix else source
    if not isinstance(data, dict):
        raise TrainerError(f"{where}: '{prefix or 'config'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        line = lines.get(dotted, lines.get(prefix, 1))
        key_where = f"{source}:{line}" if line else f"--set {dotted}"
        if key not in names:
            raise SchemaError(key_where, dotted, f"is unknown (known: {', '.join(sorted(names))})")
        tp = hints[key]
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value, dotted, source, lines)
        elif item is not None and dataclasses.is_dataclass(item):
            if not isinstance(value, list):
                raise SchemaError(key_where, dotted, f"expects a list of {item.__name__} mappings, got {type(value).__name__}")
            kwargs[key] = [build(item, v, f"{dotted}.{i}", source, lines) for i, v in enumerate(value)]
        else:
            kwargs[key] = coerce(value, tp, dotted, key_where)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SchemaError(where, prefix or "document", f"is missing required key(s): {', '.join(missing)}")
    return cls(**kwargs)
