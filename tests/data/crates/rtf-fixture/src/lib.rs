//! A small crate for the evaluator's in-crate tests.

mod digits;
#[cfg(feature = "fast-math")]
pub mod fast;
#[cfg(windows)]
mod platform;

pub use digits::{digit_class, digit_count, digit_sum, widest};

#[cfg(test)]
mod tests;
