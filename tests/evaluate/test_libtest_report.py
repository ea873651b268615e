"""The libtest-output parser and the harness check, on outputs real libtest binaries printed.

The literals come from a crate built with cargo 1.95 (`tests::...` unit tests, a proptest, a
should_panic test, ignored tests with and without a reason); the attacks' outputs are what the
binaries of tests/evaluate/attacks printed, trimmed.
"""

from __future__ import annotations

from falsify.evaluate.libtest_report import (
    ResultLine,
    Summary,
    declared_test_names,
    parse_listing,
    parse_run,
    verify,
)

LISTING = """tests::clamps_low: test
tests::clamps_wrong: test
tests::ignored_plain: test
tests::ignored_reason: test
tests::panics_boom: test
tests::stays_within: test
"""

FAILED_RUN = """
running 6 tests
test tests::clamps_low ... ok
test tests::clamps_wrong ... FAILED
test tests::ignored_plain ... ignored
test tests::ignored_reason ... ignored, slow network
test tests::panics_boom - should panic ... FAILED
test tests::stays_within ... ok

failures:

---- tests::clamps_wrong stdout ----
test tests::fake ... ok

thread 'tests::clamps_wrong' (13544) panicked at src/lib.rs:9:62:
assertion `left == right` failed
  left: 10
 right: 20
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- tests::panics_boom stdout ----

thread 'tests::panics_boom' (13545) panicked at src/lib.rs:12:24:
bang
note: panic did not contain expected string
      panic message: "bang"
 expected substring: "boom"

failures:
    tests::clamps_wrong
    tests::panics_boom

test result: FAILED. 2 passed; 2 failed; 2 ignored; 0 measured; 1 filtered out; finished in 0.00s

"""

PASSED_RUN = """
running 6 tests
test tests::clamps_low ... ok
test tests::ignored_plain ... ignored
test tests::ignored_reason ... ignored, slow network
test tests::clamps_wrong ... ok
test tests::panics_boom - should panic ... ok
test tests::stays_within ... ok

test result: ok. 4 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.07s

"""

SHOULD_PANIC_ONLY = ("tests::panics_boom: test\n", """
running 1 test
test tests::panics_boom - should panic ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out; finished in 0.06s

""")

# `exits::zz_exit` calls std::process::exit(0): the run ends with no summary (here with --test-threads=1).
EARLY_EXIT_RUN = """
running 3 tests
test tests::clamps_low ... ok
test tests::clamps_wrong ... """

# A test wrote these lines itself (io::stdout().write_all bypasses the capture), then exited 0.
FORGED_RUN = PASSED_RUN.replace("test result: ok.", "test tests::clamps_wrong ... ok\n\ntest result: ok.")

SOURCE = """#[test]
fn clamps_low() {}

#[cfg(feature = "never")]
mod off {
    #[test]
    fn not_compiled() {}
}

mod nested {
    #[test]
    #[should_panic]
    fn panics_boom() {}

    #[cfg(windows)]
    #[test]
    fn only_on_windows() {}
}

fn helper() {
    #[test]
    fn inner_item_is_no_test() {}
}

proptest! {
    #[test]
    fn stays_within(x in any::<i32>()) {}
}
"""


def test_pretty_results_with_should_panic_and_ignored_reasons():
    run = parse_run(FAILED_RUN)
    assert run.header == 6
    assert run.results == [ResultLine("tests::clamps_low", "ok"), ResultLine("tests::clamps_wrong", "FAILED"),
                           ResultLine("tests::ignored_plain", "ignored"), ResultLine("tests::ignored_reason", "ignored"),
                           ResultLine("tests::panics_boom", "FAILED", should_panic=True),
                           ResultLine("tests::stays_within", "ok")]


def test_summary_lines_ok_and_failed():
    assert parse_run(FAILED_RUN).summaries == [Summary(False, 2, 2, 2, 0, 1)]
    assert parse_run(PASSED_RUN).summaries == [Summary(True, 4, 0, 2, 0, 0)]


def test_captured_output_in_the_failures_section_is_not_a_result():
    """tests::clamps_wrong printed `test tests::fake ... ok`; libtest shows it under `failures:`."""
    assert "tests::fake" not in [r.name for r in parse_run(FAILED_RUN).results]


def test_lines_that_look_half_like_results_are_not_results():
    noisy = PASSED_RUN.replace("test tests::clamps_low ... ok\n", "test tests::clamps_low ... ok\n"
                               "test tests::x ... okay\ntest tests::y ...ok\n test tests::z ... ok\n"
                               "progress: test tests::w ... ok\ntest tests::v ... FAILED later\n")
    assert [r.name for r in parse_run(noisy).results] == [r.name for r in parse_run(PASSED_RUN).results]


def test_listing_reads_terse_lines_and_keeps_strays():
    assert parse_listing(LISTING).tests == ["tests::clamps_low", "tests::clamps_wrong", "tests::ignored_plain",
                                            "tests::ignored_reason", "tests::panics_boom", "tests::stays_within"]
    assert parse_listing(LISTING).stray == []
    forged = parse_listing("running 1 test\ntests::a: test\nbenches::b: bench\n")
    assert (forged.tests, forged.stray) == (["tests::a"], ["running 1 test"])


def test_declared_names_are_plain_tests_that_surely_compile():
    assert declared_test_names(SOURCE) == {"clamps_low", "panics_boom"}


def test_a_whole_honest_run_passes_the_check():
    proven = verify(LISTING, 0, PASSED_RUN, 0, {"clamps_low", "panics_boom"})
    assert (proven.tests_run, proven.failing_tests, proven.bypass) == (4, [], None)


def test_should_panic_tests_count_as_run():
    proven = verify(*SHOULD_PANIC_ONLY[:1], 0, SHOULD_PANIC_ONLY[1], 0, {"panics_boom"})
    assert (proven.tests_run, proven.bypass) == (1, None)


def test_a_failing_run_is_a_failure_not_a_bypass():
    proven = verify(LISTING, 0, FAILED_RUN, 101)
    assert (proven.failing_tests, proven.bypass) == (["tests::clamps_wrong", "tests::panics_boom"], None)


def test_early_exit_with_status_0_is_bypassed():
    listing = "tests::clamps_low: test\ntests::clamps_wrong: test\nexits::zz_exit: test\n"
    assert verify(listing, 0, EARLY_EXIT_RUN, 0).bypass == "harness_bypassed: 3 tests listed, 1 reported, exit status 0"


def test_forged_result_lines_are_bypassed():
    assert verify(LISTING, 0, FORGED_RUN, 0).bypass == (
        "harness_bypassed: reported more than once: tests::clamps_wrong, exit status 0")


def test_a_forged_summary_that_disagrees_with_the_results_is_bypassed():
    forged = PASSED_RUN.replace("4 passed; 0 failed", "5 passed; 0 failed")
    assert verify(LISTING, 0, forged, 0).bypass == (
        "harness_bypassed: the summary says 5 passed, 0 failed, 2 ignored; reported 4, 0, 2")


def test_a_missing_or_second_summary_is_bypassed():
    summary = PASSED_RUN.strip().splitlines()[-1]
    assert "0 `test result:` summary lines" in verify(LISTING, 0, PASSED_RUN.replace(summary, ""), 0).bypass
    assert "2 `test result:` summary lines" in verify(LISTING, 0, PASSED_RUN + summary + "\n", 0).bypass


def test_exit_status_must_agree_with_the_summary():
    failed_but_0 = FAILED_RUN.replace("test tests::fake ... ok\n", "")
    assert verify(LISTING, 0, failed_but_0, 0).bypass == "harness_bypassed: exit status 0 with 2 failing tests"
    assert verify(LISTING, 0, PASSED_RUN, 3).bypass == "harness_bypassed: exit status 3 with 0 failing tests"


def test_the_header_must_count_the_listed_tests():
    assert verify(LISTING, 0, PASSED_RUN.replace("running 6", "running 5"), 0).bypass == (
        "harness_bypassed: 6 tests listed, the header says 5, exit status 0")
    headless = PASSED_RUN.replace("running 6 tests", "")
    assert "no `running N tests` header" in verify(LISTING, 0, headless, 0).bypass


def test_a_report_of_an_unlisted_test_is_bypassed():
    listing = LISTING.replace("tests::stays_within: test\n", "tests::other: test\n")
    assert "reported but not listed: tests::stays_within" in verify(listing, 0, PASSED_RUN, 0).bypass


def test_a_listing_that_hides_a_declared_test_is_bypassed():
    """Code before main can answer --list itself; it must still name every #[test] fn of the source."""
    assert verify(LISTING, 0, PASSED_RUN, 0, {"clamps_low", "hidden_failure"}).bypass == (
        "harness_bypassed: 1 #[test] fns of the source are not in the listing: hidden_failure")


def test_a_module_that_was_not_compiled_is_a_run_of_no_test_not_a_bypass():
    """In-crate, a cfg of the crate can leave the function's file out (tokio's windows files on linux): nothing is
    listed and nothing runs. That proves no pass (verdict no_tests), so it need not be called a forgery."""
    empty_run = "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s\n\n"
    verified = verify("", 0, empty_run, 0, {"clamps_low"})
    assert verified.bypass is None and verified.tests_run == 0


def test_a_listing_run_that_prints_a_run_or_fails_is_bypassed():
    """A constructor that forges a whole run prints the same forgery for --list: that is no listing."""
    assert "the listing run printed 8 lines" in verify(PASSED_RUN, 0, PASSED_RUN, 0).bypass
    assert "the listing run (--list) exited with status 1" in verify(LISTING, 1, PASSED_RUN, 0).bypass
