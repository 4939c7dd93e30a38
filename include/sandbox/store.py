"""SQLite persistence of the sandbox: one table per entity set, keyset paging, change tracking.

Every entity set table has the columns

- ``seq``: insertion order (``AUTOINCREMENT``, never reused), the default order and the keyset of paging;
- ``id``: the primary key GUID (BC ``id``, Dataverse ``<entity>id``), lower case;
- ``bkey``: the unique business key (BC code/number) or Dataverse alternate key, case-insensitive;
- ``version``: a database-wide change counter, bumped on every write (Dataverse ``versionnumber``,
  BC ETags, change tracking);
- ``modified``: the last-modified time in the canonical fixed-width UTC form of
  :func:`sandbox.odata.format_datetime` (so text order is time order);
- ``body``: the record as JSON.

Deleted records leave a row in ``tombstones`` so that Dataverse change tracking can report them.
Readers never load a whole table: :meth:`Store.page` fetches one page with a keyset predicate.
Writes are serialised by one process-wide lock around ``BEGIN IMMEDIATE`` transactions; nested
:meth:`Store.transaction` calls become savepoints, which is how a ``$batch`` change set is atomic.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.schema import DATAVERSE, all_sets

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from sandbox.odata import Column, OrderTerm
    from sandbox.schema import EntitySet


@dataclass
class Row:
    """One stored record."""

    seq: int
    id: str
    bkey: str | None
    version: int
    modified: str
    body: dict[str, Any]
    order_values: tuple[Any, ...] = ()


@dataclass
class DeltaItem:
    """One entry of a change-tracking answer: a changed row, or a deletion (``row`` is ``None``)."""

    version: int
    id: str
    row: Row | None


class DuplicateKey(Exception):
    """An insert or update would break the primary key or the business-key unique index."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


class Store:
    """The sandbox database.

    :param path: the SQLite file (created when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.RLock()
        with self.transaction() as db:
            self._create_schema(db)

    # -- connections and transactions -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            # WAL lets readers run while a write is in progress; NORMAL keeps commits cheap.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-65536")
            db.execute("PRAGMA temp_store=FILE")
            self._local.db = db
            self._local.depth = 0
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (or, nested, a savepoint) that commits on success, rolls back on error."""
        db = self._connection()
        depth: int = self._local.depth
        if depth == 0:
            self._write_lock.acquire()
            try:
                db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._write_lock.release()
                raise
        else:
            db.execute(f"SAVEPOINT sp{depth}")
        self._local.depth = depth + 1
        try:
            yield db
        except BaseException:
            self._local.depth = depth
            if depth == 0:
                db.execute("ROLLBACK")
                self._write_lock.release()
            else:
                db.execute(f"ROLLBACK TO sp{depth}")
                db.execute(f"RELEASE sp{depth}")
            raise
        self._local.depth = depth
        if depth == 0:
            try:
                db.execute("COMMIT")
            finally:
                self._write_lock.release()
        else:
            db.execute(f"RELEASE sp{depth}")

    def read(self) -> sqlite3.Connection:
        """The calling thread's connection for reads (inside a transaction it sees that transaction)."""
        return self._connection()

    # -- schema -----------------------------------------------------------------------------

    @staticmethod
    def _create_schema(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute("INSERT OR IGNORE INTO counters VALUES ('version', 0)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS tombstones (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " entity_set TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS tombstones_version ON tombstones (entity_set, version)")
        from sandbox.dataverse_webhooks import create_schema as create_dataverse_webhook_schema
        from sandbox.optionsets import create_schema as create_option_schema
        from sandbox.webhooks import create_schema as create_webhook_schema

        create_webhook_schema(db)
        create_dataverse_webhook_schema(db)
        create_option_schema(db)
        for entity in all_sets():
            t = entity.table
            db.execute(
                f'CREATE TABLE IF NOT EXISTS "{t}" (seq INTEGER PRIMARY KEY AUTOINCREMENT,'
                " id TEXT NOT NULL UNIQUE, bkey TEXT COLLATE NOCASE UNIQUE,"
                " version INTEGER NOT NULL, modified TEXT NOT NULL, body TEXT NOT NULL)"
            )
            db.execute(f'CREATE INDEX IF NOT EXISTS "{t}_version" ON "{t}" (version)')
            db.execute(f'CREATE INDEX IF NOT EXISTS "{t}_modified" ON "{t}" (modified)')

    def is_empty(self) -> bool:
        """True when nothing was ever written (a fresh data folder that needs seeding)."""
        return self.read().execute("SELECT value FROM counters WHERE name='version'").fetchone()[0] == 0

    def wipe(self) -> None:
        """Drop every table and recreate the schema."""
        with self.transaction() as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                if table != "sqlite_sequence":
                    db.execute(f'DROP TABLE "{table}"')
            db.execute("DELETE FROM sqlite_sequence")
            self._create_schema(db)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database and truncate it (after bulk writes)."""
        self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- counters ---------------------------------------------------------------------------

    def next_version(self, db: sqlite3.Connection, count: int = 1) -> int:
        """Reserve ``count`` change versions; returns the first. Call inside a transaction."""
        value = db.execute(
            "UPDATE counters SET value = value + ? WHERE name='version' RETURNING value", (count,)
        ).fetchone()[0]
        return int(value) - count + 1

    def current_version(self) -> int:
        return int(self.read().execute("SELECT value FROM counters WHERE name='version'").fetchone()[0])

    def next_number(self, db: sqlite3.Connection, series: str) -> int:
        """The next value of a number series (BC No. Series), starting at 1."""
        db.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (f"series:{series}",))
        return int(
            db.execute(
                "UPDATE counters SET value = value + 1 WHERE name=? RETURNING value", (f"series:{series}",)
            ).fetchone()[0]
        )

    # -- single records ---------------------------------------------------------------------

    @staticmethod
    def _row(r: Sequence[Any]) -> Row:
        return Row(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), tuple(r[6:]))

    def get(self, entity: EntitySet, record_id: str) -> Row | None:
        r = (
            self.read()
            .execute(
                f'SELECT seq, id, bkey, version, modified, body FROM "{entity.table}" WHERE id = ?',
                (record_id.lower(),),
            )
            .fetchone()
        )
        return self._row(r) if r else None

    def get_by_key(self, entity: EntitySet, value: str) -> Row | None:
        """The record whose business key / alternate key equals ``value`` (case-insensitive)."""
        r = (
            self.read()
            .execute(
                f'SELECT seq, id, bkey, version, modified, body FROM "{entity.table}" WHERE bkey = ?',
                (value,),
            )
            .fetchone()
        )
        return self._row(r) if r else None

    def find(self, entity: EntitySet, field: str, value: Any) -> Row | None:
        """The first record whose body property ``field`` equals ``value``."""
        r = (
            self.read()
            .execute(
                f'SELECT seq, id, bkey, version, modified, body FROM "{entity.table}"'
                f" WHERE json_extract(body, '$.{field}') = ? ORDER BY seq LIMIT 1",
                (value,),
            )
            .fetchone()
        )
        return self._row(r) if r else None

    def insert(
        self,
        db: sqlite3.Connection,
        entity: EntitySet,
        record_id: str,
        bkey: str | None,
        version: int,
        modified: str,
        body: dict[str, Any],
    ) -> None:
        """Insert a record.

        :raises DuplicateKey: when the id or the business key already exists.
        """
        try:
            db.execute(
                f'INSERT INTO "{entity.table}" (id, bkey, version, modified, body) VALUES (?, ?, ?, ?, ?)',
                (record_id, bkey, version, modified, json.dumps(body, separators=(",", ":"))),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey("bkey" if "bkey" in str(exc) else "id") from exc

    def update(
        self,
        db: sqlite3.Connection,
        entity: EntitySet,
        record_id: str,
        bkey: str | None,
        version: int,
        modified: str,
        body: dict[str, Any],
    ) -> None:
        """Replace a record's body and bump its version.

        :raises DuplicateKey: when the new business key belongs to another record.
        """
        try:
            db.execute(
                f'UPDATE "{entity.table}" SET bkey=?, version=?, modified=?, body=? WHERE id=?',
                (bkey, version, modified, json.dumps(body, separators=(",", ":")), record_id),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey("bkey") from exc

    def delete(self, db: sqlite3.Connection, entity: EntitySet, record_id: str, version: int) -> None:
        """Delete a record and leave a tombstone for change tracking."""
        db.execute(f'DELETE FROM "{entity.table}" WHERE id=?', (record_id,))
        db.execute(
            "INSERT INTO tombstones (entity_set, id, version) VALUES (?, ?, ?)",
            (entity.table, record_id, version),
        )

    def insert_many(self, db: sqlite3.Connection, entity: EntitySet, rows: list[tuple[Any, ...]]) -> None:
        """Bulk insert ``(id, bkey, version, modified, body_json)`` tuples (benchmark data)."""
        db.executemany(f'INSERT INTO "{entity.table}" (id, bkey, version, modified, body) VALUES (?, ?, ?, ?, ?)', rows)

    # -- queries ----------------------------------------------------------------------------

    def column(self, entity: EntitySet, name: str) -> Column | None:
        """How property ``name`` reads in SQL (see :class:`sandbox.odata.Column`)."""
        from sandbox.odata import Column, format_datetime

        if "/" in name:
            return self._navigation_key(entity, name)
        ftype = entity.field_type(name)
        if ftype is None:
            return None
        if name == entity.key:
            return Column("id", "guid", nullable=False)
        if name == entity.business_key:
            return Column("bkey", ftype, nullable=entity.api == DATAVERSE)
        if name == entity.modified_field:
            return Column("modified", "datetime", nullable=False)
        if entity.api == DATAVERSE and name == "versionnumber":
            return Column("version", "int", nullable=False)
        sql = f"json_extract(body, '$.{name}')"
        if ftype == "datetime" and entity.api == DATAVERSE:
            # Dataverse renders date-times to the second ("...:SSZ"); widen to the canonical form.
            sql = f"(substr({sql}, 1, 19) || '.000000Z')"
        return Column(sql, ftype, nullable=True, to_sql=format_datetime)

    def _navigation_key(self, entity: EntitySet, path: str) -> Column | None:
        """``<navigation property>/<target key>`` of a Dataverse lookup: the lookup's value when it points at
        that navigation property's table, else null (``parentcustomerid_account/accountid ne null`` keeps the
        contacts whose parent customer is an account). Any other path is unknown (``None``)."""
        from sandbox.odata import Column
        from sandbox.schema import DATAVERSE_SETS

        nav, prop = path.split("/")
        for lookup in entity.lookups.values() if entity.api == DATAVERSE else ():
            target = DATAVERSE_SETS.get(lookup.targets.get(nav, ""))
            if target is not None and prop == target.key:
                logical = target.type_name.replace("'", "")
                value = f"json_extract(body, '$.{lookup.value_field}')"
                kind = f"json_extract(body, '$.__lookup_types.{lookup.attribute}')"
                return Column(f"(CASE WHEN {kind} = '{logical}' THEN {value} END)", "guid", nullable=True)
        return None

    def page(
        self,
        entity: EntitySet,
        where: str,
        params: list[Any],
        order: list[OrderTerm],
        after: list[Any] | None,
        limit: int,
        offset: int = 0,
    ) -> list[Row]:
        """One page of records matching ``where``, ordered by ``order`` then insertion order.

        :param after: the keyset position (the previous page's last ``order_values`` plus its ``seq``);
            ``None`` for the first page.
        :param limit: maximum rows returned.
        :param offset: rows to skip first (``$skip`` on the first page only).
        """
        columns = []
        for term in order:
            column = self.column(entity, term.prop)
            assert column is not None  # parse_orderby validated the names
            columns.append((column, term.descending))
        clauses = [f"({where})"] if where else []
        args: list[Any] = list(params)
        if after is not None:
            keyset, keyset_args = _keyset_after(columns, after)
            clauses.append(keyset)
            args.extend(keyset_args)
        order_sql = ", ".join(f"{c.sql}{_nocase(c)} {'DESC' if desc else 'ASC'}" for c, desc in columns)
        order_sql = f"{order_sql}, seq" if order_sql else "seq"
        extra = "".join(f", {c.sql}" for c, _ in columns)
        sql = (
            f'SELECT seq, id, bkey, version, modified, body{extra} FROM "{entity.table}"'
            f" {'WHERE ' + ' AND '.join(clauses) if clauses else ''} ORDER BY {order_sql} LIMIT ? OFFSET ?"
        )
        args.extend([limit, offset])
        return [self._row(r) for r in self.read().execute(sql, args)]

    def count(self, entity: EntitySet, where: str, params: list[Any]) -> int:
        sql = f'SELECT COUNT(*) FROM "{entity.table}"' + (f" WHERE {where}" if where else "")
        return int(self.read().execute(sql, params).fetchone()[0])

    def delta(self, entity: EntitySet, since: int, upto: int, after: int, limit: int) -> list[DeltaItem]:
        """Changes with ``since < version <= upto`` and ``version > after``, in version order.

        Rows changed after ``upto`` are left for the next delta link, so nothing is lost while a
        delta answer is being paged.
        """
        low = max(since, after)
        sql = (
            f'SELECT version, id, seq, bkey, modified, body FROM "{entity.table}"'
            " WHERE version > ? AND version <= ?"
            " UNION ALL SELECT version, id, NULL, NULL, NULL, NULL FROM tombstones"
            " WHERE entity_set = ? AND version > ? AND version <= ?"
            " ORDER BY 1 LIMIT ?"
        )
        items = []
        for version, rid, seq, bkey, modified, body in self.read().execute(
            sql, (low, upto, entity.table, low, upto, limit)
        ):
            row = None if seq is None else Row(seq, rid, bkey, version, modified, json.loads(body))
            items.append(DeltaItem(version, rid, row))
        return items


def _nocase(column: Column) -> str:
    return " COLLATE NOCASE" if column.type in ("string", "code", "enum") else ""


def _keyset_after(columns: list[tuple[Column, bool]], after: list[Any]) -> tuple[str, list[Any]]:
    """The predicate "row sorts after ``after``" for ORDER BY ``columns``, seq (SQLite puts NULL first)."""
    values, seq = after[:-1], after[-1]
    if len(values) != len(columns):
        raise ValueError("keyset does not match the ordering")
    alternatives: list[str] = []
    args: list[Any] = []
    equal_prefix: list[str] = []
    equal_args: list[Any] = []
    for (column, desc), value in zip(columns, values, strict=True):
        nocase = _nocase(column)
        if value is None:
            beyond, beyond_args = ("0", []) if desc else (f"{column.sql} IS NOT NULL", [])
        elif desc:
            beyond, beyond_args = f"({column.sql} < ?{nocase} OR {column.sql} IS NULL)", [value]
        else:
            beyond, beyond_args = f"{column.sql} > ?{nocase}", [value]
        alternatives.append("(" + " AND ".join([*equal_prefix, beyond]) + ")")
        args.extend([*equal_args, *beyond_args])
        equal_prefix.append(f"{column.sql} IS ?{nocase}")
        equal_args.append(value)
    alternatives.append("(" + " AND ".join([*equal_prefix, "seq > ?"]) + ")")
    args.extend([*equal_args, seq])
    return "(" + " OR ".join(alternatives) + ")", args
