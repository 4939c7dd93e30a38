"""Transformation rules of field mappings (BC's *Transformation Rule* on an Integration Field Mapping).

A mapping file lists them per field, applied left to right to the value on its way to the destination::

    transform: [email_local_part, upper, {truncate: 20}]

Each rule works on a whole pandas Series at once (one page of records), so a page of 20,000 records costs a
few vectorised operations, not 20,000 Python calls. Blank values (``None``, ``""``) stay blank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# pandas only types the rules here (they call Series methods): the DAG file imports this module to validate the
# mappings at parse time, and importing pandas would cost the dag-processor about a second per parse.
if TYPE_CHECKING:
    import pandas as pd


def _strings(series: pd.Series, fn: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string operation to the non-blank text values, leaving the others as they are."""
    mask = series.map(lambda v: isinstance(v, str) and v != "")
    if not mask.any():
        return series
    out = series.astype(object).copy()
    out[mask] = fn(series[mask].astype(str))
    return out


def _upper(series: pd.Series, _: Any) -> pd.Series:
    return _strings(series, lambda s: s.str.upper())


def _lower(series: pd.Series, _: Any) -> pd.Series:
    return _strings(series, lambda s: s.str.lower())


def _trim(series: pd.Series, _: Any) -> pd.Series:
    return _strings(series, lambda s: s.str.strip())


def _truncate(series: pd.Series, length: Any) -> pd.Series:
    return _strings(series, lambda s: s.str.slice(0, int(length)))


def _email_local_part(series: pd.Series, _: Any) -> pd.Series:
    return _strings(series, lambda s: s.str.split("@", n=1).str[0])


def _round(series: pd.Series, digits: Any) -> pd.Series:
    return series.map(lambda v: round(v, int(digits)) if isinstance(v, int | float) and not isinstance(v, bool) else v)


def _map(series: pd.Series, table: Any) -> pd.Series:
    return series.map(lambda v: table.get(v, v) if isinstance(v, str | int | float | bool) else v)


def _prefix(series: pd.Series, text: Any) -> pd.Series:
    return _strings(series, lambda s: str(text) + s)


def _minimum(series: pd.Series, floor: Any) -> pd.Series:
    return series.map(lambda v: floor if _is_number(v) and v < floor else v)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _default(series: pd.Series, value: Any) -> pd.Series:
    return series.map(lambda v: value if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else v)


@dataclass(frozen=True)
class _Rule:
    fn: Callable[[pd.Series, Any], pd.Series]
    takes_argument: bool
    check: Callable[[Any], bool] = lambda _: True
    argument_help: str = ""


_RULES: dict[str, _Rule] = {
    "upper": _Rule(_upper, False),
    "lower": _Rule(_lower, False),
    "trim": _Rule(_trim, False),
    "email_local_part": _Rule(_email_local_part, False),
    "truncate": _Rule(
        _truncate, True, lambda a: isinstance(a, int) and not isinstance(a, bool) and a > 0, "a length >= 1"
    ),
    "round": _Rule(_round, True, lambda a: isinstance(a, int) and not isinstance(a, bool) and a >= 0, "digits >= 0"),
    "map": _Rule(_map, True, lambda a: isinstance(a, Mapping) and bool(a), "a non-empty {from: to} mapping"),
    "default": _Rule(_default, True, lambda a: a is not None, "a value"),
    # Filled from the record's own field by apply_all (it needs the record, not only the value).
    "default_from": _Rule(_default, True, lambda a: isinstance(a, str) and a != "", "a field name"),
    "prefix": _Rule(_prefix, True, lambda a: isinstance(a, str) and a != "", "a non-empty text"),
    "minimum": _Rule(_minimum, True, lambda a: _is_number(a), "a number"),
}

#: Names of the available rules, for documentation and error messages.
RULE_NAMES = tuple(sorted(_RULES))


@dataclass(frozen=True)
class Transformation:
    """One rule with its argument, e.g. ``truncate`` with ``20``.

    ``upper``/``lower``/``trim``: text case and spaces; ``truncate: n``: at most n characters (BC Code and Text
    lengths); ``email_local_part``: ``JO@contoso.com`` -> ``JO``; ``round: n``: n decimals; ``map: {a: b}``:
    replace listed values (others pass); ``default: v``: v when blank; ``prefix: t``: t before the text
    (``NAV `` + ``PCS``: Business Central's unit group names, codeunit 5342 ``GetUnitGroupName``);
    ``default_from: field``: the record's ``field`` when blank (see :func:`apply_all`);
    ``minimum: n``: numbers below n become n (negative inventory -> 0, 5342
    ``UpdateCRMProductQuantityOnHandIfNegative``).
    """

    name: str
    argument: Any = None

    def apply(self, series: pd.Series) -> pd.Series:
        """Transform a Series of values (object dtype); blanks stay blank unless the rule is ``default``."""
        return _RULES[self.name].fn(series, self.argument)


def parse_transformations(raw: Any) -> tuple[Transformation, ...]:
    """Parse a ``transform`` list: each entry a rule name or a one-key mapping ``{rule: argument}``.

    :raises ValueError: for an unknown rule or a bad argument, naming the rule and the rules available.
    """
    if isinstance(raw, str | Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError(f"transform must be a list of rules, not {type(raw).__name__}")
    parsed: list[Transformation] = []
    for entry in raw:
        if isinstance(entry, str):
            name, argument, given = entry, None, False
        elif isinstance(entry, Mapping) and len(entry) == 1:
            name, argument = next(iter(entry.items()))
            given = True
        else:
            raise ValueError(f"a transformation is a rule name or {{rule: argument}}, not {entry!r}")
        rule = _RULES.get(str(name))
        if rule is None:
            raise ValueError(f"unknown transformation {name!r}; available: {', '.join(RULE_NAMES)}")
        if rule.takes_argument and not given:
            raise ValueError(f"transformation {name!r} needs an argument ({rule.argument_help}): {{{name}: ...}}")
        if not rule.takes_argument and given:
            raise ValueError(f"transformation {name!r} takes no argument")
        if rule.takes_argument and not rule.check(argument):
            raise ValueError(f"transformation {name!r} needs {rule.argument_help}, not {argument!r}")
        parsed.append(Transformation(str(name), argument))
    return tuple(parsed)


def apply_all(series: pd.Series, rules: tuple[Transformation, ...], records: pd.DataFrame | None = None) -> pd.Series:
    """Apply ``rules`` left to right.

    :param records: the source records ``series`` comes from (same index), for ``default_from: field`` (a blank
        value takes the record's ``field``: a currency without a Symbol gets its code, codeunit 7205
        ``SetDefaultSymbolOnCRMTransactioncurrencyIfEmpty``). Without them the rule leaves blanks alone.
    """
    for rule in rules:
        if rule.name == "default_from":
            if records is not None and rule.argument in records.columns:
                fallback = records[rule.argument].astype(object)
                blank = series.map(lambda v: v is None or v == "" or (isinstance(v, float) and math.isnan(v)))
                series = series.astype(object).where(~blank, fallback)
            continue
        series = rule.apply(series)
    return series
