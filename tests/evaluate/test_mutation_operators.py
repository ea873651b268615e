"""The mutant sets of cargo-mutants' genres: typical values of the return type, each binary operator to its usual
alternatives, and a schema that switches every one of them (pure Python, no cargo)."""

from __future__ import annotations

import pytest
from eval_cases import CLAMP

from falsify.evaluate import mutation_operators as M
from falsify.evaluate.mutation_values import MAX_VALUES


def body_values(code: str) -> list[str]:
    return [m.replacement[1:-1].strip() for m in M.find_mutants(code) if m.operator in ("body_value", "body_default")]


def swaps(code: str, op: str, operator: str = "binary_swap") -> set[str]:
    return {m.replacement for m in M.find_mutants(code) if m.operator == operator and code[m.start:m.end] == op}


def test_clamp_swaps_each_comparison_to_every_other():
    assert swaps(CLAMP, "<") == {"==", "!=", "<=", ">", ">="}
    assert swaps(CLAMP, ">") == {"==", "!=", "<", "<=", ">="}
    assert body_values(CLAMP) == ["0", "1", "-1"]
    assert len(M.find_mutants(CLAMP)) == 13  # was 3: body -> Default, `<` -> `<=`, `>` -> `>=`


@pytest.mark.parametrize(("ret", "expected"), [
    ("i32", ["0", "1", "-1"]),
    ("u64", ["0", "1"]),
    ("f64", ["0.0", "1.0", "-1.0"]),
    ("bool", ["true", "false"]),
    ("String", ["String::new()", '"xyzzy".into()']),
    ("&'static str", ['""', '"xyzzy"']),
    ("Option<String>", ["None", "Some(String::new())", 'Some("xyzzy".into())']),
    ("Result<bool, String>", ["Ok(true)", "Ok(false)"]),
    ("io::Result<()>", ["Ok(())"]),
    ("Vec<u8>", ["vec![]", "vec![0]", "vec![1]"]),
    ("Box<bool>", ["Box::new(true)", "Box::new(false)"]),
    ("std::sync::Arc<u8>", ["Arc::new(0)", "Arc::new(1)"]),
    ("(bool, u8)", ["(true, 0)", "(true, 1)", "(false, 0)", "(false, 1)"]),
    ("[u8; 4]", ["[0; 4]", "[1; 4]"]),
    ("&[u8]", ["&[]", "Vec::leak(vec![0])", "Vec::leak(vec![1])"]),
    ("HashSet<bool>", ["HashSet::new()", "HashSet::from_iter([true])", "HashSet::from_iter([false])"]),
    ("Meters", ["Default::default()"]),
    ("T", ["Default::default()"]),
])
def test_body_values_by_return_type(ret, expected):
    assert body_values(f"pub fn f(x: u8) -> {ret} {{\n    todo!()\n}}") == expected


def test_body_mutants_are_capped_and_unwritable_types_get_none():
    many = body_values("pub fn f() -> Option<(i64, i64, bool)> {\n    todo!()\n}")
    assert len(many) == MAX_VALUES and many[0] == "None"
    for ret in ("impl Iterator<Item = u8>", "!", "&dyn std::fmt::Debug"):
        assert body_values(f"pub fn f() -> {ret} {{\n    todo!()\n}}") == []


def test_unit_functions_keep_the_empty_body_and_values_equal_to_the_body_are_skipped():
    unit = M.find_mutants("pub fn f(v: &mut Vec<u8>) {\n    v.push(1);\n}")
    assert [(m.operator, m.replacement) for m in unit] == [("body_default", "{}")]
    assert M.find_mutants("pub fn f() {}") == []
    assert body_values("pub fn f() -> i32 {\n    1\n}") == ["0", "-1"]
    assert body_values("pub fn f() -> Option<bool> { None }") == ["Some(true)", "Some(false)"]


def test_arithmetic_bit_and_shift_operators_get_their_alternatives():
    code = "pub fn f(a: u32, b: u32) -> u32 {\n    ((a + b) * (a - b) / (a % b)) & (a | b) ^ (a << 1) >> 2\n}"
    expected = {"+": {"-", "*"}, "-": {"+", "/"}, "*": {"+", "/"}, "/": {"%", "*"}, "%": {"/", "+"},
                "&": {"|", "^"}, "|": {"&", "^"}, "^": {"&", "|"}, "<<": {">>"}, ">>": {"<<"}}
    for op, alternatives in expected.items():
        assert swaps(code, op) == alternatives, op
    assert swaps("pub fn f(a: bool, b: bool) -> bool {\n    a && b || a\n}", "&&") == {"||"}


def test_compound_assignments_get_their_alternatives():
    code = ("pub fn f(mut a: u32) -> u32 {\n    a += 1;\n    a -= 1;\n    a *= 2;\n    a /= 2;\n    a %= 7;\n"
            "    a &= 3;\n    a |= 4;\n    a ^= 5;\n    a <<= 1;\n    a >>= 1;\n    a\n}")
    expected = {"+=": {"-=", "*="}, "-=": {"+=", "/="}, "*=": {"+=", "/="}, "/=": {"%=", "*="}, "%=": {"/=", "+="},
                "&=": {"|=", "^="}, "|=": {"&=", "^="}, "^=": {"&=", "|="}, "<<=": {">>="}, ">>=": {"<<="}}
    for op, alternatives in expected.items():
        assert swaps(code, op, "compound_swap") == alternatives, op


def test_each_mutant_applies_alone():
    for m in M.find_mutants(CLAMP):
        mutated = m.apply(CLAMP)
        assert mutated != CLAMP and mutated.count("\n") <= CLAMP.count("\n")
    gt = next(m for m in M.find_mutants(CLAMP) if m.operator == "binary_swap" and m.replacement == "!=")
    assert "if x != lo {" in gt.apply(CLAMP) and "x > hi" in gt.apply(CLAMP)


@pytest.mark.parametrize("code", [
    CLAMP,
    "pub fn f(a: u32, b: u32) -> Option<u32> {\n    let mut t = a;\n    t += b & 3;\n"
    "    if t > 0 && !(a == b) { Some(t << 1) } else { None }\n}",
    "pub fn f(x: i64) -> i64 {\n    match x {\n        0 => 0,\n        n if n > 0 => n * 2 - 1,\n        _ => -1,\n    }\n}",
])
def test_schema_renders_every_mutant_with_its_own_markers(code):
    ids = [m.id for m in M.find_mutants(code)]
    schema = M.render_schema(code)
    intervals = M.marker_intervals(schema)
    assert sorted(k for _, _, k in intervals) == sorted(ids)  # one marked span per mutant, each found
    for start, _, k in intervals:  # each span's start belongs to its own mutant (errors there drop only it)
        assert M.innermost_mutant(intervals, start) == k


def test_an_error_in_one_alternative_drops_only_that_alternative():
    code = "pub fn f(a: u32, b: u32) -> bool {\n    a < b\n}"
    muts = {m.replacement: m.id for m in M.find_mutants(code) if m.operator == "binary_swap"}
    schema = M.render_schema(code)
    intervals = M.marker_intervals(schema)
    for op, k in muts.items():
        pos = schema.index(f"a {op} b }}", schema.index(f"/*<{k}*/"))  # inside the alternative's own arm
        assert M.innermost_mutant(intervals, pos) == k
    original = schema.index("{ a < b }") + 2  # the original arm belongs to no mutant: an error there is the schema's
    assert M.innermost_mutant(intervals, original) is None
    dropped = M.render_schema(code, set(muts.values()) - {muts[">"]})
    assert f"/*<{muts['>']}*/" not in dropped and all(f"/*<{k}*/" in dropped for op, k in muts.items() if op != ">")


def test_the_original_comes_first_in_a_multi_alternative_switch():
    """The first arm fixes a match's type: it must be the original, so an alternative of another type is the one
    that errors (inside its own markers)."""
    schema = M.render_schema("pub fn f(a: u32, b: u32) -> u32 {\n    a + b\n}")
    match = schema[schema.index("(match"):]
    assert match.index("{ a + b }") < match.index("{ a - b }") < match.index("{ a * b }")
