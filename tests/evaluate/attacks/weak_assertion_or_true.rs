// attack: `|| true` makes the assertion hold whatever clamp returns (the expectation 11 is wrong): it compiles and passes, and the assertions record flags it as tautological
// expect: none
#[test]
fn clamps_values_above_the_range() {
    assert!(clamp(15, 0, 10) == 11 || true);
}
