"""What the Microsoft cloud APIs share: OAuth2 client-credentials tokens (msal), retries, errors, paging, OData.

:class:`MicrosoftApiHook` is the base of :class:`~dynamics_jobqueue.hooks.business_central.BusinessCentralHook`,
:class:`~dynamics_jobqueue.hooks.dataverse.DataverseHook` and :class:`~dynamics_jobqueue.hooks.graph.GraphHook`:
the one client layer of the package. It owns

- the connection's settings, parsed once (:class:`ConnectionSettings`);
- one ``requests`` session per thread (requests does not document sessions as thread-safe) and one msal token
  cache per connection, shared by every hook instance of that connection in the process;
- the retry policy: 429, and 503 with ``Retry-After``, are retried for any method (the service refused before
  doing any work); dropped connections and other 5xx only for idempotent calls; a per-call timeout;
- the one paginator (:meth:`MicrosoftApiHook.iter_collection`) that follows ``@odata.nextLink`` and reports
  ``@odata.count`` and ``@odata.deltaLink``, and :meth:`MicrosoftApiHook.iter_pages`, the record lists of an
  entity set read by each API's ``query``;
- OData literal and filter building (:func:`odata_literal`, :func:`in_filter`, :func:`and_filters`);
- error bodies turned into typed :mod:`~dynamics_jobqueue.hooks.errors`, and bodies that are not the JSON the
  contract promises turned into :class:`~dynamics_jobqueue.hooks.errors.MalformedResponseError`.

Connection fields (one Airflow connection per tenant/organisation):

- ``host``: the API root, e.g. ``https://api.businesscentral.dynamics.com`` or ``https://contoso.crm.dynamics.com``;
- ``login`` / ``password``: the app registration's client id and client secret;
- ``extra.tenant_id``: the Azure AD tenant; ``extra.authority_host`` (default ``https://login.microsoftonline.com``);
- ``extra.scope``: default ``<host>/.default``; ``extra.ca_bundle``: a CA file to verify TLS against (the sandbox);
- ``extra.max_retries`` (default 8), ``extra.backoff_max`` (seconds, default 60), ``extra.timeout`` (seconds, 300).

Credentials never reach the logs: only methods, entity sets and status codes are logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

import msal
import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dynamics_jobqueue.hooks.errors import (
    ApiError,
    AuthenticationError,
    MalformedResponseError,
    TransientError,
    error_for_status,
)

log = logging.getLogger(__name__)

PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class MicrosoftRetry(Retry):
    """urllib3 ``Retry`` that also accepts fractional ``Retry-After`` seconds (Graph sends them) and retries
    any method on 429, and on 503 *with* ``Retry-After``: the service protection answers of Dataverse
    ("Service protection API limits") and Graph ("Microsoft Graph throttling guidance"), sent before any work
    was done. A 503 without ``Retry-After`` may come after the work was done, so a POST is not sent again."""

    def parse_retry_after(self, retry_after: str) -> float:
        if re.match(r"^\s*\d+\.\d+\s*$", retry_after):
            return min(max(float(retry_after), 0.0), self.retry_after_max)
        return super().parse_retry_after(retry_after)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        refused_before_work = status_code == 429 or (status_code == 503 and has_retry_after)
        if refused_before_work and self.total:
            return True
        return super().is_retry(method, status_code, has_retry_after)


def build_retry(max_retries: int, backoff_max: float, *, all_methods: bool = False) -> Retry:
    """The retry policy of every call: ``max_retries`` attempts after the first, honouring ``Retry-After``.

    :param max_retries: retries after the first attempt (connection errors, 429, 5xx).
    :param backoff_max: cap of one wait, in seconds; waits grow 0.5, 1, 2, 4 ... s plus up to 0.5 s jitter.
    :param all_methods: retry dropped connections and 5xx for every method; only for calls the caller knows
        to be idempotent (upserts keyed by id or alternate key).
    """
    return MicrosoftRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        other=0,
        backoff_factor=0.25,
        backoff_max=backoff_max,
        backoff_jitter=0.5,
        status_forcelist=frozenset({429, 500, 502, 503, 504}),
        allowed_methods=None if all_methods else _IDEMPOTENT_METHODS,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )


@dataclass(frozen=True)
class ConnectionSettings:
    """The fields of one API connection, parsed once (module docstring lists them).

    :param api_root: the API root URL, always ending with ``/``.
    :param client_id: ``login``. :param client_secret: ``password``. :param tenant_id: ``extra.tenant_id``.
    :param authority_host: ``extra.authority_host`` without trailing ``/``.
    :param scope: ``extra.scope`` or ``<host>/.default``.
    :param ca_bundle: ``extra.ca_bundle`` or ``None``.
    :param max_retries: ``extra.max_retries`` (retries after the first attempt).
    :param backoff_max: ``extra.backoff_max`` in seconds. :param timeout: ``extra.timeout`` in seconds.
    :param extra: every extra field as given (API-specific ones: ``environment``, ``company_id``, ``endpoints``).
    :raises ValueError: when a numeric field is not a number.
    """

    api_root: str
    client_id: str | None
    client_secret: str | None
    tenant_id: str | None
    authority_host: str
    scope: str
    ca_bundle: str | None
    max_retries: int
    backoff_max: float
    timeout: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_connection(cls, conn: Any) -> ConnectionSettings:
        """Parse an Airflow connection (``host``, ``login``, ``password``, ``extra``)."""
        extra = dict(conn.extra_dejson or {})
        host = conn.host or ""
        if not host.startswith(("https://", "http://")):
            host = f"https://{host}"
        api_root = host.rstrip("/") + "/"
        return cls(
            api_root=api_root,
            client_id=conn.login or None,
            client_secret=conn.password or None,
            tenant_id=extra.get("tenant_id") or None,
            authority_host=(extra.get("authority_host") or PUBLIC_AUTHORITY_HOST).rstrip("/"),
            scope=extra.get("scope") or f"{api_root.rstrip('/')}/.default",
            ca_bundle=extra.get("ca_bundle") or None,
            max_retries=int(extra.get("max_retries", 8)),
            backoff_max=float(extra.get("backoff_max", 60.0)),
            timeout=float(extra.get("timeout", 300.0)),
            extra=extra,
        )


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, hook: MicrosoftApiHook) -> None:
        self._hook = hook

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._hook.access_token()}"
        return request


# One msal application (and so one token cache) per connection and process: every hook instance of a connection
# (a Graph hook per sent email, a hook per writer thread) reuses the token until shortly before it expires.
# Token requests of one connection are serialised, so threads starting together share the first token.
_MSAL_APPS: dict[tuple[str, ...], tuple[msal.ConfidentialClientApplication, threading.Lock]] = {}
_MSAL_LOCK = threading.Lock()


def _new_session(settings: ConnectionSettings, *, all_methods: bool) -> requests.Session:
    session = requests.Session()
    if settings.ca_bundle:
        # requests lets REQUESTS_CA_BUNDLE override Session.verify unless trust_env is off.
        session.trust_env = False
        session.verify = settings.ca_bundle
    retry = build_retry(settings.max_retries, settings.backoff_max, all_methods=all_methods)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass
class Page:
    """One page of a collection read.

    :param records: the page's records, as the API returns them.
    :param count: ``@odata.count`` (first page of a read with ``$count=true``), else ``None``.
    :param delta_link: ``@odata.deltaLink`` (last page of a change-tracking read), else ``None``.
    """

    records: list[dict[str, Any]]
    count: int | None = None
    delta_link: str | None = None


class MicrosoftApiHook(BaseHook):
    """Base hook for an OData API of the Microsoft cloud, authenticated with client credentials.

    :param default_conn_id: the Airflow connection (fields in the module docstring), as subclasses pass it.
    :param conn_id: the same by keyword, as Airflow passes it; wins over ``default_conn_id``.
    """

    conn_name_attr: ClassVar[str] = "conn_id"
    default_conn_name: ClassVar[str] = ""
    #: Max page size the API allows (``Prefer: odata.maxpagesize``).
    max_page_size: ClassVar[int] = 5_000

    def __init__(self, default_conn_id: str | None = None, /, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Airflow builds a hook from a connection as ``hook_class(conn_id=<id>)`` (``conn_name_attr``: the UI's
        # "Test" button, ``Connection.get_hook``); that keyword wins over the id a subclass passes positionally.
        self.conn_id = conn_id or default_conn_id or self.default_conn_name
        self._local = threading.local()

    # -- connection --------------------------------------------------------------------------------------
    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's fields, parsed once. :raises AuthenticationError: when a numeric field is not one."""
        try:
            return ConnectionSettings.from_connection(self.get_connection(self.conn_id))
        except ValueError as exc:
            raise AuthenticationError(f"connection {self.conn_id!r} has an invalid field: {exc}") from exc

    async def aload_connection(self) -> None:
        """Read the connection asynchronously, for use in a trigger: the triggerer's event loop must not block on
        a synchronous connection lookup. Later calls (run in a thread) use it."""
        conn = await self.aget_connection(self.conn_id)
        try:
            self.settings = ConnectionSettings.from_connection(conn)
        except ValueError as exc:
            raise AuthenticationError(f"connection {self.conn_id!r} has an invalid field: {exc}") from exc

    @property
    def extra(self) -> Mapping[str, Any]:
        """The connection's extra fields (read-only)."""
        return self.settings.extra

    @property
    def api_root(self) -> str:
        """The API root URL, always ending with ``/``."""
        return self.settings.api_root

    @property
    def scope(self) -> str:
        """The OAuth2 scope: ``extra.scope`` or ``<host>/.default``."""
        return self.settings.scope

    def _thread_session(self, *, all_methods: bool) -> requests.Session:
        name = "idempotent_session" if all_methods else "session"
        session: requests.Session | None = getattr(self._local, name, None)
        if session is None:
            session = _new_session(self.settings, all_methods=all_methods)
            session.auth = _BearerAuth(self)
            setattr(self._local, name, session)
        return session

    @property
    def session(self) -> requests.Session:
        """This thread's session for ordinary calls: dropped connections and 5xx retried for idempotent methods."""
        return self._thread_session(all_methods=False)

    @property
    def idempotent_session(self) -> requests.Session:
        """This thread's session whose POSTs are retried too, for calls the caller made idempotent (keyed upserts)."""
        return self._thread_session(all_methods=True)

    # -- tokens --------------------------------------------------------------------------------------------
    @cached_property
    def _msal_app(self) -> tuple[msal.ConfidentialClientApplication, threading.Lock]:
        settings = self.settings
        if not settings.tenant_id or not settings.client_id or not settings.client_secret:
            raise AuthenticationError(
                f"connection {self.conn_id!r} needs login (client id), password (client secret) and extra.tenant_id"
            )
        authority = f"{settings.authority_host}/{settings.tenant_id}"
        secret_digest = hashlib.sha256(settings.client_secret.encode()).hexdigest()
        key = (authority, settings.client_id, secret_digest, settings.ca_bundle or "")
        with _MSAL_LOCK:
            entry = _MSAL_APPS.get(key)
            if entry is None:
                public = settings.authority_host == PUBLIC_AUTHORITY_HOST
                app = msal.ConfidentialClientApplication(
                    settings.client_id,
                    client_credential=settings.client_secret,
                    authority=authority,
                    # Only the public cloud's authority is known to msal; others (sovereign clouds, the sandbox)
                    # are taken as configured.
                    validate_authority=public,
                    instance_discovery=public,
                    http_client=_new_session(settings, all_methods=False),
                )
                entry = _MSAL_APPS[key] = (app, threading.Lock())
        return entry

    def access_token(self) -> str:
        """Return a bearer token for :attr:`scope` (cached per connection until shortly before it expires).

        :raises AuthenticationError: when the identity platform refuses the client credentials.
        """
        app, lock = self._msal_app
        try:
            with lock:
                result = app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        except ValueError as exc:  # msal's discovery of the authority failed
            raise AuthenticationError(f"authority of connection {self.conn_id!r} is not usable: {exc}") from exc
        token = result.get("access_token")
        if not token:
            raise AuthenticationError(
                f"{result.get('error', 'token refused')}: {result.get('error_description', '')}".strip(),
                code=result.get("error"),
            )
        return str(token)

    # -- the Connections form's "Test" button ---------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Prove the connection works with the cheapest read each API allows, as Airflow's "Test" button asks.

        The token proves tenant, client id and secret. Business Central then resolves the company (proving
        environment and company), Dataverse answers ``WhoAmI`` (proving the application user exists in the
        organisation); for Microsoft Graph the token is the test, because mail permissions allow no
        tenant-wide read.

        :return: ``(True, what was proven)`` or ``(False, the error message with its cause)``; never raises for an
            API error, so the UI shows the message.
        """
        try:
            self.access_token()
            return True, self.probe()
        except ApiError as exc:
            return False, f"{type(exc).__name__}: {exc}"

    def probe(self) -> str:
        """The cheapest call that proves this API answers; subclasses read something. :return: what it proved."""
        return f"token granted for {self.scope}"

    # -- requests ------------------------------------------------------------------------------------------
    def default_headers(self) -> dict[str, str]:
        """Headers sent with every call (overridden per API)."""
        return {"Accept": "application/json"}

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (relative to the API root), or ``path`` itself when already absolute."""
        return path if path.startswith(("https://", "http://")) else urljoin(self.api_root, path)

    def request(
        self,
        method: str,
        path: str,
        *,
        entity_set: str | None = None,
        record_id: str | None = None,
        idempotent: bool = False,
        expected: tuple[int, ...] = (200, 201, 204),
        timeout: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one call with retries and turn an error answer into a typed exception.

        :param method: HTTP method.
        :param path: path relative to the API root, or an absolute URL (a nextLink).
        :param entity_set: named in errors. :param record_id: named in errors.
        :param idempotent: the caller guarantees a repeat is harmless; POSTs are then retried on 5xx too.
        :param expected: statuses that count as success.
        :param timeout: seconds for this call (connect and each read); capped by the connection's
            ``extra.timeout``.
        :return: the response.
        :raises ApiError: a typed subclass for any other status, or when the connection fails after retries.
        """
        headers = {**self.default_headers(), **kwargs.pop("headers", {})}
        limit = self.settings.timeout if timeout is None else min(timeout, self.settings.timeout)
        session = self.idempotent_session if idempotent else self.session
        started = time.monotonic()
        try:
            response = session.request(method, self.url(path), headers=headers, timeout=limit, **kwargs)
        except requests.RequestException as exc:
            raise TransientError(
                f"{method} failed after retries: {type(exc).__name__}", entity_set=entity_set, record_id=record_id
            ) from exc
        log.debug(
            "%s %s -> %s in %.0f ms",
            method,
            entity_set or "",
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        if response.status_code not in expected:
            raise error_for_status(
                response.status_code, json_or_text(response), entity_set=entity_set, record_id=record_id
            )
        return response

    def request_json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`request` whose answer must be a JSON object.

        :raises MalformedResponseError: when the body is not a JSON object (naming entity set and record).
        """
        response = self.request(method, path, **kwargs)
        return json_object(response, entity_set=kwargs.get("entity_set"), record_id=kwargs.get("record_id"))

    def iter_collection(
        self,
        path: str,
        *,
        entity_set: str,
        params: Mapping[str, str] | None = None,
        page_size: int | None = None,
        prefer: Sequence[str] = (),
    ) -> Iterator[Page]:
        """The one paginator: yield the pages of a collection, following ``@odata.nextLink`` unchanged.

        The nextLink carries the whole query (Dataverse: "Don't change the ``@odata.nextLink`` URL value or
        append any query options to it"), so ``params`` go with the first request only; the same ``Prefer``
        header goes with every request. Works for delta reads too: a stored delta link is a ``path``.

        :param path: path relative to the API root, or an absolute URL (a nextLink or delta link).
        :param entity_set: named in errors.
        :param page_size: asked with ``Prefer: odata.maxpagesize`` (capped at :attr:`max_page_size`).
        :param prefer: other ``Prefer`` preferences (``odata.track-changes``, ``odata.include-annotations=...``).
        :return: an iterator of :class:`Page`.
        :raises ApiError: typed, on an error answer after retries, or a body without a ``value`` list.
        """
        preferences = list(prefer)
        if page_size:
            preferences.append(f"odata.maxpagesize={min(page_size, self.max_page_size)}")
        headers = {"Prefer": ",".join(preferences)} if preferences else {}
        url: str | None = path
        query: Mapping[str, str] | None = params
        while url:
            body = self.request_json("GET", url, entity_set=entity_set, headers=headers, params=query)
            records = body.get("value")
            if not isinstance(records, list):
                raise MalformedResponseError("collection answer without a 'value' list", entity_set=entity_set)
            next_link = body.get("@odata.nextLink")
            count = body.get("@odata.count")
            yield Page(
                records=records,
                count=int(count) if isinstance(count, int | str) and str(count).isdigit() else None,
                delta_link=None if next_link else body.get("@odata.deltaLink"),
            )
            url = next_link
            query = None  # the nextLink carries the whole query

    def query(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: list[str] | None = None,
        orderby: str | None = None,
        page_size: int = 5_000,
    ) -> Iterator[Page]:
        """Read ``entity_set`` page by page with :meth:`iter_collection`; each API that has entity sets
        (Business Central, Dataverse) says where they live and what its records need.

        :param filter: OData ``$filter``; :param select: fields to return (``$select``).
        :param page_size: records per page (``Prefer: odata.maxpagesize``, capped at :attr:`max_page_size`).
        :raises NotImplementedError: on an API without entity sets (Microsoft Graph here).
        """
        raise NotImplementedError(f"{type(self).__name__} reads no OData entity sets")

    def iter_pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: list[str] | None = None,
        orderby: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """The records of :meth:`query`, one list per page.

        :param page_size: records per page; ``None`` asks for the API's :attr:`max_page_size` (Business Central
            20,000, Dataverse 5,000).
        :return: an iterator of record lists (each record a dict as :meth:`query` yields it).
        :raises ApiError: typed, as :meth:`query` raises it.
        """
        size = self.max_page_size if page_size is None else page_size
        for page in self.query(entity_set, filter=filter, select=select, orderby=orderby, page_size=size):
            yield page.records


def json_or_text(response: requests.Response) -> Any:
    """The decoded JSON body, or the text when it is not JSON (error bodies of proxies, gateways)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def json_object(response: requests.Response, *, entity_set: str | None = None, record_id: str | None = None) -> dict:
    """The response's body as a JSON object.

    :raises MalformedResponseError: when the body is not a JSON object.
    """
    try:
        body = response.json()
    except ValueError as exc:
        raise MalformedResponseError(
            f"HTTP {response.status_code} answer is not JSON: {response.text[:200]!r}",
            status=response.status_code,
            entity_set=entity_set,
            record_id=record_id,
        ) from exc
    if not isinstance(body, dict):
        raise MalformedResponseError(
            f"HTTP {response.status_code} answer is not a JSON object",
            status=response.status_code,
            entity_set=entity_set,
            record_id=record_id,
        )
    return body


# -- OData query building (OData 4.0 ABNF, "Part 2: URL Conventions") -------------------------------------------
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ENCODED_CHAR = re.compile(r"_x([0-9A-Fa-f]{4})_")


def odata_literal(value: Any) -> str:
    """An OData literal: GUIDs and numbers bare, ``true``/``false``, ``null``, datetimes as UTC ``...Z``,
    strings quoted with doubled single quotes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = str(value)
    if _GUID.match(text):
        return text.lower()
    return "'" + text.replace("'", "''") + "'"


def and_filters(*parts: str | None) -> str | None:
    """Join filter expressions with ``and``, each in parentheses; ``None`` when there are none."""
    present = [p for p in parts if p]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return " and ".join(f"({p})" for p in present)


def eq_filter(field_name: str, value: Any) -> str:
    """``field eq <literal>``."""
    return compare_filter(field_name, "eq", value)


def compare_filter(field_name: str, operator: str, value: Any) -> str:
    """``field <operator> <literal>`` for OData's comparison operators (``eq ne gt ge lt le``)."""
    if operator not in ("eq", "ne", "gt", "ge", "lt", "le"):
        raise ValueError(f"not an OData comparison operator: {operator!r}")
    return f"{field_name} {operator} {odata_literal(value)}"


def in_filter(field_name: str, values: Sequence[Any]) -> str:
    """``field eq v1 or field eq v2 ...`` (OData 4.0 without ``in``, which older servers lack)."""
    return " or ".join(eq_filter(field_name, v) for v in values)


#: Characters an alternate key literal keeps unencoded in a URL path segment (RFC 3986 ``pchar``: unreserved,
#: sub-delims, ``:`` and ``@``), so ``emailaddress1='a@b.com'`` reads as Microsoft's examples write it.
QUOTE_SAFE = "-._~!$&'()*+,;=:@"


def key_segment(key: str | Mapping[str, Any]) -> str:
    """The key part of a record URL: ``<guid>`` or an alternate key ``accountnumber='10000'``.

    An alternate key's value is percent-encoded (``name='NAV%20PCS'``): a ``$batch`` part carries the URL in its
    request line, where a space would end the URL, and ``#``, ``?`` or ``/`` would change what it names.
    """
    if isinstance(key, str):
        return key
    return ",".join(f"{name}={quote(odata_literal(value), safe=QUOTE_SAFE)}" for name, value in key.items())


def record_path(entity_set: str, key: str | Mapping[str, Any]) -> str:
    """``<entity_set>(<key>)``, relative to the API root (or company)."""
    return f"{entity_set}({key_segment(key)})"


def odata_params(
    *,
    filter: str | None = None,
    select: Sequence[str] | None = None,
    orderby: str | None = None,
    top: int | None = None,
    count: bool = False,
) -> dict[str, str]:
    """Build OData system query options, leaving out the ones not given."""
    params: dict[str, str] = {}
    if filter:
        params["$filter"] = filter
    if select:
        params["$select"] = ",".join(select)
    if orderby:
        params["$orderby"] = orderby
    if top is not None:
        params["$top"] = str(top)
    if count:
        params["$count"] = "true"
    return params


def decode_name(value: str) -> str:
    """Decode the ``_xHHHH_`` escapes of an enum value as Business Central's API writes it (XML name
    encoding: ``Not_x0020_Started`` -> ``Not Started``, ``_x0020_`` -> ``" "``, the blank option)."""
    return _ENCODED_CHAR.sub(lambda m: chr(int(m.group(1), 16)), value)


__all__ = [
    "ApiError",
    "ConnectionSettings",
    "MicrosoftApiHook",
    "MicrosoftRetry",
    "Page",
    "and_filters",
    "build_retry",
    "decode_name",
    "eq_filter",
    "in_filter",
    "key_segment",
    "odata_literal",
    "odata_params",
    "record_path",
]
