"""What the Microsoft cloud APIs share: OAuth2 client-credentials tokens (msal), retries, errors, paging.

:class:`MicrosoftApiHook` is the base of :class:`~dynamics_jobqueue.hooks.business_central.BusinessCentralHook`
and :class:`~dynamics_jobqueue.hooks.dataverse.DataverseHook`. It owns the ``requests`` session and the wire
rules of api-contracts.md: a bearer token from the Microsoft identity platform (or the sandbox's emulation of
it), 429/503 answered by waiting ``Retry-After`` (else capped exponential backoff with jitter), server-driven
paging that follows ``@odata.nextLink``, and error bodies turned into typed :mod:`~dynamics_jobqueue.hooks.errors`.

Connection fields (one Airflow connection per tenant/organisation):

- ``host``: the API root, e.g. ``https://api.businesscentral.dynamics.com`` or ``https://contoso.crm.dynamics.com``;
- ``login`` / ``password``: the app registration's client id and client secret;
- ``extra.tenant_id``: the Azure AD tenant; ``extra.authority_host`` (default ``https://login.microsoftonline.com``);
- ``extra.scope``: default ``<host>/.default``; ``extra.ca_bundle``: a CA file to verify TLS against (the sandbox);
- ``extra.max_retries`` (default 8), ``extra.backoff_max`` (seconds, default 60), ``extra.timeout`` (seconds, 300).

Credentials never reach the logs: only methods, entity sets and status codes are logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import urljoin

import msal
import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dynamics_jobqueue.hooks.errors import ApiError, AuthenticationError, TransientError, error_for_status

log = logging.getLogger(__name__)

PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"

# 429 and 503 with Retry-After mean the service refused the request before doing any work
# (service protection limits), so even a non-idempotent POST is safe to send again.
_REFUSED_BEFORE_WORK = frozenset({429, 503})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class MicrosoftRetry(Retry):
    """urllib3 ``Retry`` that also accepts fractional ``Retry-After`` seconds (Graph sends them) and retries
    any method on 429/503, which the Microsoft APIs answer before doing any work."""

    def parse_retry_after(self, retry_after: str) -> float:
        if re.match(r"^\s*\d+\.\d+\s*$", retry_after):
            return min(max(float(retry_after), 0.0), self.retry_after_max)
        return super().parse_retry_after(retry_after)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code in _REFUSED_BEFORE_WORK and self.total:
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


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, hook: MicrosoftApiHook) -> None:
        self._hook = hook

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._hook.access_token()}"
        return request


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

    # -- connection --------------------------------------------------------------------------------------
    @cached_property
    def _conn(self) -> Any:
        return self.get_connection(self.conn_id)

    @cached_property
    def extra(self) -> dict[str, Any]:
        """The connection's extra fields as a dict."""
        return dict(self._conn.extra_dejson)

    @cached_property
    def api_root(self) -> str:
        """The API root URL, always ending with ``/``."""
        host = self._conn.host or ""
        if not host.startswith(("https://", "http://")):
            host = f"https://{host}"
        return host.rstrip("/") + "/"

    @cached_property
    def scope(self) -> str:
        """The OAuth2 scope: ``extra.scope`` or ``<host>/.default``."""
        return self.extra.get("scope") or f"{self.api_root.rstrip('/')}/.default"

    def _new_session(self, *, all_methods: bool) -> requests.Session:
        session = requests.Session()
        ca_bundle = self.extra.get("ca_bundle")
        if ca_bundle:
            # requests lets REQUESTS_CA_BUNDLE override Session.verify unless trust_env is off.
            session.trust_env = False
            session.verify = ca_bundle
        retry = build_retry(
            int(self.extra.get("max_retries", 8)),
            float(self.extra.get("backoff_max", 60.0)),
            all_methods=all_methods,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @cached_property
    def session(self) -> requests.Session:
        """Session for ordinary calls: dropped connections and 5xx are retried for idempotent methods only."""
        session = self._new_session(all_methods=False)
        session.auth = _BearerAuth(self)
        return session

    @cached_property
    def idempotent_session(self) -> requests.Session:
        """Session whose POSTs are retried too, for calls the caller made idempotent (keyed upserts)."""
        session = self._new_session(all_methods=True)
        session.auth = _BearerAuth(self)
        return session

    # -- tokens --------------------------------------------------------------------------------------------
    @cached_property
    def _msal_app(self) -> msal.ConfidentialClientApplication:
        tenant = self.extra.get("tenant_id")
        if not tenant or not self._conn.login or not self._conn.password:
            raise AuthenticationError(
                f"connection {self.conn_id!r} needs login (client id), password (client secret) and extra.tenant_id"
            )
        authority_host = (self.extra.get("authority_host") or PUBLIC_AUTHORITY_HOST).rstrip("/")
        public = authority_host == PUBLIC_AUTHORITY_HOST
        return msal.ConfidentialClientApplication(
            self._conn.login,
            client_credential=self._conn.password,
            authority=f"{authority_host}/{tenant}",
            # Only the public cloud's authority is known to msal; others (sovereign clouds, the sandbox) are
            # taken as configured.
            validate_authority=public,
            instance_discovery=public,
            http_client=self._new_session(all_methods=False),
        )

    def access_token(self) -> str:
        """Return a bearer token for :attr:`scope` (cached by msal until shortly before it expires).

        :raises AuthenticationError: when the identity platform refuses the client credentials.
        """
        try:
            result = self._msal_app.acquire_token_for_client(scopes=[self.scope])
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
        **kwargs: Any,
    ) -> requests.Response:
        """Send one call with retries and turn an error answer into a typed exception.

        :param method: HTTP method.
        :param path: path relative to the API root, or an absolute URL (a nextLink).
        :param entity_set: named in errors. :param record_id: named in errors.
        :param idempotent: the caller guarantees a repeat is harmless; POSTs are then retried on 5xx too.
        :param expected: statuses that count as success.
        :return: the response.
        :raises ApiError: a typed subclass for any other status, or when the connection fails after retries.
        """
        headers = {**self.default_headers(), **kwargs.pop("headers", {})}
        timeout = float(self.extra.get("timeout", 300))
        session = self.idempotent_session if idempotent else self.session
        started = time.monotonic()
        try:
            response = session.request(method, self.url(path), headers=headers, timeout=timeout, **kwargs)
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
                response.status_code, _json_or_text(response), entity_set=entity_set, record_id=record_id
            )
        return response

    def iter_collection(
        self, path: str, *, params: dict[str, str] | None, page_size: int, entity_set: str
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the pages of a collection, following ``@odata.nextLink`` (server-driven paging).

        :param page_size: asked with ``Prefer: odata.maxpagesize`` (capped at :attr:`max_page_size`).
        :return: an iterator of pages, each a list of records (dicts as the API returns them).
        """
        headers = {"Prefer": f"odata.maxpagesize={min(page_size, self.max_page_size)}"}
        url: str | None = path
        query: dict[str, str] | None = params
        while url:
            body = self.request("GET", url, entity_set=entity_set, headers=headers, params=query).json()
            yield list(body.get("value", []))
            url = body.get("@odata.nextLink")
            query = None  # the nextLink carries the whole query


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def odata_params(
    *, filter: str | None = None, select: list[str] | None = None, orderby: str | None = None, top: int | None = None
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
    return params


__all__ = ["ApiError", "MicrosoftApiHook", "MicrosoftRetry", "build_retry", "odata_params"]
