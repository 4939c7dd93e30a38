"""Clients for the sandbox tests: tokens from the sandbox's token endpoint through msal, then plain requests.

The ``sandbox`` fixture itself (a sandbox process on a free port, reset before each test) comes from
``tests/conftest.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msal
import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Callable

COMPANY_ID = "c0c05000-0000-4000-8000-000000000001"
TENANT = "sandbox-tenant"
CLIENTS = {
    "integration": ("integration-app", "integration-secret"),
    "crm": ("crm-user-app", "crm-user-secret"),
    "erp": ("erp-user-app", "erp-user-secret"),
}


def _acquire_token(sandbox: Any, client: str, resource: str) -> str:
    """An access token for ``resource`` (``businesscentral`` or ``dataverse``) through msal, as the hooks get one."""
    client_id, secret = CLIENTS[client]
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=f"{sandbox.base_url}/login/{TENANT}",
        validate_authority=False,
        instance_discovery=False,
        http_client=sandbox.session(),
    )
    result = app.acquire_token_for_client(scopes=[f"{sandbox.base_url}/{resource}/.default"])
    assert "access_token" in result, result
    return str(result["access_token"])


class Api:
    """A requests session bound to one API root with a bearer token.

    :param root: the API root URL, ending in ``/``.
    """

    def __init__(self, session: requests.Session, root: str, token: str) -> None:
        self.session = session
        self.root = root
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.root + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.url(path), timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def all_pages(self, path: str, page_size: int, **kwargs: Any) -> tuple[list[dict[str, Any]], int]:
        """Every row of a collection by following ``@odata.nextLink``; returns the rows and the page count."""
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        response = self.get(path, headers=headers, **kwargs)
        pages = 1
        rows = []
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["value"]) <= page_size
            rows.extend(body["value"])
            if "@odata.nextLink" not in body:
                return rows, pages
            response = self.get(body["@odata.nextLink"], headers=headers)
            pages += 1


def _bc_root(sandbox: Any, api: str = "v2.0") -> str:
    return f"{sandbox.base_url}/businesscentral/v2.0/{TENANT}/production/api/{api}/"


@pytest.fixture
def acquire_token(sandbox: Any) -> Callable[[str, str], str]:
    """``acquire_token(client, resource)``: a token for ``"integration"``/``"crm"``/``"erp"`` and
    ``"businesscentral"``/``"dataverse"``."""
    return lambda client, resource: _acquire_token(sandbox, client, resource)


@pytest.fixture
def bc_root(sandbox: Any) -> str:
    """The Business Central API v2.0 root URL (``.../api/v2.0/``)."""
    return _bc_root(sandbox)


@pytest.fixture
def bc_api(sandbox: Any) -> Callable[..., Api]:
    """``bc_api(client="integration", api="v2.0")``: a Business Central client with a company-level root."""

    def make(client: str = "integration", api: str = "v2.0") -> Api:
        root = f"{_bc_root(sandbox, api)}companies({COMPANY_ID})/"
        return Api(sandbox.session(), root, _acquire_token(sandbox, client, "businesscentral"))

    return make


@pytest.fixture
def bc(bc_api: Callable[..., Api]) -> Api:
    """The integration user's Business Central client (root: the CRONUS company)."""
    return bc_api()


@pytest.fixture
def dv_api(sandbox: Any) -> Callable[..., Api]:
    """``dv_api(client="integration")``: a Dataverse client."""

    def make(client: str = "integration") -> Api:
        root = f"{sandbox.base_url}/dataverse/api/data/v9.2/"
        return Api(sandbox.session(), root, _acquire_token(sandbox, client, "dataverse"))

    return make


@pytest.fixture
def dv(dv_api: Callable[..., Api]) -> Api:
    """The integration user's Dataverse client."""
    return dv_api()
