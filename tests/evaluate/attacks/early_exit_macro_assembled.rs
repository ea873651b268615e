// attack: a macro_rules! assembles std::process::exit from pieces that no source scan joins (`call!(process, exit)`), and a test ends the run with status 0 before the failing test reports
// expect: forbidden_construct
// expect-unrefused: harness_bypassed
macro_rules! call {
    ($module:ident, $function:ident) => {
        std::$module::$function(0)
    };
}

#[test]
fn a_clamps_values_below_the_range() {
    assert_eq!(clamp(-5, 0, 10), 0);
}

#[test]
fn b_ends_the_run_early() {
    std::thread::sleep(std::time::Duration::from_millis(300));
    call!(process, exit)
}

#[test]
fn c_keeps_large_values() {
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert_eq!(clamp(20, 0, 10), 20);
}
