const SPIN: u64 = {
    let mut i = 0u64;
    while i < u64::MAX {
        i += 1;
    }
    i
};

#[test]
fn evaluates_forever_at_compile_time() {
    assert_eq!(SPIN, u64::MAX);
}
