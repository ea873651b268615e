"""The corpus builder: real Rust crates in, function -> tests training records out."""
