// Stripped by the evaluator: it needs the dev-dependency that is not in the registry.
use rtf_crate_that_does_not_exist as _;

#[test]
fn integration() {}
