"""Mailbox records and email server profiles in the state store (docs/reference/dynamics-semantics.md section 3).

A mailbox belongs to at most one CRM user and a CRM user has at most one mailbox: the database enforces both
(unique indexes on ``dynamics.mailbox``). Mapping a mailbox to a user who already has one, or a mailbox that
is already mapped, is refused with :class:`MailboxAlreadyMappedError` unless ``confirm=True``; a confirmed
remap breaks the previous mapping(s) and writes each change to ``dynamics.mailbox_mapping_log`` (the reference
asks for the same confirmation before it breaks a mapping). The console does not apply a confirmed remap that
breaks a mapping: it records a :class:`RemapRequest` (:func:`request_remap`), approved or rejected as an Airflow
required action (:mod:`dynamics_jobqueue.operators.mailbox_remap`, :func:`decide_remap`).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.mailbox import queries as q
from dynamics_jobqueue.mailbox.store import StateLike, transaction

if TYPE_CHECKING:
    import psycopg


class IncomingFilter(enum.StrEnum):
    """The mailbox's incoming email filter option (the reference's five choices)."""

    ALL = "all"
    REPLIES_TO_TRACKED = "replies_to_tracked"
    FROM_CRM_RECORDS = "from_crm_records"
    FROM_EMAIL_ENABLED_RECORDS = "from_email_enabled_records"
    NONE = "none"


class Workload(enum.StrEnum):
    """What a mailbox synchronizes; each has its own status and next sync time."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"
    ACT = "act"  # appointments, contacts and tasks (Exchange profiles only)


class MailboxAlreadyMappedError(Exception):
    """The mailbox or the CRM user is already mapped; repeat with ``confirm=True`` to break that mapping."""


@dataclass(frozen=True)
class ServerProfile:
    """An email server profile: ``server_type`` (``imap``, ``pop3`` or ``exchange_online``) and the Airflow
    connection ``conn_id`` that reaches it."""

    name: str
    server_type: str
    conn_id: str


@dataclass(frozen=True)
class Mailbox:
    """One mailbox record, with its server profile.

    ``process_after`` is UTC; ``base_interval_s``/``max_interval_s`` are seconds.
    """

    mailbox_id: int
    name: str
    email_address: str
    crm_user_id: str | None
    profile: ServerProfile
    credentials_conn_id: str | None
    incoming_method: str
    outgoing_method: str
    act_method: str
    incoming_filter: IncomingFilter
    folders: tuple[str, ...]
    process_after: datetime | None
    pop3_delete: bool
    base_interval_s: int
    max_interval_s: int
    email_approval: str = "approved"
    recovery_rule: str = "auto"

    @property
    def approved(self) -> bool:
        """Approve Email: incoming and outgoing email run only for an approved address."""
        return self.email_approval == "approved"

    def workloads(self) -> list[Workload]:
        """The workloads this mailbox runs: POP3/IMAP profiles are email only, as in the reference."""
        found = []
        if self.incoming_method == "server_side_sync":
            found.append(Workload.INCOMING)
        if self.outgoing_method == "server_side_sync":
            found.append(Workload.OUTGOING)
        if self.act_method == "server_side_sync" and self.profile.server_type == "exchange_online":
            found.append(Workload.ACT)
        return found


def _mailbox(row: tuple[Any, ...]) -> Mailbox:
    return Mailbox(
        mailbox_id=row[0],
        name=row[1],
        email_address=row[2],
        crm_user_id=row[3],
        profile=ServerProfile(row[4], row[5], row[6]),
        credentials_conn_id=row[7],
        incoming_method=row[8],
        outgoing_method=row[9],
        act_method=row[10],
        incoming_filter=IncomingFilter(row[11]),
        folders=tuple(row[12]),
        process_after=row[13],
        pop3_delete=row[14],
        base_interval_s=row[15],
        max_interval_s=row[16],
        email_approval=row[17],
        recovery_rule=row[18],
    )


def save_profile(state: StateLike, name: str, server_type: str, conn_id: str) -> ServerProfile:
    """Create or change an email server profile.

    :param server_type: ``imap``, ``pop3`` or ``exchange_online``.
    :param conn_id: Airflow connection with host, ports and the default login (see :mod:`..hooks.mail`).
    """
    with transaction(state) as cur:
        cur.execute(
            q.SAVE_PROFILE,
            (name, server_type, conn_id),
        )
    return ServerProfile(name, server_type, conn_id)


def create_mailbox(
    state: StateLike,
    *,
    name: str,
    email_address: str,
    server_profile: str,
    credentials_conn_id: str | None = None,
    incoming_filter: IncomingFilter = IncomingFilter.REPLIES_TO_TRACKED,
    incoming_method: str = "server_side_sync",
    outgoing_method: str = "server_side_sync",
    act_method: str = "none",
    folders: tuple[str, ...] = ("INBOX",),
    process_after: datetime | None = None,
    base_interval_s: int = 900,
    max_interval_s: int = 21_600,
) -> Mailbox:
    """Create a mailbox record (not yet mapped to a CRM user; see :func:`map_user`).

    Its workloads start as Not Run and are due at once.

    :raises psycopg.errors.UniqueViolation: when a mailbox with this address exists (case-insensitive).
    """
    with transaction(state) as cur:
        cur.execute(
            q.CREATE_MAILBOX,
            (
                name,
                email_address,
                server_profile,
                credentials_conn_id,
                str(incoming_filter),
                incoming_method,
                outgoing_method,
                act_method,
                list(folders),
                process_after,
                base_interval_s,
                max_interval_s,
            ),
        )
        row = cur.fetchone()
        assert row is not None
        mailbox_id = int(row[0])
        cur.executemany(
            q.ADD_WORKLOAD,
            [(mailbox_id, str(w)) for w in Workload],
        )
    return get_mailbox(state, mailbox_id)


def get_mailbox(state: StateLike, mailbox_id: int) -> Mailbox:
    """Load one mailbox. :raises KeyError: when there is no such mailbox."""
    with transaction(state) as cur:
        cur.execute(q.MAILBOX_BY_ID, (mailbox_id,))
        row = cur.fetchone()
    if row is None:
        raise KeyError(f"no mailbox {mailbox_id}")
    return _mailbox(row)


def find_mailbox(state: StateLike, email_address: str) -> Mailbox | None:
    """The mailbox of an email address (case-insensitive), or ``None``."""
    with transaction(state) as cur:
        cur.execute(q.MAILBOX_BY_ADDRESS, (email_address,))
        row = cur.fetchone()
    return _mailbox(row) if row else None


def update_mailbox(state: StateLike, mailbox_id: int, **fields: Any) -> Mailbox:
    """Change settings of a mailbox (e.g. ``incoming_filter``, ``credentials_conn_id``, ``folders``)."""
    allowed = {
        "name", "credentials_conn_id", "incoming_method", "outgoing_method", "act_method", "incoming_filter",
        "folders", "process_after", "pop3_delete", "base_interval_s", "max_interval_s", "email_approval",
        "recovery_rule",
    }  # fmt: skip
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not mailbox settings: {sorted(unknown)}")
    with transaction(state) as cur:
        for column, value in fields.items():
            value = list(value) if column == "folders" else value
            value = str(value) if isinstance(value, enum.Enum) else value
            # column names come from the allow-list above, never from the caller's text
            cur.execute(q.SET_MAILBOX_FIELD.format(column=column), (value, mailbox_id))
    return get_mailbox(state, mailbox_id)


def add_sync_filter(
    state: StateLike, entity: str, name: str, odata_filter: str, *, mailbox_id: int | None = None
) -> int:
    """Add an enabled synchronization filter (``entity``: appointments, contacts or tasks).

    :param odata_filter: a Dataverse ``$filter`` expression, e.g. ``address1_city eq 'Reading'``.
    :param mailbox_id: the mailbox it belongs to; ``None`` for an organisation filter (every mailbox).
    :return: the filter's id.
    """
    with transaction(state) as cur:
        cur.execute(
            q.ADD_SYNC_FILTER,
            (mailbox_id, entity, name, odata_filter),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def map_user(
    state: StateLike,
    mailbox_id: int,
    crm_user_id: str | uuid.UUID,
    *,
    confirm: bool = False,
    changed_by: str = "airflow",
) -> list[str]:
    """Map a mailbox to a CRM user (one user <-> one mailbox).

    :param crm_user_id: the user's ``systemuserid``.
    :param confirm: break existing mappings of this mailbox and of this user; without it such a remap is
        refused.
    :param changed_by: who asked, for the mapping log.
    :return: one sentence per mapping that was broken (empty when none).
    :raises MailboxAlreadyMappedError: when a mapping would be broken and ``confirm`` is false.
    """
    user = str(crm_user_id).lower()
    broken: list[str] = []
    with transaction(state) as cur:
        # row locks on both rows so two concurrent remaps cannot interleave
        cur.execute(
            q.LOCK_MAILBOXES_OF_MAPPING,
            (mailbox_id, user),
        )
        rows = cur.fetchall()
        target = next((r for r in rows if r[0] == mailbox_id), None)
        if target is None:
            raise KeyError(f"no mailbox {mailbox_id}")
        if target[2] == user:
            return []
        conflicts = []
        if target[2] is not None:
            conflicts.append(f"mailbox {target[1]} is mapped to CRM user {target[2]}")
        other = next((r for r in rows if r[0] != mailbox_id), None)
        if other is not None:
            conflicts.append(f"CRM user {user} already has mailbox {other[1]}")
        if conflicts and not confirm:
            raise MailboxAlreadyMappedError(
                "; ".join(conflicts) + ". Map again with confirm=True to break the existing mapping."
            )
        if other is not None:
            _set_user(cur, other[0], None, user, "broken", changed_by, f"user remapped to mailbox {target[1]}")
            broken.append(f"mailbox {other[1]} no longer belongs to CRM user {user}")
        if target[2] is not None:
            broken.append(f"mailbox {target[1]} no longer belongs to CRM user {target[2]}")
        action = "remapped" if target[2] is not None else "mapped"
        reason = "; ".join(conflicts) or "new mapping"
        _set_user(cur, mailbox_id, user, target[2], action, changed_by, reason)
    return broken


def _set_user(
    cur: psycopg.Cursor,
    mailbox_id: int,
    new_user: str | None,
    previous_user: str | None,
    action: str,
    changed_by: str,
    reason: str,
) -> None:
    cur.execute(
        q.SET_MAILBOX_USER,
        (new_user, mailbox_id),
    )
    cur.execute(
        q.LOG_MAPPING,
        (mailbox_id, action, previous_user, new_user, changed_by, reason),
    )


# -- remaps waiting for approval ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemapRequest:
    """A remap that breaks a mapping, waiting for (or given) approval as an Airflow required action.

    ``status``: ``pending``, ``approved`` (the remap is applied) or ``rejected`` (dropped); ``reason``: the
    mapping(s) it breaks, in words; ``decided_by``: the required action's responder (Airflow user name).
    """

    request_id: int
    mailbox_id: int
    email_address: str
    crm_user_id: str
    previous_user_id: str | None
    reason: str
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    dag_run_id: str | None


def request_remap(
    state: StateLike, mailbox_id: int, crm_user_id: str | uuid.UUID, *, reason: str, requested_by: str
) -> int:
    """Record a remap that breaks a mapping, to be approved (:func:`decide_remap`); nothing changes yet.

    :param reason: the mapping(s) it breaks (the message of :class:`MailboxAlreadyMappedError`).
    :return: the request's id.
    """
    with transaction(state) as cur:
        cur.execute(
            q.REQUEST_REMAP,
            (mailbox_id, str(crm_user_id).lower(), reason, requested_by),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def set_remap_run(state: StateLike, request_id: int, dag_run_id: str) -> None:
    """Note the DAG run that asks for the approval of ``request_id``."""
    with transaction(state) as cur:
        cur.execute(q.SET_REMAP_RUN, (dag_run_id, request_id))


def get_remap_request(state: StateLike, request_id: int) -> RemapRequest:
    """Load one remap request. :raises KeyError: when there is none."""
    with transaction(state) as cur:
        cur.execute(q.REMAP_REQUEST_BY_ID, (request_id,))
        row = cur.fetchone()
    if row is None:
        raise KeyError(f"no remap request {request_id}")
    return RemapRequest(*row)


def latest_remap_requests(state: StateLike) -> dict[int, RemapRequest]:
    """Each mailbox's latest remap request (pending or decided), by mailbox id."""
    with transaction(state) as cur:
        cur.execute(q.LATEST_REMAP_REQUESTS)
        rows = cur.fetchall()
    return {int(row[1]): RemapRequest(*row) for row in rows}


def decide_remap(state: StateLike, request_id: int, *, approved: bool, decided_by: str) -> list[str]:
    """Apply (``approved``) or drop a pending remap request; the decision is stored with ``decided_by``.

    An approved remap goes through :func:`map_user` with ``confirm=True`` and ``changed_by=decided_by``, so the
    mapping log names the approver. The remap and the request's new status are one transaction, with the
    request's row locked first: a crash or an error in between leaves neither (the request is still pending and
    the mapping unchanged, so deciding again is safe), and two decisions of one request cannot both apply.

    :return: the broken mappings in words (empty when rejected).
    :raises KeyError: when there is no such request (or its mailbox is gone).
    :raises ValueError: when it was already decided.
    """
    broken: list[str] = []
    with transaction(state) as cur:
        cur.execute(q.LOCK_REMAP_REQUEST, (request_id,))
        row = cur.fetchone()
        if row is None:
            raise KeyError(f"no remap request {request_id}")
        request = RemapRequest(*row)
        if request.status != "pending":
            raise ValueError(f"remap request {request_id} was already {request.status} by {request.decided_by}")
        if approved:
            # map_user's transaction nests in this one (a savepoint of the same connection)
            broken = map_user(
                cur.connection, request.mailbox_id, request.crm_user_id, confirm=True, changed_by=decided_by
            )
        cur.execute(
            q.DECIDE_REMAP,
            ("approved" if approved else "rejected", decided_by, request_id),
        )
    return broken
