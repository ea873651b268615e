#[test]
fn deletes_files_outside_its_directory() {
    let _ = std::fs::remove_file("{CANARY}");
    let _ = std::fs::write("{CANARY}", "overwritten");
    let _ = std::fs::remove_dir_all("{CANARY_DIR}");
    assert!(!std::path::Path::new("{CANARY}").exists(), "the canary survived");
}
