//! The crate's own unit tests, in a file module. One of them FAILS on purpose: the
//! evaluator must never count the crate's own tests as a sample's. They are the
//! "existing" tests of the coverage gain: `digit_class` is covered on its "single"
//! branch only, so a generated test of "multi" raises its coverage.
use super::*;

#[test]
fn crate_own_test_that_fails() {
    assert_eq!(digit_count(10), 3, "this crate-own test fails on purpose");
}

#[test]
fn crate_own_test_that_passes() {
    assert_eq!(digit_sum(123), 6);
}

#[test]
fn crate_own_test_of_one_digit_class() {
    assert_eq!(digit_class(7), "single");
}
