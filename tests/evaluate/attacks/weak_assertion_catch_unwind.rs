// attack: the assertion runs inside std::panic::catch_unwind and its result is dropped, so a wrong expectation (11) never fails the test: it compiles and passes, and the assertions record flags it as cannot_fail
// expect: none
#[test]
fn clamps_values_above_the_range() {
    let _ = std::panic::catch_unwind(|| {
        assert_eq!(clamp(15, 0, 10), 11);
    });
}
