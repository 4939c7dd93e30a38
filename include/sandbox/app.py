"""The sandbox's HTTP application: login, both APIs and the admin endpoints on one server.

Routes:

- ``/login/{tenant}/...``: OpenID discovery and the token endpoint (:mod:`sandbox.auth`);
- ``/businesscentral/v2.0/{tenant}/{environment}/api/...``: Business Central (:mod:`sandbox.business_central`);
- ``/dataverse/api/data/v9.2/...``: Dataverse (:mod:`sandbox.dataverse`);
- ``/_sandbox/...``: health, reset, faults, statistics and bulk data (loopback callers only).

:class:`FaultInjector` wraps the FastAPI app as plain ASGI so that latency, injected failures and
request counting happen before any handler runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

import sandbox.activities  # noqa: F401  (adds emails, tasks, appointments, activityparties)
from sandbox import documents, graph
from sandbox.api import ApiRequest, ApiResponse
from sandbox.auth import TENANT, TOKEN_LIFETIME_S, AuthError, TokenError, TokenService, openid_configuration
from sandbox.business_central import BusinessCentral
from sandbox.business_central import error_body as bc_error
from sandbox.dataverse import ROOT_PATH as DATAVERSE_ROOT
from sandbox.dataverse import Dataverse
from sandbox.dataverse import error_body as dv_error
from sandbox.dataverse_webhooks import DataverseWebhookConfig
from sandbox.faults import FaultConfig, Faults, Stats
from sandbox.generate import generate_customers
from sandbox.seed import seed
from sandbox.store import Store
from sandbox.webhooks import WebhookConfig

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENVIRONMENT = "production"
API_METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT"]
BC_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
DV_JSON = "application/json; odata.metadata=minimal"
LOOPBACK = ("127.0.0.1", "::1", "localhost")

_BC_PATH = re.compile(r"^/businesscentral/v2\.0/(?P<tenant>[^/]+)/(?P<env>[^/]+)/api/(?P<rest>.*)$")
_BC_ROUTE = re.compile(r"companies(?:\([^)]*\))?/(?P<set>[A-Za-z]+)")
_DV_ROUTE = re.compile(r"^/dataverse/api/data/v9\.2/(?P<set>[$A-Za-z_]+)")


@dataclass
class Sandbox:
    """Everything one server holds: database, both APIs, tokens, faults and statistics."""

    data_dir: Path
    store: Store
    bc: BusinessCentral
    dataverse: Dataverse
    tokens: TokenService
    faults: Faults
    stats: Stats
    startup_faults: FaultConfig

    @classmethod
    def open(cls, data_dir: Path, faults: FaultConfig | None = None) -> Sandbox:
        """Open (and on first use seed) the sandbox in ``data_dir``.

        :param faults: the startup fault configuration (default: from the ``SANDBOX_*`` environment).
            ``SANDBOX_TOKEN_LIFETIME`` (seconds, default 3599) sets the lifetime of access tokens.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(data_dir / "sandbox.sqlite3")
        bc, dataverse = BusinessCentral(store), Dataverse(store)
        if store.is_empty():
            seed(store, bc, dataverse)
        config = faults or FaultConfig.from_env()
        lifetime = int(os.environ.get("SANDBOX_TOKEN_LIFETIME", TOKEN_LIFETIME_S))
        return cls(
            data_dir,
            store,
            bc,
            dataverse,
            TokenService(data_dir / "token-signing.key", lifetime),
            Faults(config),
            Stats(),
            config,
        )

    def reset(self) -> None:
        """Wipe and reseed the data; faults go back to the startup configuration, statistics to zero."""
        self.store.wipe()
        seed(self.store, self.bc, self.dataverse)
        self.bc.webhooks.config = self.bc.webhooks.startup_config
        self.dataverse.webhooks.config = self.dataverse.webhooks.startup_config
        self.dataverse.webhooks.sent = 0
        self.faults.configure(self.startup_faults)
        self.stats.reset()


def route_of(method: str, path: str) -> tuple[str, str] | None:
    """``(api, label)`` of an API request path, e.g. ``("bc", "GET bc/customers")``; ``None`` otherwise."""
    if path.startswith("/businesscentral/"):
        match = _BC_ROUTE.search(path)
        name = match.group("set") if match else ("$batch" if path.endswith("$batch") else "companies")
        return "bc", f"{method} bc/{name}"
    match = _DV_ROUTE.match(path)
    if match:
        return "dataverse", f"{method} dataverse/{match.group('set')}"
    if path.startswith("/dataverse/"):
        return "dataverse", f"{method} dataverse/?"
    return None


class FaultInjector:
    """ASGI wrapper: counts API requests, adds latency and injects 429/5xx/dropped connections.

    Latency is an ``asyncio.sleep`` so that concurrent requests overlap as they would against a
    slow service. Faults *before* are decided before the request reaches its handler; faults *after* let the
    handler run and commit, then replace its answer (see :mod:`sandbox.faults`).
    """

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_of(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        api, label = route
        sandbox = self.sandbox
        sandbox.stats.count(label)
        if sandbox.faults.config.latency_ms:
            await asyncio.sleep(sandbox.faults.config.latency_ms / 1000)
        faulty = sandbox.faults.applies(label)
        decision = sandbox.faults.decide() if faulty else None
        if decision is not None:
            sandbox.stats.fault("before", decision)
        else:
            after = faulty and (sandbox.faults.config.rate_5xx_after or sandbox.faults.config.rate_drop_after)
            if not after:
                await self.app(scope, receive, send)
                return
            answer: list[Message] = []

            async def hold(message: Message) -> None:
                answer.append(message)

            await self.app(scope, receive, hold)
            decision = sandbox.faults.decide_after()
            if decision is None:
                for message in answer:
                    await send(message)
                return
            sandbox.stats.fault("after", decision)
        if decision == "drop":
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is not None:
                # uvicorn must not answer 500 for us: mark the cycle disconnected, then reset the socket.
                cycle.disconnected = True  # type: ignore[union-attr]
                transport.abort()
                return
            raise ConnectionAbortedError("injected connection drop")
        status = int(decision)
        headers = [(b"content-type", (BC_JSON if api == "bc" else DV_JSON).encode())]
        if status == 429:
            headers.append((b"retry-after", sandbox.faults.retry_after().encode()))
            body = (
                bc_error("Application_TooManyRequests", "Too many requests reached. Try again later.")
                if api == "bc"
                else dv_error(
                    "0x80072322",
                    "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                )
            )
        else:
            message = "The service is temporarily unavailable." if status == 503 else "An unexpected error occurred."
            body = (
                bc_error("ServiceUnavailable" if status == 503 else "Internal_ServerError", message)
                if api == "bc"
                else dv_error("0x80040216", message)
            )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _render(response: ApiResponse, api: str) -> Response:
    headers = {"OData-Version": "4.0", **response.headers}
    if response.body is None:
        return Response(status_code=response.status, headers=headers)
    if isinstance(response.body, bytes):
        return Response(content=response.body, status_code=response.status, headers=headers)
    content = json.dumps(response.body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(
        content=content, status_code=response.status, headers=headers, media_type=BC_JSON if api == "bc" else DV_JSON
    )


def _base(request: Request) -> str:
    return f"https://{request.headers.get('host', 'localhost')}"


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query, keep_blank_values=True))


async def _json_object(request: Request) -> dict[str, Any]:
    """The body of a control call (``/_sandbox/...``) as a JSON object; an empty body is ``{}``.

    :raises ValueError: when the body is not JSON (:class:`json.JSONDecodeError`) or not an object.
    """
    data = json.loads(await request.body() or b"{}")
    if not isinstance(data, dict):
        raise ValueError("a JSON object is required")
    return data


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1").split("?", 1)[0] if raw else request.url.path


def create_app(sandbox: Sandbox) -> ASGIApp:
    """The ASGI application of one sandbox (FastAPI app wrapped in :class:`FaultInjector`)."""
    app = FastAPI(title="Dynamics sandbox", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client hung up while sending its body (e.g. its read timeout fired): nobody gets this answer.
        return Response(status_code=499)

    documents.install(app, sandbox.bc)  # sales/purchase documents and their posting actions
    graph.install(app, sandbox.tokens)  # Microsoft Graph mail subset for mailbox sync (sandbox/graph.py)

    # -- login --------------------------------------------------------------------------------

    @app.get("/login/{tenant}/v2.0/.well-known/openid-configuration")
    @app.get("/login/{tenant}/.well-known/openid-configuration")
    async def discovery(tenant: str, request: Request) -> JSONResponse:
        if tenant != TENANT:
            return JSONResponse(
                {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."},
                status_code=400,
            )
        return JSONResponse(openid_configuration(_base(request), tenant))

    @app.get("/login/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> JSONResponse:
        return JSONResponse({"keys": []})

    @app.post("/login/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        basic = None
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            basic = (user, password)
        try:
            answer = sandbox.tokens.issue(form, tenant, _base(request), basic)
        except TokenError as err:
            return JSONResponse(err.body, status_code=err.status)
        return JSONResponse(answer, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    # -- APIs ---------------------------------------------------------------------------------

    def unauthorized(api: str, reason: str, request: Request) -> Response:
        challenge = (
            f'Bearer authorization_uri="{_base(request)}/login/{TENANT}/oauth2/authorize", '
            f'error="invalid_token", error_description="{reason}"'
        )
        if api == "bc":
            body = bc_error(
                "Authentication_InvalidCredentials", f"The server has rejected the client credentials. {reason}"
            )
        else:
            body = dv_error("", f"Authorization failed: {reason}")
        return _render(ApiResponse(401, body, {"WWW-Authenticate": challenge}), api)

    def headers_of(request: Request) -> dict[str, str]:
        return {k.lower(): v for k, v in request.headers.items()}

    @app.api_route("/businesscentral/{rest:path}", methods=API_METHODS)
    async def business_central(request: Request) -> Response:
        match = _BC_PATH.match(_raw_path(request))
        if match is None:
            return _render(ApiResponse(404, bc_error("BadRequest_NotFound", "The request URI is not valid.")), "bc")
        try:
            caller = sandbox.tokens.verify(request.headers.get("authorization"), "bc")
        except AuthError as err:
            return unauthorized("bc", str(err), request)
        tenant, env, rest = match.group("tenant"), match.group("env"), match.group("rest")
        if tenant != TENANT:
            return unauthorized("bc", f"The tenant '{tenant}' is not the token's tenant.", request)
        if env != ENVIRONMENT:
            return _render(
                ApiResponse(404, bc_error("BadRequest_NotFound", f"The environment '{env}' does not exist.")), "bc"
            )
        if rest.startswith("v2.0/") or rest == "v2.0":
            api, path = "v2.0", rest[5:]
        else:
            segments = rest.split("/", 3)
            api, path = "/".join(segments[:3]), (segments[3] if len(segments) > 3 else "")
        api_request = ApiRequest(
            method=request.method,
            path=path,
            query=_query(request),
            headers=headers_of(request),
            body=await request.body(),
            caller=caller,
            root=f"{_base(request)}/businesscentral/v2.0/{tenant}/{env}/api/{api}/",
            prefer_values=request.headers.getlist("prefer"),
        )
        return _render(await run_in_threadpool(sandbox.bc.handle, api_request, api), "bc")

    @app.api_route("/dataverse/{rest:path}", methods=API_METHODS)
    async def dataverse(request: Request) -> Response:
        raw = _raw_path(request)
        if not raw.startswith(DATAVERSE_ROOT):
            return _render(ApiResponse(404, dv_error("0x80048d19", "Resource not found.")), "dataverse")
        try:
            caller = sandbox.tokens.verify(request.headers.get("authorization"), "dataverse")
        except AuthError as err:
            return unauthorized("dataverse", str(err), request)
        api_request = ApiRequest(
            method=request.method,
            path=raw[len(DATAVERSE_ROOT) :],
            query=_query(request),
            headers=headers_of(request),
            body=await request.body(),
            caller=caller,
            root=f"{_base(request)}{DATAVERSE_ROOT}",
            prefer_values=request.headers.getlist("prefer"),
        )
        return _render(await run_in_threadpool(sandbox.dataverse.handle, api_request), "dataverse")

    # -- admin --------------------------------------------------------------------------------

    def loopback_only(request: Request) -> JSONResponse | None:
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "admin endpoints answer loopback callers only"}, status_code=403)
        return None

    @app.get("/_sandbox/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.post("/_sandbox/reset")
    async def reset(request: Request) -> JSONResponse:
        if (refused := loopback_only(request)) is not None:
            return refused
        await run_in_threadpool(sandbox.reset)
        return JSONResponse({"status": "reset"})

    @app.get("/_sandbox/faults")
    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse(sandbox.faults.config.as_json())

    @app.post("/_sandbox/faults")
    async def set_faults(request: Request) -> JSONResponse:
        if (refused := loopback_only(request)) is not None:
            return refused
        try:
            data = await _json_object(request)
            config = FaultConfig.from_json(data)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        sandbox.faults.configure(config)
        return JSONResponse(config.as_json())

    @app.get("/_sandbox/stats")
    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(sandbox.stats.as_json())

    @app.post("/_sandbox/stats/reset")
    async def stats_reset(request: Request) -> JSONResponse:
        if (refused := loopback_only(request)) is not None:
            return refused
        sandbox.stats.reset()
        return JSONResponse(sandbox.stats.as_json())

    @app.get("/_sandbox/webhooks")
    async def get_webhooks(request: Request) -> JSONResponse:
        return JSONResponse({**sandbox.bc.webhooks.config.as_json(), "sent": sandbox.bc.webhooks.sent})

    @app.post("/_sandbox/webhooks")
    async def set_webhooks(request: Request) -> JSONResponse:
        """Business Central's webhook timing (sandbox/webhooks.py ``WebhookConfig``); omitted settings stay."""
        if (refused := loopback_only(request)) is not None:
            return refused
        try:
            data = await _json_object(request)
            sandbox.bc.webhooks.config = WebhookConfig.from_json(data, sandbox.bc.webhooks.config)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(sandbox.bc.webhooks.config.as_json())

    @app.post("/_sandbox/webhooks/expire")
    async def expire_subscription(request: Request) -> JSONResponse:
        """Let a subscription expire now (``{"subscriptionId": ...}``): a subscription the client lost."""
        if (refused := loopback_only(request)) is not None:
            return refused
        data = json.loads(await request.body() or b"{}")
        found = await run_in_threadpool(sandbox.bc.webhooks.expire, str(data.get("subscriptionId", "")))
        return JSONResponse({"expired": found}, status_code=200 if found else 404)

    @app.get("/_sandbox/dataverse-webhooks")
    async def get_dataverse_webhooks(request: Request) -> JSONResponse:
        hooks = sandbox.dataverse.webhooks
        return JSONResponse({**hooks.config.as_json(), **await run_in_threadpool(hooks.counts)})

    @app.post("/_sandbox/dataverse-webhooks")
    async def set_dataverse_webhooks(request: Request) -> JSONResponse:
        """Dataverse's asynchronous service timing and the loopback-port leniency (sandbox/dataverse_webhooks.py
        ``DataverseWebhookConfig``); omitted settings stay."""
        if (refused := loopback_only(request)) is not None:
            return refused
        hooks = sandbox.dataverse.webhooks
        try:
            data = await _json_object(request)
            hooks.config = DataverseWebhookConfig.from_json(data, hooks.config)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(hooks.config.as_json())

    @app.post("/_sandbox/generate")
    async def generate(request: Request) -> JSONResponse:
        if (refused := loopback_only(request)) is not None:
            return refused
        try:
            data: dict[str, Any] = json.loads(await request.body() or b"{}")
            if data.get("entity", "customers") != "customers":
                raise ValueError("only 'customers' can be generated")
            result = await run_in_threadpool(
                generate_customers, sandbox.store, int(data.get("count", 0)), str(data.get("prefix", "S"))
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(result)

    return FaultInjector(app, sandbox)
