"""The Microsoft identity platform v2.0 emulation: registered clients, client-credentials tokens.

Tokens are JWTs signed with HS256 and a key kept in the data folder, so they stay valid across a
restart of the sandbox exactly as real Azure AD tokens outlive a restart of the API. The scope
decides the audience (``<resource>/.default``): a Business Central token is refused by the Dataverse
API and the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sandbox.api import Caller
from sandbox.dataverse import stable_id as dataverse_id

if TYPE_CHECKING:
    from pathlib import Path

TENANT = "sandbox-tenant"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"
TOKEN_LIFETIME_S = 3599
INTEGRATION_USER_EMAIL = "bcintegration@cronus.example"
CRM_USER_EMAIL = "JO@contoso.com"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class Client:
    """An app registration of the sandbox tenant.

    :param systemuserid: the Dataverse systemuser the client acts as (``None``: not a CRM user).
    """

    client_id: str
    secret: str
    description: str
    systemuserid: str | None


def systemuser_id(email: str) -> str:
    """The seeded systemuserid of a CRM user (stable across resets)."""
    return dataverse_id("systemusers", email.lower())


CLIENTS: dict[str, Client] = {
    c.client_id: c
    for c in (
        Client(
            "integration-app",
            "integration-secret",
            "the integration user (Dataverse systemuser '# Business Central Integration')",
            systemuser_id(INTEGRATION_USER_EMAIL),
        ),
        Client(
            "crm-user-app",
            "crm-user-secret",
            "a human CRM user: Jim Olive, the CRONUS salesperson JO",
            systemuser_id(CRM_USER_EMAIL),
        ),
        Client("erp-user-app", "erp-user-secret", "a human Business Central user", None),
    )
}


class AuthError(Exception):
    """A token is missing, malformed, expired, or for another API."""


class TokenError(Exception):
    """The token endpoint refuses a request; carries the AADSTS answer."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} "
            f"Correlation ID: {uuid.uuid4()} Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def api_of_resource(resource: str) -> str | None:
    """``"bc"``, ``"dataverse"`` or ``None`` for the resource part of a ``.default`` scope."""
    if resource.rstrip("/") == BC_RESOURCE:
        return "bc"
    parts = urlsplit(resource)
    if parts.scheme != "https" or parts.hostname not in LOOPBACK_HOSTS:
        return None
    path = parts.path.rstrip("/")
    if path == "/businesscentral":
        return "bc"
    if path == "/dataverse":
        return "dataverse"
    if path == "/graph":  # Microsoft Graph subset (sandbox/graph.py)
        return "graph"
    return None


def openid_configuration(base: str, tenant: str) -> dict[str, Any]:
    """The tenant's OpenID discovery document (fields msal and other clients read)."""
    login = f"{base}/login/{tenant}"
    return {
        "token_endpoint": f"{login}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/login/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{login}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/login/{tenant}/oidc/userinfo",
        "authorization_endpoint": f"{login}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{login}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{login}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "appid", "roles"],
        "kerberos_endpoint": f"{login}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "sandbox.local",
        "cloud_graph_host_name": "graph.sandbox.local",
        "msgraph_host": "graph.sandbox.local",
        "rbac_url": "https://pas.sandbox.local",
    }


class TokenService:
    """Issues and checks access tokens.

    :param key_file: where the signing key lives (created on first use).
    :param lifetime_s: token lifetime in seconds (``expires_in``).
    """

    def __init__(self, key_file: Path, lifetime_s: int = TOKEN_LIFETIME_S) -> None:
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_bytes(secrets.token_bytes(32))
        self._key = key_file.read_bytes()
        self.lifetime_s = lifetime_s

    def issue(self, form: dict[str, str], tenant: str, base: str, basic: tuple[str, str] | None) -> dict[str, Any]:
        """Answer a token request (``grant_type=client_credentials``).

        :raises TokenError: 400 for an unknown tenant, grant type, client or scope; 401 for a wrong secret.
        """
        if tenant != TENANT:
            raise TokenError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type')}'.",
            )
        client_id = form.get("client_id") or (basic[0] if basic else "")
        secret = form.get("client_secret") or (basic[1] if basic else "")
        client = CLIENTS.get(client_id)
        if client is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if not hmac.compare_digest(secret.encode(), client.secret.encode()):
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scopes = [s for s in form.get("scope", "").split() if s not in ("openid", "profile", "offline_access")]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope '{form.get('scope', '')}' is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = scopes[0][: -len("/.default")]
        api = api_of_resource(resource)
        if api is None:
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {tenant}.",
            )
        issued = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"{base}/login/{tenant}/v2.0",
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.lifetime_s,
            "appid": client.client_id,
            "tid": tenant,
            "oid": client.systemuserid or dataverse_id("appregistrations", client.client_id),
            "roles": ["API.ReadWrite.All"] if api == "bc" else [],
            "ver": "1.0",
            "sbx_api": api,
        }
        return {
            "token_type": "Bearer",
            "expires_in": self.lifetime_s,
            "ext_expires_in": self.lifetime_s,
            "access_token": self._sign(claims),
        }

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def verify(self, authorization: str | None, api: str) -> Caller:
        """The caller of a request with ``Authorization: Bearer <token>`` for ``api``.

        :raises AuthError: when the header is missing, the token is invalid or expired, or the token's
            audience is the other API.
        """
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("The request has no bearer token.")
        token = authorization[7:].strip()
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                raise AuthError("The token signature is invalid.")
            claims = json.loads(_unb64(payload))
        except (ValueError, json.JSONDecodeError) as exc:
            raise AuthError("The token is malformed.") from exc
        if claims.get("exp", 0) <= time.time():
            raise AuthError("The token is expired.")
        if claims.get("sbx_api") != api:
            raise AuthError(f"The token's audience '{claims.get('aud')}' is not valid for this API.")
        client = CLIENTS.get(claims.get("appid", ""))
        if client is None:
            raise AuthError("The token's application is not registered.")
        return Caller(client.client_id, client.systemuserid)
