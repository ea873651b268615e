// attack: an .init_array constructor runs before libtest's main, prints a whole passing run and exits with status 0, so no test runs at all
// expect: forbidden_construct
// expect-unrefused: harness_bypassed
#[used]
#[link_section = ".init_array"]
static FORGE_A_RUN: extern "C" fn() = {
    extern "C" fn forge() {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\nrunning 1 test\ntest tests::keeps_large_values ... ok\n\n\
test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n");
        let _ = out.flush();
        std::process::exit(0);
    }
    forge
};

#[test]
fn keeps_large_values() {
    assert_eq!(clamp(20, 0, 10), 20);
}
