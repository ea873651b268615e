"""The corpus builder: real Rust crates in, function -> tests training records out.

    crates      which crates, and the newest version of each under the source
    rust_ast    tree-sitter-rust parsing and small syntax queries
    scan        one parsed file -> its test units and candidate functions
    standalone  could a function and its tests compile in a fresh crate? (`self_contained`)
    pairing     each candidate with the tests that call it, as one record
    splits      train/validation/test by hash, and the edge-case holdout
    build       the whole build and `python -m trainer corpus build` (writes the files)
"""
