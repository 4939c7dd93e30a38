"""Hook to Microsoft Graph for Exchange Online mailboxes (EWS is gone for Exchange Online since October 2026).

Follows docs/reference/api-contracts.md "Microsoft Graph": ``/users/{id}/mailFolders/{folder}/messages/delta`` followed
through ``@odata.nextLink`` until ``@odata.deltaLink`` (stored as returned), removed items as ``{"id", "@removed"}``,
``410 Gone``/``syncStateNotFound`` meaning "start a full resync"; ``POST /users/{id}/sendMail``; 429 with
(possibly fractional) ``Retry-After`` handled by the shared retry policy of
:class:`~dynamics_jobqueue.hooks.microsoft.MicrosoftApiHook`.

Connection (conn type ``dynamics_graph``, one per email server profile): ``host`` ``https://graph.microsoft.com``,
``login``/``password`` the app registration (application permissions Mail.ReadWrite, Mail.Send),
``extra.tenant_id``; ``extra.scope`` defaults to ``<host>/.default``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from dynamics_jobqueue.hooks.errors import ApiError, MalformedResponseError
from dynamics_jobqueue.hooks.microsoft import MicrosoftApiHook

log = logging.getLogger(__name__)

#: Item kinds of the appointments/contacts/tasks workload: Graph contacts, calendar events, To Do tasks.
ITEM_KINDS = ("contacts", "events", "tasks")
#: Days before and after today that the calendar delta covers.
CALENDAR_WINDOW_DAYS = (30, 365)


class DeltaExpiredError(ApiError):
    """The stored delta link is no longer known to Graph (410 / ``syncStateNotFound``): resync fully."""


@dataclass
class MessageDeltaPage:
    """One page of a delta: ``messages`` (the changed items, each with an ``id``: messages, contacts, events
    or To Do tasks), ``removed_ids``, ``without_id`` (items Graph answered without an ``id``, which nothing
    can be done with; Microsoft's shortened examples show such items) and, on the last page, the
    ``delta_link`` to store."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    removed_ids: list[str] = field(default_factory=list)
    without_id: list[dict[str, Any]] = field(default_factory=list)
    delta_link: str | None = None


class GraphHook(MicrosoftApiHook):
    """Mail of Exchange Online mailboxes over Microsoft Graph v1.0.

    :param graph_conn_id: the Airflow connection id (default ``graph_default``).
    """

    default_conn_name = "graph_default"
    conn_type = "dynamics_graph"
    hook_name = "Microsoft Graph (Exchange Online)"
    max_page_size: ClassVar[int] = 100

    def __init__(self, graph_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(graph_conn_id or self.default_conn_name, **kwargs)
        self._todo_lists: dict[str, str] = {}

    @staticmethod
    def _user(user: str) -> str:
        return quote(user, safe="@")

    def iter_message_delta(
        self, user: str, folder: str = "inbox", *, delta_link: str | None = None, page_size: int = 50
    ) -> Iterator[MessageDeltaPage]:
        """Read a mail folder's changes: everything without ``delta_link``, else what changed since.

        :param user: the mailbox's user id or address. :param folder: well-known name or folder id.
        :raises DeltaExpiredError: when Graph no longer knows ``delta_link`` (the caller resyncs fully).
        :raises ApiError: typed, on other error answers after retries.
        """
        path = f"v1.0/users/{self._user(user)}/mailFolders/{quote(folder)}/messages/delta"
        yield from self._iter_delta(delta_link or path, "messages", page_size)

    def iter_item_delta(
        self, user: str, kind: str, *, delta_link: str | None = None, page_size: int = 50
    ) -> Iterator[MessageDeltaPage]:
        """Read the changes of a user's contacts, calendar or To Do tasks (``kind``: :data:`ITEM_KINDS`).

        Same rules as :meth:`iter_message_delta`; the calendar is read through ``calendarView/delta`` over
        :data:`CALENDAR_WINDOW_DAYS` around today, tasks from the user's default To Do list.

        :raises DeltaExpiredError: when Graph no longer knows ``delta_link``.
        """
        if delta_link is None:
            if kind == "events":
                now = datetime.now(UTC)
                start, end = (
                    (now - timedelta(days=CALENDAR_WINDOW_DAYS[0])),
                    now + timedelta(days=CALENDAR_WINDOW_DAYS[1]),
                )
                delta_link = (
                    f"v1.0/users/{self._user(user)}/calendarView/delta?startDateTime={start:%Y-%m-%dT%H:%M:%SZ}"
                    f"&endDateTime={end:%Y-%m-%dT%H:%M:%SZ}"
                )
            else:
                delta_link = f"{self._collection(user, kind)}/delta"
        yield from self._iter_delta(delta_link, kind, page_size)

    def save_item(self, user: str, kind: str, body: dict[str, Any], *, item_id: str | None = None) -> dict[str, Any]:
        """Create (POST) or update (PATCH ``item_id``) a contact, event or To Do task.

        :return: the item as Graph answers it (with ``id`` and its new ``changeKey`` or ``@odata.etag``).
        :raises NotFoundError: when ``item_id`` no longer exists.
        :raises MalformedResponseError: when the answer names no ``id``.
        """
        collection = self._collection(user, kind)
        if item_id is None:
            saved = self.request_json("POST", collection, entity_set=kind, json=body, expected=(201,))
        else:
            item_path = (
                f"v1.0/users/{self._user(user)}/contacts/{quote(item_id)}"
                if kind == "contacts"
                else f"{collection}/{quote(item_id)}"
            )
            saved = self.request_json("PATCH", item_path, entity_set=kind, record_id=item_id, json=body)
        if not saved.get("id"):
            raise MalformedResponseError("the saved item came back without an id", entity_set=kind, record_id=item_id)
        return saved

    def _collection(self, user: str, kind: str) -> str:
        if kind == "contacts":
            return f"v1.0/users/{self._user(user)}/contactFolders/contacts/contacts"
        if kind == "events":
            return f"v1.0/users/{self._user(user)}/events"
        if kind == "tasks":
            return f"v1.0/users/{self._user(user)}/todo/lists/{quote(self._default_todo_list(user))}/tasks"
        raise ValueError(f"not a Graph item kind: {kind!r} (one of {ITEM_KINDS})")

    def _default_todo_list(self, user: str) -> str:
        if user not in self._todo_lists:
            rows = [
                row
                for page in self.iter_collection(
                    f"v1.0/users/{self._user(user)}/todo/lists", entity_set="todoTaskLists"
                )
                for row in page.records
            ]
            default = next((r for r in rows if r.get("wellknownListName") == "defaultList"), rows[0] if rows else None)
            if default is None or not default.get("id"):
                raise ApiError(f"user {user} has no To Do list", entity_set="todoTaskLists")
            self._todo_lists[user] = str(default["id"])
        return self._todo_lists[user]

    def _iter_delta(self, url: str, entity_set: str, page_size: int) -> Iterator[MessageDeltaPage]:
        pages = self.iter_collection(url, entity_set=entity_set, page_size=page_size)
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except ApiError as exc:
                if exc.status == 410 or exc.code == "syncStateNotFound":
                    raise DeltaExpiredError(
                        exc.message, status=exc.status, code=exc.code, entity_set=entity_set
                    ) from exc
                raise
            delta = MessageDeltaPage(delta_link=page.delta_link)
            for row in page.records:
                if not isinstance(row, dict) or not row.get("id"):
                    delta.without_id.append(row if isinstance(row, dict) else {"value": row})
                elif "@removed" in row:
                    delta.removed_ids.append(str(row["id"]))
                else:
                    delta.messages.append(row)
            if delta.without_id:
                log.warning(
                    "%d %s item(s) of the delta came without an id and are skipped", len(delta.without_id), entity_set
                )
            yield delta

    def get_mime(self, user: str, message_id: str) -> bytes:
        """The MIME source of a message (``GET /users/{id}/messages/{id}/$value``)."""
        response = self.request(
            "GET",
            f"v1.0/users/{self._user(user)}/messages/{quote(message_id)}/$value",
            entity_set="messages",
            record_id=message_id,
            headers={"Accept": "message/rfc822, */*"},
        )
        return response.content

    def send_mail(self, user: str, message: dict[str, Any], *, save_to_sent_items: bool = True) -> None:
        """Send a message as ``user`` (``POST /users/{id}/sendMail``, 202 Accepted).

        :param message: a Graph message resource (``subject``, ``body``, ``toRecipients`` ...).
        :raises ApiError: typed, when Graph refuses (e.g. 400 ErrorInvalidRecipients).
        """
        self.request(
            "POST",
            f"v1.0/users/{self._user(user)}/sendMail",
            entity_set="sendMail",
            json={"message": message, "saveToSentItems": save_to_sent_items},
            expected=(202,),
        )
