// attack: writes 50 MB to /tmp, /var/tmp and /dev/shm (a path built at run time, past the static check) and leaves the files there, to outlive the run on the host
// expect: none
#[test]
fn leaves_files_in_the_temp_dirs() {
    for dir in ["/tmp".to_string(), "/var/tmp".to_string(), ["", "dev", "shm"].join("/")] {
        let _ = std::fs::write(format!("{dir}/rtf-attack-leak-{}", std::process::id()), vec![7u8; 50 << 20]);
    }
    assert_eq!(clamp(5, 0, 10), 5);
}
