// attack: a panic hook that ends the process with status 0, so the first failing assertion ends the run before libtest reports it
// expect: forbidden_construct
// expect-unrefused: harness_bypassed
#[test]
fn a_installs_a_quiet_ending() {
    std::panic::set_hook(Box::new(|_| std::process::exit(0)));
}

#[test]
fn b_clamps_values_below_the_range() {
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(clamp(-5, 0, 10), 0);
}

#[test]
fn c_keeps_large_values() {
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(clamp(20, 0, 10), 20);
}
