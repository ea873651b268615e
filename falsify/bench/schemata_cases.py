"""The cases of the schemata benchmark (falsify.bench.schemata): functions with deterministic tests.

FUNCTIONS: ten hand-written functions of typical corpus size (10-30 lines) with unit and property
tests, each judged alone in a tiny crate (the `standalone` row and the pipeline samples).
IN_CRATE: functions judged inside their real crate, the evaluator's default (the `in-crate` row:
the fixture crate and bytesize, whose rebuild takes ~1 s). IN_CRATE_CHRONO: two functions of
chrono 0.4.23, a holdout crate whose rebuild takes many seconds (the `in-crate-chrono` row).
"""

from __future__ import annotations

from pathlib import Path

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


# A holdout crate: chrono's own build is many seconds, the dependencies come from its cached template.
# yo_to_cycle(year mod 400, ordinal) = days since the start of the 400-year cycle; YEAR_DELTAS[y] is the
# number of leap days before year y of the cycle (year 0 is a leap year).
IN_CRATE_CHRONO = {
"chrono:yo_to_cycle": (REGISTRY / "chrono-0.4.23", "src/naive/internals.rs", "pub(super) fn yo_to_cycle", "\n}\n",
                       """use super::*;

#[test]
fn first_days_of_the_first_years() {
    assert_eq!(yo_to_cycle(0, 1), 0);
    assert_eq!(yo_to_cycle(0, 366), 365);
    assert_eq!(yo_to_cycle(1, 1), 366);
    assert_eq!(yo_to_cycle(4, 1), 1461);
}

#[test]
fn days_later_in_the_cycle() {
    assert_eq!(yo_to_cycle(5, 10), 1836);
    assert_eq!(yo_to_cycle(100, 60), 36584);
    assert_eq!(yo_to_cycle(399, 365), 146096);
    assert_eq!(yo_to_cycle(400, 1), 146097);
}"""),
"chrono:cycle_to_yo": (REGISTRY / "chrono-0.4.23", "src/naive/internals.rs", "pub(super) fn cycle_to_yo", "\n}\n",
                       """use super::*;

#[test]
fn first_days_of_the_first_years() {
    assert_eq!(cycle_to_yo(0), (0, 1));
    assert_eq!(cycle_to_yo(365), (0, 366));
    assert_eq!(cycle_to_yo(366), (1, 1));
    assert_eq!(cycle_to_yo(1461), (4, 1));
}

#[test]
fn every_day_of_the_cycle_round_trips() {
    for cycle in 0..146_097 {
        let (year_mod_400, ordinal) = cycle_to_yo(cycle);
        assert_eq!(yo_to_cycle(year_mod_400, ordinal), cycle, "cycle {cycle}");
    }
}"""),
}


def in_crate_cases(table: dict) -> dict[str, tuple[Path, str, str, str]]:
    """name -> (crate dir, file, function text verbatim from the file, tests), for the crates on this machine."""
    cases = {}
    for name, (crate, file, begin, stop, tests) in table.items():
        if not (crate / file).is_file():
            print(f"  in-crate {name}: {crate / file} is not on this machine; left out")
            continue
        text = (crate / file).read_text()
        i = text.index(begin)
        j = text.index(stop, i) + (len(stop) - 1 if stop.startswith("\n}") else 0)
        cases[name] = (crate, file, text[i:j].rstrip(), tests)
    return cases
