// Stripped by the evaluator: benches cannot build offline here (the bench harness is not in the registry).
use rtf_crate_that_does_not_exist::Bencher;
fn main() {}
