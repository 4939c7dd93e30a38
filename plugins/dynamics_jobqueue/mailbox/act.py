"""Appointments, contacts and tasks of Exchange Online mailboxes (the "act" workload), both directions.

Reference behaviour (docs/reference/dynamics-semantics.md section 3): only Exchange profiles synchronize these; which
CRM records go to a user's mailbox is decided by synchronization filters, several enabled filters on one entity
are OR-ed, and an entity without an enabled filter does not synchronize at all. Exchange items come into the
CRM when they are linked to a CRM record or when the user tracked them (category :data:`TRACKED_CATEGORY`).

Per entity (:data:`ENTITIES`: Dataverse ``contacts``/``appointments``/``tasks`` <-> Graph contacts, calendar
events, To Do tasks), with ``dynamics.mailbox_sync_filter`` rows holding Dataverse ``$filter`` expressions:

- CRM -> Exchange: records owned by the mailbox's user, modified at or after the mailbox's watermark,
  matching any enabled filter, and last modified by someone other than the integration user (its own writes
  are not echoed back, as in the reference's ping-pong rule) are created or updated in Exchange; a record
  whose ``versionnumber`` was pushed already is skipped (Dataverse keeps ``modifiedon`` in whole seconds, so
  the watermark second is read again);
- Exchange -> CRM: the Graph delta of the folder; a linked item updates its CRM record, a tracked new item
  creates one owned by the user; an item whose ``changeKey`` (a To Do task's ``@odata.etag``) is the one our
  own write produced is an echo and skipped; a removed item only unlinks (the CRM record stays, as in the reference).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.dataverse import bind
from dynamics_jobqueue.hooks.errors import NotFoundError
from dynamics_jobqueue.hooks.graph import DeltaExpiredError, GraphHook
from dynamics_jobqueue.hooks.microsoft import and_filters, compare_filter, eq_filter
from dynamics_jobqueue.mailbox import queries as q
from dynamics_jobqueue.mailbox.store import load_delta_link, save_delta_link

if TYPE_CHECKING:
    import psycopg

    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.mailbox.records import Mailbox

log = logging.getLogger(__name__)

#: The Outlook category of items the user tracked in the CRM.
TRACKED_CATEGORY = "Tracked to Dynamics 365"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _graph_time(value: Any) -> dict[str, str] | None:
    """A Dataverse UTC datetime as Graph's ``dateTimeTimeZone``."""
    return {"dateTime": str(value).removesuffix("Z"), "timeZone": "UTC"} if value else None


def _crm_time(value: Any) -> str | None:
    """Graph's ``dateTimeTimeZone`` (UTC, as this workload writes and asks for it) as a Dataverse datetime."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    return str(value["dateTime"]).split(".")[0].removesuffix("Z") + "Z"


def _body(text: Any) -> dict[str, str]:
    return {"contentType": "text", "content": str(text or "")}


def contact_to_graph(row: dict[str, Any]) -> dict[str, Any]:
    """A Dataverse contact as a Graph contact."""
    return {
        "givenName": row.get("firstname") or "",
        "surname": row.get("lastname") or "",
        "jobTitle": row.get("jobtitle"),
        "mobilePhone": row.get("mobilephone"),
        "businessPhones": [row["telephone1"]] if row.get("telephone1") else [],
        "emailAddresses": [{"address": row["emailaddress1"]}] if row.get("emailaddress1") else [],
    }


def contact_to_crm(item: dict[str, Any]) -> dict[str, Any]:
    """A Graph contact as Dataverse contact columns."""
    emails = item.get("emailAddresses") or []
    phones = item.get("businessPhones") or []
    return {
        "firstname": item.get("givenName") or None,
        "lastname": item.get("surname") or None,
        "jobtitle": item.get("jobTitle") or None,
        "mobilephone": item.get("mobilePhone") or None,
        "telephone1": phones[0] if phones else None,
        "emailaddress1": emails[0].get("address") if emails else None,
    }


def appointment_to_graph(row: dict[str, Any]) -> dict[str, Any]:
    """A Dataverse appointment as a Graph event."""
    return {
        "subject": row.get("subject") or "",
        "body": _body(row.get("description")),
        "start": _graph_time(row.get("scheduledstart")),
        "end": _graph_time(row.get("scheduledend")),
        "location": {"displayName": row.get("location") or ""},
        "isAllDay": bool(row.get("isalldayevent")),
    }


def appointment_to_crm(item: dict[str, Any]) -> dict[str, Any]:
    """A Graph event as Dataverse appointment columns."""
    return {
        "subject": item.get("subject") or "",
        "description": (item.get("body") or {}).get("content"),
        "scheduledstart": _crm_time(item.get("start")),
        "scheduledend": _crm_time(item.get("end")),
        "location": (item.get("location") or {}).get("displayName"),
        "isalldayevent": bool(item.get("isAllDay")),
    }


def task_to_graph(row: dict[str, Any]) -> dict[str, Any]:
    """A Dataverse task as a To Do task (statecode 1 = Completed)."""
    return {
        "title": row.get("subject") or "",
        "body": _body(row.get("description")),
        "dueDateTime": _graph_time(row.get("scheduledend")),
        "status": "completed" if row.get("statecode") == 1 else "notStarted",
    }


def task_to_crm(item: dict[str, Any]) -> dict[str, Any]:
    """A To Do task as Dataverse task columns (completed -> statecode 1 Completed, statuscode 5)."""
    done = item.get("status") == "completed"
    return {
        "subject": item.get("title") or "",
        "description": (item.get("body") or {}).get("content"),
        "scheduledend": _crm_time(item.get("dueDateTime")),
        "statecode": 1 if done else 0,
        "statuscode": 5 if done else 2,
    }


@dataclass(frozen=True)
class EntitySpec:
    """How one CRM entity maps to one kind of Exchange item."""

    entity: str  # Dataverse entity set, also the filter's entity name
    key: str
    columns: tuple[str, ...]
    kind: str  # Graph item kind (GraphHook.ITEM_KINDS)
    to_graph: Callable[[dict[str, Any]], dict[str, Any]]
    to_crm: Callable[[dict[str, Any]], dict[str, Any]]


ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec("appointments", "activityid",
               ("subject", "description", "scheduledstart", "scheduledend", "location", "isalldayevent"),
               "events", appointment_to_graph, appointment_to_crm),
    EntitySpec("contacts", "contactid",
               ("firstname", "lastname", "emailaddress1", "telephone1", "mobilephone", "jobtitle"),
               "contacts", contact_to_graph, contact_to_crm),
    EntitySpec("tasks", "activityid", ("subject", "description", "scheduledend", "statecode"),
               "tasks", task_to_graph, task_to_crm),
)  # fmt: skip


@dataclass
class ActResult:
    """What one run did: items written each way, and a line per entity for the summary."""

    to_exchange: int = 0
    to_crm: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.to_exchange + self.to_crm


def filter_expression(conn: psycopg.Connection, mailbox_id: int, entity: str) -> str | None:
    """The OR of the enabled synchronization filters of ``entity`` for the mailbox (its own and the
    organisation's), or ``None`` when there is none (the entity does not sync)."""
    rows = conn.execute(
        q.SYNC_FILTERS,
        (entity, mailbox_id),
    ).fetchall()
    conn.commit()
    return " or ".join(f"({row[0]})" for row in rows) if rows else None


class ActSync:
    """Runs the appointments/contacts/tasks workload of one Exchange Online mailbox."""

    def __init__(self, conn: psycopg.Connection, mailbox: Mailbox, dataverse: DataverseHook) -> None:
        self.conn = conn
        self.mailbox = mailbox
        self.dataverse = dataverse
        self.graph = GraphHook(mailbox.profile.conn_id)
        self.result = ActResult()
        self._me: str | None = None

    def run(self) -> ActResult:
        """Synchronize every entity that has an enabled filter.

        :raises ApiError: when Graph or Dataverse cannot be used (the whole workload retries later).
        """
        for spec in ENTITIES:
            expression = filter_expression(self.conn, self.mailbox.mailbox_id, spec.entity)
            if expression is None:
                continue
            before = (self.result.to_exchange, self.result.to_crm)
            self._to_exchange(spec, expression)
            self._to_crm(spec)
            self.result.notes.append(
                f"{spec.entity}: {self.result.to_exchange - before[0]} to Exchange, "
                f"{self.result.to_crm - before[1]} to CRM"
            )
        return self.result

    def _link_row(self, spec: EntitySpec, column: str, value: str) -> tuple[Any, ...] | None:
        row = self.conn.execute(
            q.ITEM_LINK_BY.format(column=column),  # column: crm_id or graph_id (fixed)
            (self.mailbox.mailbox_id, spec.entity, value),
        ).fetchone()
        self.conn.commit()
        return tuple(row) if row else None

    def _link(self, spec: EntitySpec, crm_id: str, graph_id: str, changekey: str | None, version: int | None) -> None:
        self.conn.execute(
            q.LINK_ITEM,
            (self.mailbox.mailbox_id, spec.entity, crm_id, graph_id, changekey, version),
        )
        self.conn.commit()

    def _unlink(self, spec: EntitySpec, graph_id: str) -> None:
        self.conn.execute(
            q.UNLINK_ITEM,
            (self.mailbox.mailbox_id, spec.entity, graph_id),
        )
        self.conn.commit()

    # -- CRM -> Exchange ---------------------------------------------------------------------------------------
    def _to_exchange(self, spec: EntitySpec, expression: str) -> None:
        row = self.conn.execute(
            q.CRM_WATERMARK,
            (self.mailbox.mailbox_id, spec.entity),
        ).fetchone()
        self.conn.commit()
        watermark: datetime = row[0] if row else _EPOCH
        self._me = self._me or self.dataverse.who_am_i()
        query = and_filters(
            eq_filter("_ownerid_value", self.mailbox.crm_user_id),
            compare_filter("_modifiedby_value", "ne", self._me),
            compare_filter("modifiedon", "ge", watermark.replace(microsecond=0)),
            expression,
        )
        newest = watermark
        select = [spec.key, *spec.columns, "modifiedon", "versionnumber"]
        for page in self.dataverse.iter_pages(spec.entity, filter=query, select=select, orderby="modifiedon"):
            for record in page:
                self._push(spec, record)
                newest = max(newest, datetime.fromisoformat(str(record["modifiedon"]).replace("Z", "+00:00")))
        if newest > watermark:
            self.conn.execute(
                q.SAVE_CRM_WATERMARK,
                (self.mailbox.mailbox_id, spec.entity, newest),
            )
            self.conn.commit()

    def _push(self, spec: EntitySpec, record: dict[str, Any]) -> None:
        crm_id = str(record[spec.key])
        link = self._link_row(spec, "crm_id", crm_id)
        version = int(record["versionnumber"]) if record.get("versionnumber") is not None else None
        if link and version is not None and link[3] == version:
            return  # pushed already (a record at the watermark second, read again)
        user = self.mailbox.email_address
        try:
            saved = self.graph.save_item(user, spec.kind, spec.to_graph(record), item_id=link[1] if link else None)
        except NotFoundError:  # the user deleted the item in Outlook while the filter still selects it: recreate
            saved = self.graph.save_item(user, spec.kind, spec.to_graph(record))
        self._link(spec, crm_id, str(saved["id"]), _item_version(saved), version)
        self.result.to_exchange += 1

    # -- Exchange -> CRM ---------------------------------------------------------------------------------------
    def _to_crm(self, spec: EntitySpec) -> None:
        resource = f"{spec.kind}:default"
        stored_link = load_delta_link(self.conn, self.mailbox.mailbox_id, resource)
        try:
            delta_link = self._round(spec, stored_link)
        except DeltaExpiredError:
            self.result.notes.append(f"{spec.entity}: Graph delta link expired (syncStateNotFound), read again")
            delta_link = self._round(spec, None)
        if delta_link:
            save_delta_link(self.conn, self.mailbox.mailbox_id, resource, delta_link)

    def _round(self, spec: EntitySpec, delta_link: str | None) -> str | None:
        last = None
        for page in self.graph.iter_item_delta(self.mailbox.email_address, spec.kind, delta_link=delta_link):
            for item in page.messages:
                self._pull(spec, item)
            for removed in page.removed_ids:
                self._unlink(spec, removed)
            last = page.delta_link or last
        return last

    def _pull(self, spec: EntitySpec, item: dict[str, Any]) -> None:
        graph_id = str(item["id"])
        link = self._link_row(spec, "graph_id", graph_id)
        if link and link[2] and link[2] == _item_version(item):
            return  # the echo of our own write
        if link:
            try:
                self.dataverse.upsert(spec.entity, link[0], spec.to_crm(item), mode="update")
            except NotFoundError:  # deleted in the CRM: the link goes too
                self._unlink(spec, graph_id)
                return
            crm_id = link[0]
        elif TRACKED_CATEGORY in (item.get("categories") or []):
            owner = self.mailbox.crm_user_id
            body = {**spec.to_crm(item), **(bind("ownerid", "systemusers", owner) if owner else {})}
            crm_id = self.dataverse.create(spec.entity, body)
        else:
            return  # a personal item the user did not track
        self._link(spec, crm_id, graph_id, _item_version(item), None)
        self.result.to_crm += 1


def _item_version(item: dict[str, Any]) -> str | None:
    """The version Graph gives an item: ``changeKey`` (contacts, events) or ``@odata.etag`` (To Do tasks have
    no ``changeKey``; Microsoft Graph "todoTask resource type" and its create/delta examples)."""
    value = item.get("changeKey") or item.get("@odata.etag")
    return str(value) if value else None
