// attack: none; a #[should_panic] test whose panic message is not the expected one: libtest fails it, and so must the verdict
// expect: test_failure
#[test]
#[should_panic(expected = "index out of bounds")]
fn values_above_the_range_are_pulled_to_the_upper_bound() {
    assert_ne!(clamp(15, 0, 10), 10);
}
