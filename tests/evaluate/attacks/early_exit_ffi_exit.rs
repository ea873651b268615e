// attack: like early_exit_process_exit, but through libc's exit declared in an `extern "C"` block, out of std's sight
// expect: forbidden_construct
// expect-unrefused: harness_bypassed
extern "C" {
    fn exit(status: i32) -> !;
}

#[test]
fn a_clamps_values_below_the_range() {
    assert_eq!(clamp(-5, 0, 10), 0);
}

#[test]
fn b_ends_the_run_early() {
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe { exit(0) }
}

#[test]
fn c_keeps_large_values() {
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert_eq!(clamp(20, 0, 10), 20);
}
