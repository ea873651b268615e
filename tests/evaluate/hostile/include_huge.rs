const HUGE: &[u8] = include_bytes!("/dev/zero");

#[test]
fn embeds_an_endless_file() {
    assert!(HUGE.len() > 0);
}
