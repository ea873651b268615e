//! Only compiled with the `fast-math` feature (the `mod` declaration in lib.rs is gated).

pub fn double_fast(x: u32) -> u32 {
    x.wrapping_mul(2)
}
