// attack: a test writes libtest's result lines for itself and the failing test (io::stdout is not captured), then ends the process with status 0 by exec'ing /bin/true
// expect: forbidden_construct
// expect-unrefused: harness_bypassed
#[test]
fn a_clamps_values_below_the_range() {
    assert_eq!(clamp(-5, 0, 10), 0);
}

#[test]
fn b_reports_for_the_others() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut out = std::io::stdout();
    out.write_all(b"test tests::b_reports_for_the_others ... ok\ntest tests::c_keeps_large_values ... ok\n").unwrap();
    out.flush().unwrap();
    let _ = std::process::Command::new("/bin/true").exec();
}

#[test]
fn c_keeps_large_values() {
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert_eq!(clamp(20, 0, 10), 20);
}
