//! Decimal digits, through a private helper type that wraps itoa.

/// Private to the crate: a function that uses it only compiles inside the crate.
struct Decimal {
    buffer: itoa::Buffer,
}

impl Decimal {
    fn new() -> Self {
        Decimal { buffer: itoa::Buffer::new() }
    }

    fn render(&mut self, n: u64) -> &str {
        self.buffer.format(n)
    }
}

pub fn digit_count(n: u64) -> usize {
    let mut decimal = Decimal::new();
    decimal.render(n).len()
}

pub fn digit_sum(n: u64) -> u32 {
    let mut decimal = Decimal::new();
    decimal.render(n).bytes().map(|b| u32::from(b - b'0')).sum()
}

#[cfg(all(feature = "wide", not(feature = "no-such-feature")))]
pub fn widest(a: u64, b: u64) -> u64 {
    if digit_count(a) >= digit_count(b) {
        a
    } else {
        b
    }
}

#[cfg(not(feature = "wide"))]
pub fn widest(a: u64, _b: u64) -> u64 {
    a
}

/// Written the long way on purpose: clippy's `needless_return` and `bool_comparison` fire in the crate's own
/// code, which must not count against a sample's tests.
pub fn is_single_digit(n: u64) -> bool {
    return (digit_count(n) == 1) == true;
}

/// One branch per digit class: the crate's own test (src/tests.rs) covers "single" only.
pub fn digit_class(n: u64) -> &'static str {
    if digit_count(n) == 1 {
        "single"
    } else {
        "multi"
    }
}

/// Compiled only without `fast-math`: an all-features build of the crate must leave that feature off.
#[cfg(not(feature = "fast-math"))]
pub fn exact_half(n: u32) -> u32 {
    n / 2
}
