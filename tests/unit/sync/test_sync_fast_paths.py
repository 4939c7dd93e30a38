"""The engine's fast paths give exactly what the straightforward code gives (benchmark work, issue 10)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from dynamics_jobqueue.sync.fingerprint import canonical, fingerprint_rows
from dynamics_jobqueue.sync.runner import _parse_time
from dynamics_jobqueue.sync.writer import _index_rows


def test_index_rows_are_to_dict_index_value_for_value_and_type() -> None:
    frame = pd.DataFrame(
        {
            "text": ["a", None, ""],
            "flag": [True, False, True],
            "when": pd.to_datetime(["2026-11-30T08:00:00Z", "2026-11-30T08:00:01Z", None], utc=True),
            "amount": [1.5, np.nan, 2.0],
            "count": [1, 2, 3],
        },
        index=["x", "y", "z"],
    )
    expected, got = frame.to_dict("index"), _index_rows(frame)
    assert list(got) == list(expected)
    for key, row in expected.items():
        for column, value in row.items():
            mine = got[key][column]
            assert type(mine) is type(value), (key, column)
            assert mine == value or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-30T08:00:00.123Z",
        "2026-11-30T08:00:00Z",
        "2026-11-30T08:00:00.1234567Z",  # seven decimals, as .NET writes them
        "2026-11-30T09:00:00.5+01:00",
        "2026-11-30T08:00:00",
    ],
)
def test_change_markers_parse_as_pandas_parses_them(stamp: str) -> None:
    reference = pd.Timestamp(stamp)
    reference = reference.tz_convert("UTC") if reference.tzinfo else reference.tz_localize("UTC")
    parsed = _parse_time(stamp)
    assert isinstance(parsed, datetime) and parsed.tzinfo is not None
    assert parsed == reference.to_pydatetime(warn=False)
    assert parsed.astimezone(UTC) == parsed


def test_fingerprints_do_not_depend_on_how_a_value_is_spelled() -> None:
    guid = "ABCDEF01-2345-6789-ABCD-EF0123456789"
    assert [canonical(v) for v in (guid, "", np.int64(3), np.float64(2.0), 0.0000, np.bool_(True), pd.NA)] == [
        guid.lower(),
        None,
        3,
        2,
        0,
        True,
        None,
    ]
    one = pd.DataFrame({"a": [guid, "x"], "b": [3, None]}, dtype=object)
    two = pd.DataFrame({"a": [guid.lower(), "x"], "b": [3.0, ""]}, dtype=object)
    columns = ["a", "b", "missing"]
    assert fingerprint_rows(one, columns).tolist() == fingerprint_rows(two, columns).tolist()
