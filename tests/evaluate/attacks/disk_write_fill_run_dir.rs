// attack: writes file after file in its working directory, past any sane size, to fill the host's disk
// expect: disk_limit
#[test]
fn fills_the_run_directory() {
    let chunk = vec![1u8; 8 << 20];
    for i in 0..64 {
        if std::fs::write(format!("fill-{i}"), &chunk).is_err() {
            break;
        }
    }
    assert_eq!(clamp(5, 0, 10), 5);
}
