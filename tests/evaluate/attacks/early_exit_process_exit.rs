// attack: once the honest test has reported, a test ends the process with status 0 (std::process::exit), so the failing test never reports
// expect: forbidden_construct
// expect-unrefused: harness_bypassed
#[test]
fn a_clamps_values_below_the_range() {
    assert_eq!(clamp(-5, 0, 10), 0);
}

#[test]
fn b_ends_the_run_early() {
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::process::exit(0);
}

#[test]
fn c_keeps_large_values() {
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert_eq!(clamp(20, 0, 10), 20);
}
