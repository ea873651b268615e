#[test]
fn spins_forever() {
    let mut i: u64 = 0;
    loop {
        i = i.wrapping_add(1);
        std::hint::black_box(i);
    }
}
