"""A small OData v4 query-option parser shared by both emulated APIs.

``$filter`` is parsed into an AST and translated into a parameterised SQLite ``WHERE`` fragment over
the entity set's table (:mod:`sandbox.store`), so a filter never loads rows into Python. Supported, as
both real APIs document it (OData v4 URL conventions, part 2): ``eq ne gt ge lt le and or not``,
parentheses, ``null``, ``true``/``false``, integers and decimals, ``'strings'`` with ``''`` escaping,
unquoted date-times (``2026-01-01T00:00:00Z``, with ``Z`` or an offset), dates (``2026-01-01``), GUIDs,
and the functions ``startswith``, ``endswith`` and ``contains``. Text comparisons are
case-insensitive because both products run on case-insensitive SQL Server collations.
Anything else raises :class:`QueryError`, which the API layers turn into a 400 answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox.schema import EntitySet


class QueryError(ValueError):
    """A query option the sandbox (and the real API) cannot evaluate; answered with 400."""


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # name, string, number, datetime, date, guid, op, lparen, rparen, comma, end
    value: Any
    pos: int


_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})"
_TOKEN_RE = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>{_GUID})(?![\w-])
  | (?P<datetime>{_DATETIME})
  | (?P<date>\d{{4}}-\d{{2}}-\d{{2}})(?![\w:])
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?)(?![\w])
  | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
    """,
    re.VERBOSE,
)

_COMPARISON = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_FUNCTIONS = {"startswith", "endswith", "contains"}


def tokenize(text: str) -> list[Token]:
    """Split a ``$filter`` expression into tokens.

    :raises QueryError: on a character that starts no token or an unterminated string.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise QueryError(f"Syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "string":
            tokens.append(Token("string", raw[1:-1].replace("''", "'"), pos))
        elif kind == "number":
            digits = raw.rstrip("mMdDfFlL")
            is_float = any(c in digits for c in ".eE")
            tokens.append(Token("number", float(digits) if is_float else int(digits), pos))
        elif kind == "datetime":
            tokens.append(Token("datetime", parse_datetime(raw), pos))
        elif kind == "date":
            tokens.append(Token("date", date.fromisoformat(raw).isoformat(), pos))
        elif kind == "guid":
            tokens.append(Token("guid", raw.lower(), pos))
        elif kind == "name":
            tokens.append(Token("name", raw, pos))
        elif kind != "ws":
            tokens.append(Token(kind, raw, pos))
        pos = match.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


def parse_datetime(raw: str) -> datetime:
    """Parse an ISO 8601 date-time with ``Z`` or an offset into an aware UTC datetime.

    :raises QueryError: when the text is not such a date-time (a date-time without zone is ambiguous).
    """
    text = raw.strip()
    match = re.fullmatch(r"(.*?)(\.\d+)?(Z|[+-]\d{2}:\d{2})", text)
    if match is None:
        raise QueryError(f"The date-time '{raw}' needs a time zone (Z or +hh:mm).")
    head, fraction, zone = match.groups()
    # Python reads at most 6 fraction digits; SQL Server's datetime2 has 7.
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    try:
        value = datetime.fromisoformat(f"{head}.{micro}{'+00:00' if zone == 'Z' else zone}")
    except ValueError as exc:
        raise QueryError(f"The date-time '{raw}' is not valid.") from exc
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """The canonical stored form: UTC, microseconds, ``Z`` (fixed width, so text order is time order)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Prop:
    name: str


@dataclass(frozen=True)
class Literal:
    kind: str  # null, bool, number, string, datetime, date, guid
    value: Any


@dataclass(frozen=True)
class Compare:
    op: str
    left: Prop | Literal
    right: Prop | Literal


@dataclass(frozen=True)
class Call:
    function: str
    prop: Prop
    text: str


@dataclass(frozen=True)
class Logical:
    op: str  # and, or
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Compare | Call | Logical | Not


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, token: Token) -> QueryError:
        return QueryError(f"Syntax error at position {token.pos} in '{self.text}'.")

    def expect(self, kind: str) -> Token:
        token = self.take()
        if token.kind != kind:
            raise self.error(token)
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.value == word

    def parse(self) -> Node:
        node = self.parse_or()
        if self.peek().kind != "end":
            raise self.error(self.peek())
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.is_word("or"):
            self.take()
            node = Logical("or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.is_word("and"):
            self.take()
            node = Logical("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.is_word("not"):
            self.take()
            return Not(self.parse_unary())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.peek()
        if token.kind == "lparen":
            self.take()
            node = self.parse_or()
            self.expect("rparen")
            return node
        if token.kind == "name" and token.value in _FUNCTIONS and self.tokens[self.i + 1].kind == "lparen":
            self.take()
            self.take()
            prop = self.operand()
            self.expect("comma")
            text = self.operand()
            self.expect("rparen")
            if not isinstance(prop, Prop) or not (isinstance(text, Literal) and text.kind == "string"):
                raise QueryError(f"{token.value}() takes a property and a string literal in '{self.text}'.")
            return Call(token.value, prop, text.value)
        left = self.operand()
        op_token = self.take()
        if op_token.kind != "name" or op_token.value not in _COMPARISON:
            raise self.error(op_token)
        right = self.operand()
        return Compare(op_token.value, left, right)

    def operand(self) -> Prop | Literal:
        token = self.take()
        if token.kind == "name":
            if token.value == "null":
                return Literal("null", None)
            if token.value in ("true", "false"):
                return Literal("bool", token.value == "true")
            if token.value.count("/") == 1 and "." not in token.value:
                # A lookup's navigation property and the target's key (``parentcustomerid_account/accountid``),
                # as Dataverse filters on a lookup column's target ("Query data using the Web API": filter on
                # lookup properties); the store decides whether the path exists.
                return Prop(token.value)
            if "/" in token.value or "." in token.value or token.value in _FUNCTIONS:
                raise QueryError(f"The query option '{token.value}' is not supported in '{self.text}'.")
            return Prop(token.value)
        if token.kind in ("string", "number", "datetime", "date", "guid"):
            return Literal(token.kind, token.value)
        raise self.error(token)


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression.

    :raises QueryError: on syntax the sandbox does not support.
    """
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# SQL translation


@dataclass(frozen=True)
class Column:
    """How a property reads in SQL.

    :param sql: the SQL expression.
    :param type: the schema field type.
    :param nullable: whether the expression can be NULL (decides two-valued logic wrapping).
    :param to_sql: converts a date-time literal to the stored text form of this property.
    """

    sql: str
    type: str
    nullable: bool
    to_sql: Callable[[datetime], str] = format_datetime


def _unknown_property(entity: EntitySet, name: str) -> QueryError:
    return QueryError(f"Could not find a property named '{name}' on type '{entity.type_name}'.")


def _literal_sql(literal: Literal, column: Column, entity: EntitySet, prop: str) -> Any:
    kind, value = literal.kind, literal.value
    ftype = column.type
    if kind == "null":
        return None
    if ftype in ("string", "code", "enum"):
        if kind != "string":
            raise _incompatible(entity, prop, kind)
        return value
    if ftype == "guid":
        if kind == "guid" or kind == "string":
            return str(value).lower()
        raise _incompatible(entity, prop, kind)
    if ftype in ("int", "decimal"):
        if kind != "number":
            raise _incompatible(entity, prop, kind)
        return value
    if ftype == "bool":
        if kind != "bool":
            raise _incompatible(entity, prop, kind)
        return 1 if value else 0
    if ftype == "datetime":
        if kind == "datetime":
            return column.to_sql(value)
        if kind == "date":
            return column.to_sql(datetime.fromisoformat(value).replace(tzinfo=UTC))
        raise _incompatible(entity, prop, kind)
    if ftype == "date":
        if kind == "date":
            return value
        raise _incompatible(entity, prop, kind)
    raise _incompatible(entity, prop, kind)


def _incompatible(entity: EntitySet, prop: str, kind: str) -> QueryError:
    return QueryError(
        f"A binary operator with incompatible types was detected. Found operand types "
        f"'{entity.type_name}.{prop}' and literal of kind '{kind}'."
    )


def _collate(column: Column) -> str:
    return " COLLATE NOCASE" if column.type in ("string", "code", "enum") else ""


def to_sql(node: Node, entity: EntitySet, resolve: Callable[[str], Column | None]) -> tuple[str, list[Any]]:
    """Translate a filter AST into a SQLite boolean expression and its parameters.

    Comparisons follow OData's two-valued logic: a comparison with a missing (null) value is false,
    never unknown, so ``not`` behaves as users expect.

    :param resolve: maps a property name to its :class:`Column`, or ``None`` when unknown.
    :raises QueryError: on unknown properties or operand types that do not match the property.
    """
    params: list[Any] = []

    def column_of(prop: Prop) -> Column:
        column = resolve(prop.name)
        if column is None:
            raise _unknown_property(entity, prop.name)
        return column

    def walk(n: Node) -> str:
        if isinstance(n, Logical):
            return f"({walk(n.left)} {n.op.upper()} {walk(n.right)})"
        if isinstance(n, Not):
            return f"(NOT {walk(n.operand)})"
        if isinstance(n, Call):
            column = column_of(n.prop)
            if column.type not in ("string", "code", "enum"):
                raise QueryError(f"{n.function}() needs a text property; '{n.prop.name}' is not text.")
            escaped = n.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {"startswith": f"{escaped}%", "endswith": f"%{escaped}", "contains": f"%{escaped}%"}
            params.append(pattern[n.function])
            return f"COALESCE({column.sql} LIKE ? ESCAPE '\\', 0)"
        left, right, op = n.left, n.right, n.op
        if isinstance(left, Literal) and isinstance(right, Prop):
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if not isinstance(left, Prop):
            raise QueryError("A comparison needs a property on one side.")
        column = column_of(left)
        if isinstance(right, Prop):
            other = column_of(right)
            expr = f"({column.sql} {_COMPARISON[op]} {other.sql}{_collate(column)})"
            return f"COALESCE({expr}, 0)"
        value = _literal_sql(right, column, entity, left.name)
        params.append(value)
        if op in ("eq", "ne") and (value is None or column.nullable):
            # IS / IS NOT compare NULLs as values: null eq null is true, null ne 'x' is true.
            return f"({column.sql} {'IS' if op == 'eq' else 'IS NOT'} ?{_collate(column)})"
        if value is None:
            # Ordering against null is false in OData.
            params.pop()
            return "0"
        expr = f"{column.sql} {_COMPARISON[op]} ?{_collate(column)}"
        return f"COALESCE(({expr}), 0)" if column.nullable else f"({expr})"

    return walk(node), params


# ---------------------------------------------------------------------------------------------
# $select, $orderby, Prefer


_GUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def matches(node: Node, row: dict[str, Any]) -> bool:
    """Evaluate a parsed ``$filter`` against a rendered row (a dict), for the small system sets served from memory:
    only ``eq``/``ne`` comparisons joined by ``and``/``or``; GUIDs compare case-insensitively.

    :raises QueryError: for an unknown property or another operator.
    """
    if isinstance(node, Logical):
        left, right = matches(node.left, row), matches(node.right, row)
        return left and right if node.op == "and" else left or right
    if isinstance(node, Compare) and node.op in ("eq", "ne"):

        def value(side: Prop | Literal) -> Any:
            if isinstance(side, Prop):
                if side.name not in row:
                    raise QueryError(f"Could not find a property named '{side.name}'.")
                found = row[side.name]
                return found.lower() if isinstance(found, str) and _GUID_TEXT.match(found) else found
            return str(side.value).lower() if side.kind == "guid" else side.value

        equal = value(node.left) == value(node.right)
        return equal if node.op == "eq" else not equal
    raise QueryError("The sandbox supports only eq/ne with and/or on this entity set.")


def parse_select(text: str | None, entity: EntitySet) -> list[str] | None:
    """The property names of ``$select`` in request order, or ``None`` for all.

    :raises QueryError: for a property the entity type does not have.
    """
    if text is None or not text.strip():
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if entity.field_type(name) is None:
            raise _unknown_property(entity, name)
    return names


@dataclass(frozen=True)
class OrderTerm:
    prop: str
    descending: bool


def parse_orderby(text: str | None, entity: EntitySet) -> list[OrderTerm]:
    """``$orderby`` terms, e.g. ``lastModifiedDateTime desc,number``.

    :raises QueryError: for unknown properties or a direction other than asc/desc.
    """
    if text is None or not text.strip():
        return []
    terms = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise QueryError(f"Syntax error in $orderby '{text}'.")
        if entity.field_type(words[0]) is None:
            raise _unknown_property(entity, words[0])
        terms.append(OrderTerm(words[0], len(words) == 2 and words[1].lower() == "desc"))
    return terms


def parse_top(text: str | None, name: str = "$top") -> int | None:
    """A non-negative integer query option (``$top``/``$skip``), or ``None`` when absent.

    :raises QueryError: when it is not a non-negative integer.
    """
    if text is None:
        return None
    if not text.strip().isdigit():
        raise QueryError(f"Invalid value '{text}' for {name}; a non-negative integer is required.")
    return int(text)


@dataclass
class Preferences:
    """The parsed ``Prefer`` header (RFC 7240, OData v4 preferences)."""

    maxpagesize: int | None = None
    track_changes: bool = False
    return_representation: bool = False
    continue_on_error: bool = False
    include_annotations: str | None = None


_PREFERENCE_RE = re.compile(r'\s*([^=,\s]+)\s*(?:=\s*("[^"]*"|[^,]*))?\s*(?:,|$)')


def parse_prefer(values: list[str]) -> Preferences:
    """Parse every ``Prefer`` header value (comma-separated preferences, quoted arguments may hold
    commas; unknown preferences are ignored as RFC 7240 requires)."""
    prefs = Preferences()
    for value in values:
        for match in _PREFERENCE_RE.finditer(value):
            name = match.group(1).lower()
            arg = (match.group(2) or "").strip().strip('"')
            if name in ("odata.maxpagesize", "maxpagesize") and arg.isdigit():
                prefs.maxpagesize = int(arg)
            elif name in ("odata.track-changes", "track-changes"):
                prefs.track_changes = True
            elif name == "return" and arg == "representation":
                prefs.return_representation = True
            elif name in ("odata.continue-on-error", "continue-on-error"):
                prefs.continue_on_error = True
            elif name == "odata.include-annotations":
                prefs.include_annotations = arg
    return prefs
