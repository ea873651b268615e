// attack: none; the file's only test is a legit #[should_panic] one (libtest reports `test NAME - should panic ... ok`): it ran and passes
// expect: none
#[test]
#[should_panic(expected = "assertion `left != right` failed")]
fn values_above_the_range_are_pulled_to_the_upper_bound() {
    assert_ne!(clamp(15, 0, 10), 10);
}
