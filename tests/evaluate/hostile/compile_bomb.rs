macro_rules! blow {
    () => { 0u64 };
    (x $($rest:tt)*) => { blow!($($rest)*) + blow!($($rest)*) };
}

#[test]
fn expands_exponentially() {
    let n = blow!(x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x);
    assert_eq!(n, 0);
}
