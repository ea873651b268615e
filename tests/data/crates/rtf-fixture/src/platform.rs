//! Only in Windows builds (`#[cfg(windows)] mod platform;` in lib.rs): on Linux rustc never reads this file.

pub fn separator() -> char {
    '\\'
}
