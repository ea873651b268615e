"""Boundary-input detection behind the rubric's `v3_edge_cases_present` (summary `edge_case_rate`)."""

import pytest

from falsify.evaluate.assertions import edge_cases


@pytest.mark.parametrize("tests, expected", [
    ("assert_eq!(f(0), 1);", ["zero"]),
    ("assert_eq!(f(-3), 1);", ["negative"]),
    ("assert!(g(i32::MAX) > 1); assert!(g(u8::MIN) == 7);", ["min_max"]),
    ('assert_eq!(count(""), 0);', ["zero", "empty"]),
    ("assert!(parse(\"x\").is_err()); assert_eq!(head(&[]), None);", ["empty", "none_or_err"]),
    ("assert!(f(f64::NAN).is_nan());", ["non_finite"]),
])
def test_boundary_inputs_are_recognised(tests, expected):
    assert edge_cases(tests) == expected


def test_ordinary_inputs_index_and_comments_are_not_edge_cases():
    assert edge_cases("let x = v[0]; assert_eq!(f(10), x - 1); // try 0 and i32::MAX later") == []
