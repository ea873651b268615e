"""The corpus builder: real Rust crates in, function -> tests training records out.

    crates      which crates, and the newest version of each under the source
    rust_ast    tree-sitter-rust parsing and small syntax queries
    scan        one parsed file -> its test units and candidate functions
    standalone  could a function and its tests compile in a fresh crate? (`self_contained`)
    pairing     each candidate with the tests that call it, as one record
    in_crate    where the function is in its crate, and its tests as a module appended there
    context     the crate context a prompt may show: use lines, the types the function names
    splits      train/validation/test by hash, and the edge-case holdout of whole crates
    build       the whole build and `python -m trainer corpus build` (writes the files)
"""
