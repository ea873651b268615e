// attack: none; honest tests, the control that must pass through every layer
// expect: none
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
    assert_eq!(clamp(5, 0, 10), 5);
}
