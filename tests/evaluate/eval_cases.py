"""Real small Rust functions with good, weak, broken and failing tests, shared by the evaluator tests."""

CLAMP = """pub fn clamp(x: i32, lo: i32, hi: i32) -> i32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}"""

CLAMP_GOOD = """// values outside the range are pulled to the nearest bound
#[test]
fn clamps_values_below_the_range() {
    assert_eq!(clamp(-5, 0, 10), 0);
}

#[test]
fn clamps_values_above_the_range() {
    assert_eq!(clamp(15, 0, 10), 10);
}

#[test]
fn keeps_values_inside_the_range() {
    let r = clamp(5, 0, 10);
    assert_eq!(r, 5);
}

proptest! {
    #[test]
    fn result_stays_within_bounds(x in any::<i32>()) {
        let r = clamp(x, -3, 3);
        prop_assert!((-3..=3).contains(&r));
    }
}"""

CLAMP_WEAK = """#[test]
fn test_1() {
    let _ = clamp(1, 0, 10);
    assert!(true);
    let y = 3;
    assert_eq!(y, y);
}"""

CLAMP_DENIES_A_LINT = """#[test]
#[deny(clippy::assertions_on_constants)]
fn test_clamp_inside() {
    assert_eq!(clamp(1, 0, 10), 1);
    assert!(true);
}"""

CLAMP_BROKEN = """#[test]
fn test_clamp() {
    assert_eq!(clamp(1, 0), 1);
}"""

CLAMP_FAILING = """#[test]
fn clamp_keeps_large_values() {
    assert_eq!(clamp(20, 0, 10), 20);
}

#[test]
fn clamp_keeps_small_values() {
    assert_eq!(clamp(2, 0, 10), 2);
}"""

CLAMP_AS_MODULE = """#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_both_ends() {
        assert_eq!(clamp(-1, 0, 3), 0);
        assert_eq!(clamp(9, 0, 3), 3);
        assert_eq!(clamp(2, 0, 3), 2);
    }
}"""

SIGN = """pub fn sign(x: i64) -> i64 {
    match x {
        0 => 0,
        n if n > 0 => 1,
        _ => -1,
    }
}"""

SIGN_TESTS = """#[test]
fn sign_of_zero_positive_and_negative() {
    assert_eq!(sign(0), 0);
    assert_eq!(sign(7), 1);
    assert_eq!(sign(-7), -1);
}"""

SUM_EVEN = """pub fn sum_even(values: &[u32]) -> u32 {
    let mut total = 0;
    for v in values {
        if *v % 2 == 0 && !(*v > 1000) {
            total += *v;
        }
    }
    total
}"""

SUM_EVEN_TESTS = """#[test]
fn sums_only_small_even_values() {
    assert_eq!(sum_even(&[1, 2, 3, 4]), 6);
    assert_eq!(sum_even(&[2000, 2]), 2);
}"""

GENERIC_MAX = """pub fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    let mut best = *items.first()?;
    for &item in items {
        if item > best {
            best = item;
        }
    }
    Some(best)
}"""

GENERIC_MAX_TESTS = """#[test]
fn finds_the_largest_item() {
    assert_eq!(largest(&[3, 9, 2]), Some(9));
    assert_eq!(largest::<u8>(&[]), None);
}"""

NOT_DEFAULT = """pub struct Meters(pub f64);

pub fn to_meters(feet: f64) -> Meters {
    Meters(feet * 0.3048)
}"""

NOT_DEFAULT_TESTS = """#[test]
fn converts_feet_to_meters() {
    assert!((to_meters(10.0).0 - 3.048).abs() < 1e-9);
}"""


def sample(sid: str, function_code: str, tests: str, **extra) -> dict:
    return {"id": sid, "function_code": function_code, "generated_tests": tests, **extra}
