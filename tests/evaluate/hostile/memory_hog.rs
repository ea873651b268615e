#[test]
fn allocates_without_limit() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 256 << 20]);
    }
}
