"""Mutant schemata give the same verdict per mutant as one build per mutant (runs cargo).

The cases cover every operator genre: body -> typical values of the return type (integers, Option<String>,
Result<bool, _>, Default of a type without Default, Some(Default) of a generic), each comparison to every other,
arithmetic, bit and shift swaps, compound assignments, unary deletion, match guards and arm deletion; and
unviable mutants (dropped from the schema, never counted) next to viable alternatives of the same site."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from eval_cases import (
    CLAMP,
    CLAMP_GOOD,
    GENERIC_MAX,
    GENERIC_MAX_TESTS,
    NOT_DEFAULT,
    NOT_DEFAULT_TESTS,
    SIGN,
    SIGN_TESTS,
    SUM_EVEN,
    SUM_EVEN_TESTS,
)

from falsify.evaluate import mutation_operators as M
from falsify.evaluate.crate import Workspace, assemble
from falsify.evaluate.mutation_runner import run_schema, run_separately
from falsify.evaluate.run import Options, claimed_uid
from falsify.evaluate.toolchain import find_toolchain

PACK = """pub fn pack(hi: u8, lo: u8) -> u16 {
    ((hi as u16) << 8) | (lo as u16 & 0x0f)
}"""
PACK_TESTS = """#[test]
fn packs_the_high_byte_and_the_low_nibble() {
    assert_eq!(pack(0x12, 0x34), 0x1204);
    assert_eq!(pack(0, 0xff), 0x000f);
}"""
COUNT_EQUAL = """pub fn count_equal(items: &[String], target: &str) -> usize {
    let mut n = 0;
    for s in items {
        if s == target {
            n += 1;
        }
    }
    n
}"""
COUNT_EQUAL_TESTS = """#[test]
fn counts_exact_matches() {
    let v = vec!["a".to_string(), "b".to_string(), "a".to_string()];
    assert_eq!(count_equal(&v, "a"), 2);
    assert_eq!(count_equal(&v, "c"), 0);
}"""
INITIALS = """pub fn initials(name: &str) -> Option<String> {
    let mut out = String::new();
    for w in name.split_whitespace() {
        out.push(w.chars().next()?);
    }
    if out.len() > 0 {
        Some(out)
    } else {
        None
    }
}"""
INITIALS_TESTS = """#[test]
fn initials_of_names() {
    assert_eq!(initials("Ada Lovelace"), Some("AL".to_string()));
    assert_eq!(initials("   "), None);
}"""
PARSE_FLAG = """pub fn parse_flag(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "on" => Ok(true),
        "no" | "off" => Ok(false),
        _ => Err(format!("not a flag: {}", s)),
    }
}"""
PARSE_FLAG_TESTS = """#[test]
fn parses_flags() {
    assert_eq!(parse_flag("on"), Ok(true));
    assert_eq!(parse_flag("off"), Ok(false));
    assert!(parse_flag("maybe").is_err());
}"""

CASES = {"sign": (SIGN, SIGN_TESTS), "sum_even": (SUM_EVEN, SUM_EVEN_TESTS), "largest": (GENERIC_MAX, GENERIC_MAX_TESTS),
         "to_meters": (NOT_DEFAULT, NOT_DEFAULT_TESTS), "clamp": (CLAMP, CLAMP_GOOD.split("proptest!")[0]),
         "pack": (PACK, PACK_TESTS), "count_equal": (COUNT_EQUAL, COUNT_EQUAL_TESTS), "initials": (INITIALS, INITIALS_TESTS),
         "parse_flag": (PARSE_FLAG, PARSE_FLAG_TESTS)}
# (operator, replacement) of mutants that cannot compile: dropped as unviable, in the schema and alone alike
UNVIABLE = {"to_meters": {("body_default", "{ Default::default() }")},  # Meters has no Default
            "largest": {("body_value", "{ Some(Default::default()) }")},  # T: PartialOrd + Copy has no Default
            "count_equal": {("binary_swap", op) for op in ("<", "<=", ">", ">=")}}  # String is not PartialOrd<str>


@pytest.fixture(scope="module")
def workspace():
    ws = Workspace(find_toolchain(), cargo_jobs=os.cpu_count() or 1)
    ws.warm()
    root = Path(tempfile.mkdtemp(prefix="rtf-equiv-"))
    os.chmod(root, 0o711)
    with claimed_uid() as uid:  # each run kills its uid's leftovers, so an unclaimed uid breaks another run's builds
        yield ws, root, uid
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_schema_verdicts_equal_one_build_per_mutant(workspace, name):
    ws, root, uid = workspace
    code, tests = CASES[name]
    limits = Options(test_timeout=20).test_limits
    schema_dir, plain_dir = root / f"{name}-schema", root / f"{name}-plain"
    ws.prepare(schema_dir, assemble(code, tests).source, uid)
    ws.prepare(plain_dir, assemble(code, tests).source, uid)
    schema = run_schema(ws, schema_dir, code, tests, uid=uid, limits=limits, original_seconds=0.5)
    plain = run_separately(ws, plain_dir, code, tests, uid=uid, limits=limits, original_seconds=0.5)
    assert schema.ran, schema.reason
    assert schema.verdicts == plain.verdicts
    assert len(schema.verdicts) >= 2
    assert plain.builds == len(plain.verdicts)  # the reference really built each mutant alone
    by_id = {m.id: m for m in M.find_mutants(code)}
    unviable = {(by_id[k].operator, by_id[k].replacement) for k, v in schema.verdicts.items() if v == "unviable"}
    assert unviable == UNVIABLE.get(name, set())
    if name == "count_equal":  # the same `==` site keeps its viable alternative
        assert any(by_id[k].replacement == "!=" and v == "killed" for k, v in schema.verdicts.items())
    if unviable:  # not counted: the score is over the viable mutants only
        assert schema.score == schema.count("killed") / (len(schema.verdicts) - len(unviable))
    assert "killed" in schema.verdicts.values()
