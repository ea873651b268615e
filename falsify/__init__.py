"""The falsification harness: contracts, checks, the Rust evaluator, the rubric and the report."""
