// attack: starts a detached process (its own session) that outlives the test and keeps writing afterwards
// expect: none
#[test]
fn starts_a_daemon() {
    let _ = std::process::Command::new("/bin/sh")
        .args(["-c", "(setsid sh -c 'sleep 3; touch rtf-daemon-was-here; sleep 60' </dev/null >/dev/null 2>&1 &)"])
        .status();
    assert_eq!(clamp(5, 0, 10), 5);
}
