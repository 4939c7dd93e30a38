"""Microsoft Graph mail subset (Exchange Online) for the mailbox tests and demo.

Routes under ``/graph/v1.0/`` (microsoftgraph/microsoft-graph-docs-contrib: "message: delta", "user: sendMail",
"Get MIME content of a message"), bearer token with the Graph audience (``<base>/graph/.default``):

- ``GET users/{user}/mailFolders/{folder}/messages/delta``: pages of message resources (``Prefer:
  odata.maxpagesize``, default 10) with ``@odata.nextLink`` and, on the last page, ``@odata.deltaLink``
  (``$deltatoken``). Following a delta link returns what changed since, removed messages as
  ``{"id": ..., "@removed": {"reason": "deleted"}}``. A token older than the folder's sync state answers
  ``410 Gone`` with code ``syncStateNotFound``: the client must start a full resync.
- ``GET users/{user}/messages/{id}/$value``: the MIME source.
- ``POST users/{user}/sendMail``: ``{"message": {...}, "saveToSentItems": bool}`` -> 202.
- ``GET users/{user}/contactFolders/{folder}/contacts/delta`` (same delta rules, items carry ``changeKey``),
  ``POST users/{user}/contactFolders/{folder}/contacts`` -> 201, ``PATCH users/{user}/contacts/{id}``;
- ``GET users/{user}/calendarView/delta?startDateTime=..&endDateTime=..``, ``POST users/{user}/events``,
  ``PATCH users/{user}/events/{id}`` (one calendar; the window is required but not applied);
- ``GET users/{user}/todo/lists`` (the two lists of the "List lists" example, ``defaultList`` second),
  ``GET .../todo/lists/{list}/tasks/delta``,
  ``POST .../todo/lists/{list}/tasks``, ``PATCH .../todo/lists/{list}/tasks/{id}``.

Admin (loopback only, unauthenticated): ``POST /_sandbox/graph/users/{user}/messages`` with
``{"mime": "<base64>", "folder": "inbox"}`` delivers a message; ``DELETE .../messages/{id}`` removes one;
``"mime_error": {"status": 400, "code": "ErrorMimeContentConversionFailed", "message": "..."}`` makes that
message's ``$value`` answer with that error (a message Exchange lists but cannot convert to MIME);
``POST /_sandbox/graph/users/{user}/expire`` invalidates every outstanding delta token of the user;
``GET /_sandbox/graph/users/{user}/sent`` lists what sendMail accepted.

Sandbox simplification: Graph data lives in memory (a restart or ``/_sandbox/graph/reset`` empties it);
users are any id or address, created on first use.
"""

from __future__ import annotations

import base64
import itertools
import threading
import uuid
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from sandbox.auth import TokenService

PREFIX = "/graph/v1.0"


@dataclass
class _Item:
    id: str
    folder: str
    seq: int
    resource: dict[str, Any]
    mime: bytes
    removed: bool = False
    #: (status, code, message) that ``$value`` answers instead of the MIME source
    mime_error: tuple[int, str, str] | None = None


@dataclass
class _Mailbox:
    items: dict[str, _Item] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    floor: int = 0  # delta tokens below this are no longer known (syncStateNotFound)


class GraphStore:
    """In-memory Graph mailboxes; a change sequence drives delta tokens."""

    def __init__(self) -> None:
        self._users: dict[str, _Mailbox] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def user(self, user: str) -> _Mailbox:
        return self._users.setdefault(user.lower(), _Mailbox())

    def reset(self) -> None:
        with self._lock:
            self._users.clear()

    def deliver(
        self, user: str, mime: bytes, folder: str = "inbox", mime_error: tuple[int, str, str] | None = None
    ) -> _Item:
        msg = BytesParser(policy=policy.default).parsebytes(mime)

        def people(name: str) -> list[dict[str, Any]]:
            return [
                {"emailAddress": {"name": n, "address": a}}
                for n, a in getaddresses([str(v) for v in msg.get_all(name, [])])
                if a
            ]

        try:
            received = parsedate_to_datetime(str(msg["date"])).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (TypeError, ValueError):
            received = None
        sender = people("from")
        with self._lock:
            item_id = "AAMk" + uuid.uuid4().hex
            item = _Item(
                id=item_id,
                folder=folder.lower(),
                seq=next(self._seq),
                resource={
                    "id": item_id,
                    "subject": str(msg["subject"] or ""),
                    "internetMessageId": str(msg["message-id"] or ""),
                    "receivedDateTime": received,
                    "from": sender[0] if sender else None,
                    "toRecipients": people("to"),
                    "ccRecipients": people("cc"),
                    "isRead": False,
                },
                mime=mime,
                mime_error=mime_error,
            )
            self.user(user).items[item_id] = item
        return item

    def put_item(
        self, user: str, kind: str, folder: str, body: dict[str, Any], item_id: str | None = None
    ) -> _Item | None:
        """Create (``item_id`` None) or update a contact, event or To Do task (``kind``); every write gets a
        new ``@odata.etag`` and, except To Do tasks, a new ``changeKey``."""
        with self._lock:
            box = self.user(user)
            if item_id is not None:
                item = box.items.get(item_id)
                if item is None or item.removed or not item.folder.startswith(f"{kind}:"):
                    return None
                item.resource.update({k: v for k, v in body.items() if k not in ("id", "changeKey", "@odata.etag")})
            else:
                item_id = "AAMk" + kind[0].upper() + uuid.uuid4().hex
                item = _Item(item_id, f"{kind}:{folder.lower()}", 0, {**body, "id": item_id}, b"")
                box.items[item_id] = item
            item.seq = next(self._seq)
            item.resource["@odata.etag"] = f'W/"CK{item.seq}"'
            if kind != "tasks":  # a todoTask has no changeKey, only its @odata.etag (Graph's todoTask examples)
                item.resource["changeKey"] = f"CK{item.seq}"
            return item

    def remove(self, user: str, item_id: str) -> bool:
        with self._lock:
            item = self.user(user).items.get(item_id)
            if item is None or item.removed:
                return False
            item.removed, item.seq = True, next(self._seq)
            return True

    def expire(self, user: str) -> None:
        with self._lock:
            self.user(user).floor = next(self._seq)

    def changes(self, user: str, folder: str, since: int | None) -> tuple[list[dict[str, Any]], int]:
        """Resources changed after ``since`` (all current ones when ``None``) and the new token."""
        with self._lock:
            box = self.user(user)
            if since is not None and since < box.floor:
                raise LookupError("syncStateNotFound")
            items = sorted((i for i in box.items.values() if i.folder == folder.lower()), key=lambda i: i.seq)
            token = max([since or 0, box.floor, *(i.seq for i in box.items.values())])
            out = []
            for item in items:
                if since is None and not item.removed:
                    out.append(dict(item.resource))
                elif since is not None and item.seq > since:
                    out.append(
                        {"id": item.id, "@removed": {"reason": "deleted"}} if item.removed else dict(item.resource)
                    )
            return out, token


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def install(app: FastAPI, tokens: TokenService) -> GraphStore:
    """Add the Graph routes and their admin endpoints to ``app``."""
    store = GraphStore()

    def caller_ok(request: Request) -> JSONResponse | None:
        try:
            tokens.verify(request.headers.get("authorization"), "graph")
        except Exception as exc:  # the sandbox's AuthError: Graph answers 401 InvalidAuthenticationToken
            return _error(401, "InvalidAuthenticationToken", str(exc))
        return None

    @app.get(PREFIX + "/users/{user}/mailFolders/{folder}/messages/delta")
    async def delta(user: str, folder: str, request: Request) -> Response:
        if (denied := caller_ok(request)) is not None:
            return denied
        params = request.query_params
        skip = params.get("$skiptoken")
        since_text = params.get("$deltatoken")
        page_size = 10
        for part in request.headers.get("prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name == "odata.maxpagesize" and value.isdigit():
                page_size = max(1, min(int(value), 1000))
        if skip:
            since_part, _, offset_text = skip.partition("~")
            since = int(since_part) if since_part != "full" else None
            offset = int(offset_text)
        else:
            since = int(since_text) if since_text else None
            offset = 0
        try:
            rows, token = store.changes(user, folder, since)
        except LookupError:
            return _error(410, "syncStateNotFound", "The sync state generation is not found; resync.")
        base = str(request.url).split("?", 1)[0]
        page = rows[offset : offset + page_size]
        body: dict[str, Any] = {"@odata.context": f"{PREFIX}/$metadata#Collection(message)", "value": page}
        if offset + page_size < len(rows):
            marker = "full" if since is None else str(since)
            body["@odata.nextLink"] = f"{base}?$skiptoken={marker}~{offset + page_size}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return JSONResponse(body)

    async def save(user: str, kind: str, folder: str, item_id: str | None, request: Request) -> Response:
        if (denied := caller_ok(request)) is not None:
            return denied
        item = store.put_item(user, kind, folder, await request.json(), item_id)
        if item is None:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return JSONResponse(item.resource, status_code=201 if item_id is None else 200)

    @app.get(PREFIX + "/users/{user}/contactFolders/{folder}/contacts/delta")
    async def contacts_delta(user: str, folder: str, request: Request) -> Response:
        return await delta(user, f"contacts:{folder}", request)

    @app.post(PREFIX + "/users/{user}/contactFolders/{folder}/contacts")
    async def create_contact(user: str, folder: str, request: Request) -> Response:
        return await save(user, "contacts", folder, None, request)

    @app.patch(PREFIX + "/users/{user}/contacts/{item_id}")
    async def update_contact(user: str, item_id: str, request: Request) -> Response:
        return await save(user, "contacts", "", item_id, request)

    # calendarView/delta returns the events of the window; the sandbox keeps one calendar per user and ignores
    # the window's bounds (it only requires them, as Graph does)
    @app.get(PREFIX + "/users/{user}/calendarView/delta")
    async def events_delta(user: str, request: Request) -> Response:
        # the window's parameter names are case-insensitive: the documented request writes startdatetime
        params = {name.lower(): value for name, value in request.query_params.items()}
        first_read = "$skiptoken" not in params and "$deltatoken" not in params
        if first_read and not (params.get("startdatetime") and params.get("enddatetime")):
            return _error(400, "ErrorInvalidParameter", "startDateTime and endDateTime are required.")
        return await delta(user, "events:calendar", request)

    @app.post(PREFIX + "/users/{user}/events")
    async def create_event(user: str, request: Request) -> Response:
        return await save(user, "events", "calendar", None, request)

    @app.patch(PREFIX + "/users/{user}/events/{item_id}")
    async def update_event(user: str, item_id: str, request: Request) -> Response:
        return await save(user, "events", "", item_id, request)

    @app.get(PREFIX + "/users/{user}/todo/lists")
    async def todo_lists(user: str, request: Request) -> Response:
        if (denied := caller_ok(request)) is not None:
            return denied
        # the two lists of Microsoft's "List lists" example, the default one not first: clients must pick it
        # by wellknownListName, as the order is not documented
        lists = [
            {"id": "AAMkADIyAAAEFTTrJAAA=", "displayName": "Monthly Tasks", "wellknownListName": "none"},
            {"id": "AAMkADIyAAAAABrJAAA=", "displayName": "Tasks", "wellknownListName": "defaultList"},
        ]
        value = [
            {"@odata.type": "#microsoft.graph.todoTaskList", "isOwner": True, "isShared": False, **one} for one in lists
        ]
        return JSONResponse({"@odata.context": f"{PREFIX}/$metadata#users('{user}')/todo/lists", "value": value})

    @app.get(PREFIX + "/users/{user}/todo/lists/{list_id}/tasks/delta")
    async def tasks_delta(user: str, list_id: str, request: Request) -> Response:
        return await delta(user, f"tasks:{list_id}", request)

    @app.post(PREFIX + "/users/{user}/todo/lists/{list_id}/tasks")
    async def create_task(user: str, list_id: str, request: Request) -> Response:
        return await save(user, "tasks", list_id, None, request)

    @app.patch(PREFIX + "/users/{user}/todo/lists/{list_id}/tasks/{item_id}")
    async def update_task(user: str, list_id: str, item_id: str, request: Request) -> Response:
        return await save(user, "tasks", list_id, item_id, request)

    @app.get(PREFIX + "/users/{user}/messages/{item_id}/$value")
    async def mime(user: str, item_id: str, request: Request) -> Response:
        if (denied := caller_ok(request)) is not None:
            return denied
        item = store.user(user).items.get(item_id)
        if item is None or item.removed:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if item.mime_error is not None:
            return _error(*item.mime_error)
        # Graph answers the MIME source as text/plain ("Get message", MIME content example)
        return Response(item.mime, headers={"Content-Type": "text/plain"})

    @app.post(PREFIX + "/users/{user}/sendMail")
    async def send_mail(user: str, request: Request) -> Response:
        if (denied := caller_ok(request)) is not None:
            return denied
        try:
            payload = await request.json()
            message = payload["message"]
            recipients = message.get("toRecipients") or []
            if not recipients or not all(r["emailAddress"]["address"] for r in recipients):
                raise ValueError("At least one recipient is not valid.")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "ErrorInvalidRecipients", str(exc) or "The message is not valid.")
        with store._lock:
            store.user(user).sent.append(payload)
        return Response(status_code=202)

    def loopback(request: Request) -> bool:
        return bool(request.client and request.client.host in ("127.0.0.1", "::1", "localhost"))

    @app.post("/_sandbox/graph/users/{user}/messages")
    async def admin_deliver(user: str, request: Request) -> JSONResponse:
        if not loopback(request):
            return _error(403, "Forbidden", "loopback only")
        data = await request.json()
        fault = data.get("mime_error")
        mime_error = (int(fault["status"]), str(fault["code"]), str(fault.get("message", ""))) if fault else None
        item = store.deliver(user, base64.b64decode(data["mime"]), data.get("folder", "inbox"), mime_error)
        return JSONResponse({"id": item.id})

    @app.delete("/_sandbox/graph/users/{user}/messages/{item_id}")
    async def admin_remove(user: str, item_id: str, request: Request) -> Response:
        if not loopback(request):
            return _error(403, "Forbidden", "loopback only")
        return Response(status_code=204 if store.remove(user, item_id) else 404)

    @app.post("/_sandbox/graph/users/{user}/expire")
    async def admin_expire(user: str, request: Request) -> Response:
        if not loopback(request):
            return _error(403, "Forbidden", "loopback only")
        store.expire(user)
        return Response(status_code=204)

    @app.get("/_sandbox/graph/users/{user}/sent")
    async def admin_sent(user: str, request: Request) -> JSONResponse:
        if not loopback(request):
            return _error(403, "Forbidden", "loopback only")
        return JSONResponse({"value": store.user(user).sent})

    @app.post("/_sandbox/graph/reset")
    async def admin_reset(request: Request) -> Response:
        if not loopback(request):
            return _error(403, "Forbidden", "loopback only")
        store.reset()
        return Response(status_code=204)

    return store
