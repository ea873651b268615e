const SECRET: &str = include_str!("/etc/shadow");

#[test]
fn leaks_a_host_file() {
    assert!(!SECRET.is_empty());
}
