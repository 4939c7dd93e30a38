"""Canonical field values and the fingerprint (hash) of a record's mapped values.

The coupling keeps, per side, a fingerprint of the mapped values as they are on that side after the last sync.
A candidate whose newly mapped values give the same fingerprint is *Unchanged* with no read of the
destination, and two sides are compared without caring how each API spells a value. Canonical means:

- blank is one value: ``None``, ``""`` and NaN (Business Central answers ``""`` for an empty text, Dataverse
  ``null``);
- numbers compare by value: ``0``, ``0.0`` and ``0.0000`` (a Dataverse money column) are the same, floats are
  rounded to 9 decimals;
- GUIDs compare case-insensitively (lower case);
- booleans stay booleans (``True`` is not ``1``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pandas as pd

_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_is_guid = _GUID.match
# One encoder for every fingerprint: json.dumps with options builds a new JSONEncoder on each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False)


#: Business Central's and Dataverse's empty GUID: no value.
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"


def canonical(value: Any) -> Any:
    """The canonical form of one value (see the module docstring)."""
    # Exact types first: a page has hundreds of thousands of cells, nearly all plain str, int, bool or None.
    kind = type(value)
    if kind is str:
        if not value:
            return None
        if len(value) == 36 and _is_guid(value):
            # The empty GUID is Business Central's blank for an id field (an AL Guid with no value): a customer
            # without payment terms has paymentTermsId 00000000-0000-0000-0000-000000000000.
            return None if value == EMPTY_GUID else value.lower()
        return value
    if value is None or kind is int or kind is bool:
        return value
    return _canonical_other(value)


def _canonical_other(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        rounded = round(value, 9)
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, str):
        return canonical(str(value))
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalars
        return canonical(value.item())
    return value


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell of ``frame`` in canonical form, in object columns.

    Built column by column with ``dtype=object``: pandas' own ``map`` would infer dtypes again and turn the
    ``None`` of a blank value back into NaN (and ints into numpy ints, which JSON cannot encode).
    """
    return pd.DataFrame(
        {
            c: pd.Series([canonical(v) for v in frame[c].tolist()], index=frame.index, dtype=object)
            for c in frame.columns
        },
        index=frame.index,
        columns=frame.columns,
    )


def fingerprint_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One fingerprint per row over ``columns`` (in that order; missing columns count as blank).

    :param frame: canonical values, one row per record.
    :return: a Series of 32-character hex digests (BLAKE2b, 16 bytes) aligned with ``frame``.
    """
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    present = [c if c in frame.columns else None for c in columns]
    data = frame.reindex(columns=[c for c in present if c is not None]).itertuples(index=False, name=None)
    encode = _ENCODER.encode
    blake2b = hashlib.blake2b
    digests = []
    if None not in present:
        for row in data:
            digests.append(blake2b(encode([canonical(v) for v in row]).encode(), digest_size=16).hexdigest())
    else:
        for row in data:
            values = iter(row)
            ordered = [canonical(next(values)) if c is not None else None for c in present]
            digests.append(blake2b(encode(ordered).encode(), digest_size=16).hexdigest())
    return pd.Series(digests, index=frame.index, dtype=object)


def differing_columns(left: pd.Series, right: pd.Series, columns: list[str]) -> list[str]:
    """The columns whose canonical values differ between two records."""
    return [c for c in columns if canonical(left.get(c)) != canonical(right.get(c))]
