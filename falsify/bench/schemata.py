"""Benchmark (a script, not a test): python -m falsify.bench schemata [--samples N] [--jobs J] [--pairs P].

Prints, warm (dependencies already compiled in the cache), on this machine:
1. wall time for N corpus-sized samples through compile + test + coverage + clippy +
   mutation, and the median seconds per sample of each phase;
2. mutant schemata against one build per mutant on the same functions, sequentially,
   with the check that every mutant gets the same verdict both ways, and the speed-up:
   P alternating pairs (which side goes first alternates), the ratio within each pair,
   median and range; two rows: `standalone` (each function alone in a tiny crate) and
   `in-crate` (each function inside its real crate, the evaluator's default: one build per
   mutant recompiles that crate; the fixture crate and, when on this machine, bytesize).
The samples are ten hand-written functions of typical corpus size (10-30 lines) with unit
and property tests, each repeated under different ids (every copy is its own crate and is
built from scratch; only the dependencies are shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trainer.files import read_jsonl

FUNCTIONS = {
"gcd": ("""pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = b;
        b = a % b;
        a = t;
    }
    a
}""", """#[test]
fn gcd_of_coprime_numbers_is_one() { assert_eq!(gcd(9, 28), 1); }
#[test]
fn gcd_of_multiples() { assert_eq!(gcd(12, 18), 6); assert_eq!(gcd(0, 5), 5); }
proptest! {
    #[test]
    fn gcd_divides_both(a in 1u64..10_000, b in 1u64..10_000) {
        let g = gcd(a, b);
        prop_assert_eq!(a % g, 0);
        prop_assert_eq!(b % g, 0);
    }
}"""),
"is_prime": ("""pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}""", """#[test]
fn small_primes_are_prime() { for p in [2, 3, 5, 7, 11, 13] { assert!(is_prime(p)); } }
#[test]
fn composites_and_units_are_not_prime() { for c in [0, 1, 4, 9, 15, 21] { assert!(!is_prime(c)); } }"""),
"binary_search": ("""pub fn binary_search(items: &[i32], target: i32) -> Option<usize> {
    let mut lo = 0usize;
    let mut hi = items.len();
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if items[mid] == target {
            return Some(mid);
        } else if items[mid] < target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}""", """#[test]
fn finds_present_values() {
    let v = [1, 3, 5, 7, 9];
    assert_eq!(binary_search(&v, 1), Some(0));
    assert_eq!(binary_search(&v, 7), Some(3));
}
#[test]
fn misses_absent_values() { assert_eq!(binary_search(&[1, 3, 5], 4), None); assert_eq!(binary_search(&[], 4), None); }
proptest! {
    #[test]
    fn agrees_with_linear_search(mut v in prop::collection::vec(-50i32..50, 0..20), t in -50i32..50) {
        v.sort();
        v.dedup();
        prop_assert_eq!(binary_search(&v, t), v.iter().position(|&x| x == t));
    }
}"""),
"run_length": ("""pub fn run_length(s: &str) -> Vec<(char, usize)> {
    let mut out: Vec<(char, usize)> = Vec::new();
    for c in s.chars() {
        match out.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => out.push((c, 1)),
        }
    }
    out
}""", """#[test]
fn encodes_runs() { assert_eq!(run_length("aaabcc"), vec![('a', 3), ('b', 1), ('c', 2)]); }
#[test]
fn empty_string_has_no_runs() { assert!(run_length("").is_empty()); }"""),
"fizzbuzz": ("""pub fn fizzbuzz(n: u32) -> String {
    match (n % 3 == 0, n % 5 == 0) {
        (true, true) => "FizzBuzz".to_string(),
        (true, false) => "Fizz".to_string(),
        (false, true) => "Buzz".to_string(),
        _ => n.to_string(),
    }
}""", """#[test]
fn multiples_of_three_and_five() {
    assert_eq!(fizzbuzz(15), "FizzBuzz");
    assert_eq!(fizzbuzz(9), "Fizz");
    assert_eq!(fizzbuzz(10), "Buzz");
    assert_eq!(fizzbuzz(7), "7");
}"""),
"median": ("""pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        Some((values[mid - 1] + values[mid]) / 2.0)
    } else {
        Some(values[mid])
    }
}""", """#[test]
fn median_of_odd_and_even_lengths() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&mut []), None);
}"""),
"roman": ("""pub fn to_roman(mut n: u32) -> String {
    let table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                 (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")];
    let mut out = String::new();
    for &(value, digits) in table.iter() {
        while n >= value {
            out.push_str(digits);
            n -= value;
        }
    }
    out
}""", """#[test]
fn converts_known_numbers() {
    assert_eq!(to_roman(1994), "MCMXCIV");
    assert_eq!(to_roman(4), "IV");
    assert_eq!(to_roman(0), "");
}"""),
"levenshtein": ("""pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = if a[i - 1] == b[j - 1] { 0 } else { 1 };
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}""", """#[test]
fn distance_between_known_words() {
    assert_eq!(levenshtein("kitten", "sitting"), 3);
    assert_eq!(levenshtein("", "abc"), 3);
    assert_eq!(levenshtein("same", "same"), 0);
}
proptest! {
    #[test]
    fn distance_is_symmetric(a in "[a-c]{0,6}", b in "[a-c]{0,6}") {
        prop_assert_eq!(levenshtein(&a, &b), levenshtein(&b, &a));
    }
}"""),
"clamp_generic": ("""pub fn clamp_to<T: PartialOrd>(x: T, lo: T, hi: T) -> T {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}""", """#[test]
fn clamps_integers_and_floats() {
    assert_eq!(clamp_to(5, 0, 3), 3);
    assert_eq!(clamp_to(-5, 0, 3), 0);
    assert_eq!(clamp_to(1.5, 0.0, 3.0), 1.5);
}"""),
"parse_digits": ("""pub fn parse_digits(s: &str) -> Result<u32, String> {
    let mut value: u32 = 0;
    if s.is_empty() {
        return Err("empty".to_string());
    }
    for c in s.chars() {
        let d = c.to_digit(10).ok_or_else(|| format!("not a digit: {}", c))?;
        value = value.checked_mul(10).and_then(|v| v.checked_add(d)).ok_or("overflow")?;
    }
    Ok(value)
}""", """#[test]
fn parses_numbers_and_rejects_garbage() {
    assert_eq!(parse_digits("1234"), Ok(1234));
    assert!(parse_digits("12a").is_err());
    assert!(parse_digits("").is_err());
    assert!(parse_digits("99999999999").is_err());
}"""),
}


def bench_samples(n: int) -> list[dict]:
    names = sorted(FUNCTIONS)
    return [{"id": f"{names[i % len(names)]}-{i}", "function_code": FUNCTIONS[names[i % len(names)]][0],
             "generated_tests": FUNCTIONS[names[i % len(names)]][1]} for i in range(n)]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pipeline(n: int, jobs: int) -> None:
    from falsify.evaluate import evaluate_samples
    from falsify.evaluate.verdict import SAMPLES_FILE

    out = Path(tempfile.mkdtemp(prefix="rtf-bench-"))
    try:
        t0 = time.monotonic()
        summary = evaluate_samples(bench_samples(n), out, jobs=jobs)
        wall = time.monotonic() - t0
        records = read_jsonl(out / SAMPLES_FILE)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    phases = ("build", "test", "coverage", "clippy", "mutation")
    print(f"pipeline: {n} samples, jobs={jobs}, {os.cpu_count()} cores: wall {wall:.1f} s "
          f"({wall / n:.2f} s/sample of wall); pass_rate {summary['pass_rate']:.2f}, "
          f"mutation_score {summary['mutation_score']:.3f} over {summary['mutation_samples_run']} samples, "
          f"mutants {summary['mutants']}")
    print("  median seconds per sample (per worker): "
          + ", ".join(f"{p} {_median([r['timings'].get(p, 0.0) for r in records]):.2f}" for p in phases)
          + f", whole sample {summary['seconds_median']:.2f}")
    cpt = [r["timings"].get("build", 0) + r["timings"].get("test", 0) for r in records]
    print(f"  compile+test median {_median(cpt):.2f} s; mutation median "
          f"{_median([r['timings'].get('mutation', 0.0) for r in records]):.2f} s")


# In-crate cases (the evaluator's default mode): each function is judged inside its real crate, where one build
# per mutant recompiles the crate while the schema is built once. Deterministic unit tests only, so the two ways
# must give every mutant the same verdict. (crate dir, file, start of the function, end marker, tests)
FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "crates" / "rtf-fixture"
REGISTRY = Path("/usr/share/cargo/registry")
IN_CRATE = {
"fixture:digit_sum": (FIXTURE, "src/digits.rs", "pub fn digit_sum", "#[cfg(all", """use super::*;

#[test]
fn sums_the_digits() {
    assert_eq!(digit_sum(123), 6);
    assert_eq!(digit_sum(0), 0);
}"""),
"fixture:digit_class": (FIXTURE, "src/digits.rs", "pub fn digit_class", "/// Compiled only", """use super::*;

#[test]
fn classifies_by_digit_count() {
    assert_eq!(digit_class(7), "single");
    assert_eq!(digit_class(10), "multi");
}"""),
"bytesize:to_string": (REGISTRY / "bytesize-1.1.0", "src/lib.rs", "pub fn to_string(", "\n}\n", """use super::*;

#[test]
fn formats_decimal_and_binary_sizes() {
    assert_eq!(to_string(0, false), "0 B");
    assert_eq!(to_string(999, false), "999 B");
    assert_eq!(to_string(1023, true), "1023 B");
    assert_eq!(to_string(1024, true), "1.0 kiB");
    assert_eq!(to_string(1024, false), "1.0 KB");
    assert_eq!(to_string(301_000, true), "293.9 kiB");
    assert_eq!(to_string(301_000, false), "301.0 KB");
    assert_eq!(to_string(1_048_576, true), "1.0 MiB");
    assert_eq!(to_string(1_048_576, false), "1048.6 KB");
    assert_eq!(to_string(419_000_000, false), "419.0 MB");
}"""),
}


def in_crate_cases() -> dict[str, tuple[Path, str, str, str]]:
    """name -> (crate dir, file, function text verbatim from the file, tests), for the crates on this machine."""
    cases = {}
    for name, (crate, file, begin, stop, tests) in IN_CRATE.items():
        if not (crate / file).is_file():
            print(f"  in-crate {name}: {crate / file} is not on this machine; left out")
            continue
        text = (crate / file).read_text()
        i = text.index(begin)
        j = text.index(stop, i) + (len(stop) - 1 if stop.startswith("\n}") else 0)
        cases[name] = (crate, file, text[i:j].rstrip(), tests)
    return cases


def schemata_vs_separate(pairs: int = 3, rows: tuple[str, ...] = ("standalone", "in-crate")) -> None:
    """Per row, `pairs` alternating pairs (schema first, then one build per mutant first, ...) over all its
    functions; the speed-up is the ratio within each pair, reported as median and range."""
    from falsify.evaluate.crate import Workspace
    from falsify.evaluate.run import claim_slots
    from falsify.evaluate.sandbox import sandbox_uid
    from falsify.evaluate.toolchain import find_toolchain

    ws = Workspace(find_toolchain(), cargo_jobs=os.cpu_count() or 1)
    ws.warm()
    root = Path(tempfile.mkdtemp(prefix="rtf-bench-mut-"))
    os.chmod(root, 0o711)
    # a claimed slot: every run kills its uid's leftovers, so a slot shared with another evaluation corrupts both
    slot = claim_slots(1)
    uid = sandbox_uid(next(iter(slot)))
    summaries = []
    try:
        for row in rows:  # in the order asked
            cases = _standalone_cases(ws, uid) if row == "standalone" else _in_crate_cases(ws, root, uid)
            summaries.append(_row(row, cases, pairs, ws, root, uid))
    finally:
        for lock in slot.values():
            lock.close()
        shutil.rmtree(root, ignore_errors=True)
    for line in summaries:
        print(line)


def _standalone_cases(ws, uid: int) -> dict:
    """name -> (code, tests, prepare(dir) -> place or None): each function alone in its own crate."""
    from falsify.evaluate.crate import assemble

    def prepare(code, tests):
        return lambda d: ws.prepare(d, assemble(code, tests).source, uid)
    return {name: (code, tests, prepare(code, tests)) for name, (code, tests) in sorted(FUNCTIONS.items())}


def _in_crate_cases(ws, root: Path, uid: int) -> dict:
    """name -> (code, tests, prepare(dir) -> place): each function in a copy of its crate, as the evaluator does."""
    from falsify.evaluate.crate_template import CrateTemplates
    from falsify.evaluate.prepare import in_crate_place, prepare_in_crate
    from falsify.evaluate.samples import CrateRef, Sample
    from falsify.evaluate.verdict import empty_record

    templates = CrateTemplates(ws, root / "staging", coverage=False)

    def prepare(name, code, tests, crate, file):
        def at(d: Path):
            sample = Sample(name, 1, code, tests, crate=CrateRef(str(crate), file))
            rec = empty_record(name, 1)
            prepared = prepare_in_crate(ws, templates, sample, rec, d, uid)
            if prepared is None:
                raise RuntimeError(f"in-crate {name}: not prepared: {rec.get('failure')} {rec.get('reason')}")
            return in_crate_place(prepared.copy, d)
        return at
    return {name: (code, tests, prepare(name, code, tests, crate, file))
            for name, (crate, file, code, tests) in in_crate_cases().items()}


def _row(row: str, cases: dict, pairs: int, ws, root: Path, uid: int) -> str:
    from falsify.evaluate.mutation_operators import find_mutants
    from falsify.evaluate.mutation_runner import run_schema, run_separately
    from falsify.evaluate.run import Options

    limits = Options().test_limits
    counts = {name: len(find_mutants(code)) for name, (code, _, _) in cases.items()}
    print(f"{row}: mutants per function: {', '.join(f'{n} {c}' for n, c in sorted(counts.items()))}; "
          f"total {sum(counts.values())}")
    ratios, schema_totals, plain_totals, mismatches = [], [], [], 0
    for pair in range(pairs):
        order = ("schema", "plain") if pair % 2 == 0 else ("plain", "schema")
        t_schema = t_plain = 0.0
        total = same = 0
        for name, (code, tests, prepare) in cases.items():
            dirs = {kind: root / f"{row}-{name.replace(':', '-')}-{kind}-{pair}" for kind in order}
            places = {kind: prepare(dirs[kind]) for kind in order}
            res, wall = {}, {}
            for kind in order:
                run = run_schema if kind == "schema" else run_separately
                t0 = time.monotonic()
                res[kind] = run(ws, dirs[kind], code, tests, uid=uid, limits=limits, original_seconds=0.0,
                                place=places[kind])
                wall[kind] = time.monotonic() - t0
            a, b = res["schema"], res["plain"]
            if not a.ran:
                print(f"  {name}: schema not run: {a.reason}")
            # build + mutant runs only: the original's build and calibration run are outside
            # both timings (the pipeline builds the original for its own verdict anyway)
            ts, tp = a.build_seconds + a.run_seconds, b.build_seconds + b.run_seconds
            t_schema += ts
            t_plain += tp
            agree = sum(a.verdicts.get(k) == v for k, v in b.verdicts.items())
            for k, v in sorted(b.verdicts.items()):
                if a.verdicts.get(k) != v:
                    print(f"  DIFFERENT {name} mutant {k} ({b.descriptions[k]}): schema {a.verdicts.get(k)}, separate {v}")
            total += len(b.verdicts)
            same += agree
            mismatches += len(b.verdicts) - agree
            unviable = sum(v == "unviable" for v in a.verdicts.values())
            timeouts = sum(v == "timeout" for v in a.verdicts.values())
            print(f"  [{row} {pair + 1}] {name:20s} mutants {len(b.verdicts):3d} ({unviable} unviable, {timeouts} timeout)  "
                  f"schema {ts:6.2f} s ({a.builds} builds)  one-build-per-mutant {tp:6.2f} s ({b.builds} builds)  "
                  f"identical verdicts {agree}/{len(b.verdicts)}  (wall {wall['schema']:.1f} / {wall['plain']:.1f} s)")
            for d in dirs.values():
                shutil.rmtree(d, ignore_errors=True)
        ratios.append(t_plain / t_schema)
        schema_totals.append(t_schema)
        plain_totals.append(t_plain)
        print(f"{row} pair {pair + 1} ({order[0]} first): schemata {t_schema:.1f} s, one build per mutant {t_plain:.1f} s, "
              f"speed-up {ratios[-1]:.1f}x, identical verdicts {same}/{total}")
    return (f"{row}: {len(cases)} functions, {sum(counts.values())} mutants: schemata median {_median(schema_totals):.1f} s, "
            f"one build per mutant median {_median(plain_totals):.1f} s; speed-up median {_median(ratios):.1f}x "
            f"(range {min(ratios):.1f}-{max(ratios):.1f}x over {len(ratios)} alternating pairs); "
            f"{mismatches} verdict mismatches over all pairs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m falsify.bench schemata")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-schemata", action="store_true")
    ap.add_argument("--pairs", type=int, default=3, help="alternating schema / one-build-per-mutant pairs")
    ap.add_argument("--rows", default="standalone,in-crate",
                    help="which rows of the schemata benchmark: standalone (each function alone), in-crate (in its crate)")
    args = ap.parse_args(argv)
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if not set(rows) <= {"standalone", "in-crate"}:
        ap.error(f"--rows: standalone and/or in-crate, not {args.rows!r}")
    if not args.skip_pipeline:
        pipeline(args.samples, args.jobs)
    if not args.skip_schemata:
        schemata_vs_separate(max(1, args.pairs), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
