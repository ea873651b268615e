#[test]
fn floods_stdout() {
    use std::io::Write;
    let chunk = [b'x'; 1 << 16];
    let mut out = std::io::stdout().lock();
    for _ in 0..(1u64 << 15) {
        out.write_all(&chunk).unwrap();
    }
}
