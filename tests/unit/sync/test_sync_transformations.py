"""Transformation rules and canonical values: vectorised, blank-preserving, comparable across the two APIs."""

from __future__ import annotations

import pandas as pd
import pytest

from dynamics_jobqueue.sync.fingerprint import canonical, fingerprint_rows
from dynamics_jobqueue.sync.transformations import apply_all, parse_transformations


def test_rules_apply_left_to_right_and_keep_blanks() -> None:
    rules = parse_transformations(["email_local_part", "upper", {"truncate": 2}])
    series = pd.Series(["jo@contoso.com", "", None, "benjamin.chiu@contoso.com"], dtype=object)
    assert apply_all(series, rules).tolist() == ["JO", "", None, "BE"]


def test_map_round_default_and_trim() -> None:
    assert apply_all(
        pd.Series([" ", "All", "x"], dtype=object), parse_transformations([{"map": {" ": 0, "All": 1}}])
    ).tolist() == [0, 1, "x"]
    assert apply_all(
        pd.Series([1.23456, None, True], dtype=object), parse_transformations([{"round": 2}])
    ).tolist() == [1.23, None, True]
    assert apply_all(
        pd.Series(["", None, "GBP"], dtype=object), parse_transformations([{"default": "LCY"}])
    ).tolist() == ["LCY", "LCY", "GBP"]
    assert apply_all(pd.Series(["  a b "], dtype=object), parse_transformations(["trim", "lower"])).tolist() == ["a b"]


def test_prefix_minimum_and_default_from_the_record() -> None:
    """Business Central's unit group names ("NAV " + code), negative inventory written as 0, and a blank
    currency symbol that becomes the currency's code (5342, 7205)."""
    assert apply_all(
        pd.Series(["PCS", "", None], dtype=object), parse_transformations([{"prefix": "NAV "}])
    ).tolist() == ["NAV PCS", "", None]
    assert apply_all(
        pd.Series([-8, 3.5, None, "x"], dtype=object), parse_transformations([{"minimum": 0}])
    ).tolist() == [0, 3.5, None, "x"]
    records = pd.DataFrame({"symbol": ["$", "", None], "code": ["USD", "EUR", "DKK"]}, dtype=object)
    rules = parse_transformations([{"default_from": "code"}])
    assert apply_all(records["symbol"], rules, records).tolist() == ["$", "EUR", "DKK"]
    assert apply_all(records["symbol"], rules).tolist() == ["$", "", None]  # no records: blanks stay


@pytest.mark.parametrize(
    ("raw", "message"),
    [([{"prefix": ""}], "non-empty text"), ([{"minimum": "zero"}], "a number"), ([{"default_from": 3}], "field")],
)
def test_bad_arguments_of_the_new_rules(raw, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_transformations(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (["shout"], "unknown transformation 'shout'; available: default, default_from, email_local_part"),
        (["truncate"], "needs an argument"),
        ([{"upper": 1}], "takes no argument"),
        ([{"truncate": -1}], "a length >= 1"),
        ([{"map": {}}], "non-empty"),
        ([{"a": 1, "b": 2}], "a rule name or"),
        (42, "must be a list"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(raw, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_transformations(raw)


def test_canonical_values_compare_across_the_apis() -> None:
    assert canonical("") is None and canonical(float("nan")) is None and canonical(None) is None
    assert canonical(0.0) == canonical(0) == 0 and isinstance(canonical(0.0), int)
    assert canonical(649.40000000001) == 649.4
    assert canonical("ABCDEF00-0000-4000-8000-000000000001") == "abcdef00-0000-4000-8000-000000000001"
    assert (canonical(True) is True and canonical(True) != canonical(1)) or type(canonical(True)) is bool


def test_fingerprints_ignore_spelling_differences_but_not_values() -> None:
    bc = pd.DataFrame({"name": ["Adatum"], "limit": [0], "phone": [""]}, index=["a"], dtype=object)
    dv = pd.DataFrame({"name": ["Adatum"], "limit": [0.0], "phone": [None]}, index=["a"], dtype=object)
    other = pd.DataFrame({"name": ["Adatum Corp"], "limit": [0], "phone": [""]}, index=["a"], dtype=object)
    columns = ["name", "limit", "phone"]
    assert fingerprint_rows(bc, columns).iloc[0] == fingerprint_rows(dv, columns).iloc[0]
    assert fingerprint_rows(bc, columns).iloc[0] != fingerprint_rows(other, columns).iloc[0]
    # column order is part of the fingerprint; a missing column counts as blank
    assert (
        fingerprint_rows(bc, [*columns, "absent"]).iloc[0]
        == fingerprint_rows(bc.assign(absent=None), [*columns, "absent"]).iloc[0]
    )
