"""Static refusal (falsify/evaluate/forbidden.py): one check per construct class on source strings, the honest
constructs it must let through, and (slow, runs cargo) the macro-expanded check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_cases import CLAMP, CLAMP_AS_MODULE, CLAMP_GOOD, CLAMP_WEAK, GENERIC_MAX_TESTS, SIGN_TESTS, sample

from falsify.evaluate import evaluate_samples, forbidden

ATTACKS = Path(__file__).parent / "attacks"


def _refused(tests: str) -> str:
    reason = forbidden.refusal(tests)
    assert reason is not None, f"not refused: {tests}"
    return reason


def test_the_reason_names_the_construct_its_line_and_why():
    tests = "#[test]\nfn ends() {\n    std::process::exit(0);\n}\n"
    assert _refused(tests) == "forbidden_construct: std::process::exit (line 3): a unit test must not end the process"


@pytest.mark.parametrize("tests", [
    "fn t() { std::process::exit(0); }",
    "fn t() { process::abort(); }",
    "use std::process::exit as quit;\nfn t() { quit(0); }",
    "use std::process::{self, exit};\nfn t() { exit(0); }",
    "use std::process::*;\nfn t() { exit(0); }",
    "use std::process as p;\nfn t() { p::exit(0); }",
    "fn t() { unsafe { libc::_exit(0) } }",
    "fn t() { let f = std::process::exit; f(0); }",
])
def test_process_exit_and_abort_are_refused(tests):
    assert "must not end the process" in _refused(tests) or "libc::_exit" in _refused(tests)


@pytest.mark.parametrize("tests", [
    'fn t() { std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("/bin/true")); }',
    'use std::os::unix::process::CommandExt;\nfn t() { let _ = std::process::Command::new("/bin/true").exec(); }',
    'use std::os::unix::prelude::*;\nfn t() { let _ = std::process::Command::new("/bin/true").exec(); }',
    "fn t() { unsafe { libc::execv(p, a) }; }",
    'use some_dependency::*;  // re-exports CommandExt\nfn t() { let _ = std::process::Command::new("/bin/true").exec(); }',
])
def test_exec_is_refused(tests):
    assert "forbidden_construct:" in _refused(tests)


@pytest.mark.parametrize("tests", ['extern "C" { fn exit(s: i32) -> !; }', 'extern "C" fn callback() {}',
                                   "extern { fn write(fd: i32); }", "#[no_mangle]\npub fn main() {}",
                                   '#[export_name = "main"]\npub fn entry() {}'])
def test_foreign_functions_and_c_names_are_refused(tests):
    assert "forbidden_construct:" in _refused(tests)


@pytest.mark.parametrize("tests", ['#[link_section = ".init_array"]\nstatic F: fn() = f;', "#[used]\nstatic X: u8 = 0;",
                                   '#[link(name = "c")]\nfn f() {}', "#[ctor::ctor]\nfn before_main() {}",
                                   "#[cfg_attr(all(), used)]\nstatic X: u8 = 0;", "#[global_allocator]\nstatic A: X = X;"])
def test_link_sections_and_constructors_are_refused(tests):
    assert "the linker or loader runs it" in _refused(tests)


@pytest.mark.parametrize("tests", [
    "use std::os::unix::io::FromRawFd;\nfn t() { let f = unsafe { std::fs::File::from_raw_fd(1) }; }",
    "fn t() { unsafe { libc::dup2(3, 1) }; }",
    'fn t() { std::fs::OpenOptions::new().write(true).open("/proc/self/fd/1").unwrap(); }',
    'fn t() { std::fs::write("/dev/fd/1", "ok").unwrap(); }', 'fn t() { std::fs::write("/dev/stdout", "ok").unwrap(); }',
    'fn t() { std::fs::write(r"/proc/self/mem", "x").unwrap(); }',
])
def test_raw_file_descriptor_writes_are_refused(tests):
    assert "forbidden_construct:" in _refused(tests)


@pytest.mark.parametrize("tests", ["fn t() { std::panic::set_hook(Box::new(|_| {})); }",
                                   "fn t() { let _ = std::panic::take_hook(); }"])
def test_panic_hooks_are_refused(tests):
    assert "a panic hook decides" in _refused(tests)


@pytest.mark.parametrize("tests", ['const S: &str = include_str!("/etc/passwd");', '#[path = "/etc/x.rs"] mod x;',
                                   "mod other;", 'fn f() { let b = include_bytes!("/dev/zero"); }', 'include!("/etc/x.rs");'])
def test_compile_time_file_reads_are_refused_in_tests_and_in_the_function(tests):
    assert "forbidden_construct:" in _refused(tests)
    assert forbidden.refusal(CLAMP_GOOD, function_code=tests) is not None


@pytest.mark.parametrize("tests", ['fn t() { unsafe { std::arch::asm!("nop") } }', 'std::arch::global_asm!(".globl x");'])
def test_inline_assembly_is_refused(tests):
    assert "inline assembly" in _refused(tests)


@pytest.mark.parametrize("tests", ['fn t() { assert_eq!(std::env::var("RTF_MUTANT").unwrap(), "0"); }',
                                   "fn t() { assert_eq!(std::env::vars().count(), 12); }",
                                   "fn t() { assert_eq!(crate::__rtf_mutant(), 0); }"])
def test_reading_how_the_harness_runs_is_refused(tests):
    assert "forbidden_construct:" in _refused(tests)


def test_constructs_inside_macro_token_trees_are_seen():
    tests = "proptest! {\n    #[test]\n    fn p(x in any::<u8>()) {\n        std::process::exit(0);\n    }\n}\n"
    assert "(line 4)" in _refused(tests)


def test_the_function_may_end_the_process_it_is_the_corpus_code():
    assert forbidden.refusal(CLAMP_GOOD, function_code="pub fn quit() { std::process::exit(1) }") is None


HONEST = [
    'fn t() { println!("{}", clamp(1, 0, 2)); eprintln!("done"); }',
    'fn t() { std::fs::write("out.txt", "x").unwrap(); assert_eq!(std::fs::read_to_string("out.txt").unwrap(), "x"); }',
    "fn t() { let h = std::thread::spawn(|| clamp(1, 0, 2)); assert_eq!(h.join().unwrap(), 1); }",
    "fn t() { assert!(std::panic::catch_unwind(|| clamp(1, 2, 0)).is_ok()); }",
    'fn t() { use std::io::Write; writeln!(std::io::stdout(), "note").unwrap(); }',
    'fn t() { let out = std::process::Command::new("echo").output().unwrap(); assert!(out.stdout.len() > 0); }',
    'fn t() { std::fs::write("/dev/null", "x").unwrap(); }',
    "#[allow(unused)]\n#[derive(Debug, Clone)]\nstruct Used(u8);",
    "extern crate proptest;\nfn exits_cleanly() { let exit = 3; assert_eq!(exit, 3); }",
    # tokio's net tests: a socket's own fd, written and closed (what this could do to stdout, the harness check sees)
    "fn t() { let (a, b) = pair(); nix::unistd::write(a.as_raw_fd(), b\"x\").unwrap(); nix::unistd::close(b.as_raw_fd()).unwrap(); }",
]


@pytest.mark.parametrize("tests", HONEST + [CLAMP_GOOD, CLAMP_WEAK, CLAMP_AS_MODULE, SIGN_TESTS, GENERIC_MAX_TESTS])
def test_honest_tests_are_not_refused(tests):
    assert forbidden.refusal(tests) is None


def test_honest_attack_controls_are_not_refused():
    for path in ATTACKS.glob("*.rs"):
        if "// expect: none" in path.read_text() or "// expect: test_failure" in path.read_text():
            assert forbidden.refusal(path.read_text()) is None, path.name


@pytest.mark.parametrize("tests,expand", [
    (CLAMP_GOOD, False), (SIGN_TESTS, False), ("fn t() { assert!(matches!(Some(1), Some(_))); }", False),
    ("macro_rules! m { () => {} }", True), ("fn t() { paste::paste!{ x } }", True), ("#[rstest]\nfn t() {}", True),
    ("#[derive(serde::Serialize)]\nstruct S;", True), ("#[derive(Debug, PartialEq)]\nstruct S;", False)])
def test_only_tests_with_unusual_macros_are_expanded(tests, expand):
    assert forbidden.needs_expansion(tests) is expand


def test_the_expanded_tests_are_cut_out_of_the_expanded_crate():
    expanded = "fn f() { std::process::exit(1) }\n" + forbidden.TESTS_MARKER + "\nmod tests { fn t() {} }\n"
    assert forbidden.after_marker(expanded) == "\nmod tests { fn t() {} }\n"
    nested = "mod a { fn g() { std::process::exit(1) } mod rtf_generated_1 { fn t() {} } }"
    assert forbidden.module_named("rtf_generated_1")(nested) == "mod rtf_generated_1 { fn t() {} }"


@pytest.mark.slow
def test_a_macro_assembled_exit_is_caught_after_expansion_and_an_honest_macro_passes(tmp_path):
    attack = (ATTACKS / "early_exit_macro_assembled.rs").read_text()
    assert forbidden.refusal(attack) is None  # the source scan alone misses it
    honest = ("macro_rules! check {\n    ($x:expr, $want:expr) => { assert_eq!(clamp($x, 0, 10), $want) };\n}\n\n"
              "#[test]\nfn clamps_through_a_macro() {\n    check!(15, 10);\n    check!(-1, 0);\n}\n")
    evaluate_samples([sample("attack", CLAMP, attack), sample("honest", CLAMP, honest)], tmp_path, jobs=2,
                     mutation=False, coverage=False, reruns=1, timeout=10.0, build_timeout=60.0)
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "samples.jsonl").read_text().splitlines())}
    assert records["attack"]["failure"] == "forbidden_construct", records["attack"]["reasons"]
    assert "std::process::exit (macro-expanded tests, line" in records["attack"]["reasons"][-1]
    assert records["honest"]["passes"] and records["honest"]["tests_run"] == 1, records["honest"]["reasons"]


@pytest.mark.slow
def test_in_crate_tests_are_expanded_too(tmp_path):
    fixture = Path(__file__).resolve().parents[1] / "data" / "crates" / "rtf-fixture"
    digits = (fixture / "src" / "digits.rs").read_text()
    start = digits.index("pub fn digit_count")
    function = digits[start:digits.index("pub fn digit_sum", start)].rstrip()
    attack = ("use super::*;\n\nmacro_rules! call {\n    ($m:ident, $f:ident) => { std::$m::$f(0) };\n}\n\n"
              "#[test]\nfn ends_the_run() {\n    assert_eq!(digit_count(7), 1);\n    call!(process, exit)\n}\n")
    crate = {"dir": str(fixture), "file": "src/digits.rs"}
    evaluate_samples([sample("attack", function, attack, crate=crate)], tmp_path, jobs=1, mutation=False,
                     coverage=False, reruns=1, timeout=10.0, build_timeout=60.0)
    record = json.loads((tmp_path / "samples.jsonl").read_text())
    assert record["failure"] == "forbidden_construct", record["reasons"]
    assert "std::process::exit (macro-expanded tests, line" in record["reasons"][-1]
