"""Hook to the Business Central API v2.0 (the ERP side).

URLs follow api-contracts.md: ``<host>/v2.0/<tenant>/<environment>/api/v2.0/companies(<companyId>)/<entitySet>``.
Entities that the standard API lacks (resources, return orders) come from a custom API page; their route is
configured per entity set in the connection's ``extra.endpoints``, e.g.
``{"resources": "api/cronus/integration/v1.0"}``.

Connection (conn type ``dynamics_business_central``): ``host`` the API host
(``https://api.businesscentral.dynamics.com``), ``login``/``password`` client id/secret, and in ``extra``:
``tenant_id``, ``environment`` (default ``production``), ``company_id`` (GUID; else the company named
``company_name``, else the only company), ``endpoints``, plus the fields of
:class:`~dynamics_jobqueue.hooks.microsoft.MicrosoftApiHook`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, ClassVar

from dynamics_jobqueue.hooks.batch import BatchOperation, BatchResult
from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.hooks.microsoft import MicrosoftApiHook, odata_params

STANDARD_ROUTE = "api/v2.0"
#: Business Central accepts at most 100 operations per $batch.
MAX_BATCH = 100


class BusinessCentralHook(MicrosoftApiHook):
    """Reads and writes Business Central entities over API v2.0.

    :param business_central_conn_id: the Airflow connection id (default ``business_central_default``).
    """

    default_conn_name = "business_central_default"
    conn_type = "dynamics_business_central"
    hook_name = "Dynamics 365 Business Central"
    max_page_size: ClassVar[int] = 20_000

    def __init__(self, business_central_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(business_central_conn_id or self.default_conn_name, **kwargs)

    def default_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/json"}

    @cached_property
    def environment_root(self) -> str:
        """``v2.0/<tenant>/<environment>/`` relative to the host."""
        tenant = self.extra.get("tenant_id", "")
        environment = self.extra.get("environment", "production")
        return f"v2.0/{tenant}/{environment}/"

    def route(self, entity_set: str) -> str:
        """The API route of ``entity_set``: ``extra.endpoints[entity_set]`` or ``api/v2.0``."""
        endpoints: dict[str, str] = self.extra.get("endpoints") or {}
        return endpoints.get(entity_set, STANDARD_ROUTE).strip("/")

    @cached_property
    def company_id(self) -> str:
        """The company GUID: ``extra.company_id``, else looked up by ``extra.company_name`` or the only company.

        :raises ApiError: when the company cannot be determined.
        """
        if self.extra.get("company_id"):
            return str(self.extra["company_id"])
        companies = self.request("GET", f"{self.environment_root}{STANDARD_ROUTE}/companies").json()["value"]
        wanted = self.extra.get("company_name")
        matches = [c for c in companies if wanted is None or c.get("name") == wanted]
        if len(matches) != 1:
            names = ", ".join(c.get("name", "?") for c in companies)
            raise ApiError(f"set extra.company_id or extra.company_name; companies found: {names}")
        return str(matches[0]["id"])

    def probe(self) -> str:
        """Resolve and read the company: proves tenant, environment and company (the "Test" button)."""
        path = f"{self.environment_root}{STANDARD_ROUTE}/companies({self.company_id})"
        name = self.request("GET", path, entity_set="companies", record_id=self.company_id).json().get("name")
        return f"signed in to {self.api_root}; company {name!r} ({self.company_id}) found"

    def entity_path(self, entity_set: str) -> str:
        """Path of ``entity_set`` relative to the host, with the company and the entity set's route."""
        return f"{self.environment_root}{self.route(entity_set)}/companies({self.company_id})/{entity_set}"

    def iter_pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: list[str] | None = None,
        orderby: str | None = None,
        page_size: int = 20_000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the records of ``entity_set`` page by page (``@odata.nextLink``), never the whole set at once.

        :param filter: OData ``$filter``, e.g. ``lastModifiedDateTime gt 2026-01-01T00:00:00Z`` (no quotes).
        :param select: fields to return (``$select``).
        :param page_size: records per page asked with ``Prefer: odata.maxpagesize`` (max 20,000).
        :raises ApiError: typed, on any error answer after retries.
        """
        params = odata_params(filter=filter, select=select, orderby=orderby)
        yield from self.iter_collection(
            self.entity_path(entity_set), params=params, page_size=page_size, entity_set=entity_set
        )

    def get(self, entity_set: str, record_id: str) -> dict[str, Any]:
        """Read one record by its ``id``. :raises NotFoundError: when it does not exist."""
        response = self.request(
            "GET", f"{self.entity_path(entity_set)}({record_id})", entity_set=entity_set, record_id=record_id
        )
        return dict(response.json())

    def create(self, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a record (POST, 201). :return: the created record with ``id`` and ``@odata.etag``."""
        response = self.request("POST", self.entity_path(entity_set), entity_set=entity_set, json=body)
        return dict(response.json())

    def update(self, entity_set: str, record_id: str, body: dict[str, Any], *, etag: str = "*") -> dict[str, Any]:
        """Update a record (PATCH with ``If-Match``). :raises ConflictError: when ``etag`` is stale (409/412)."""
        response = self.request(
            "PATCH",
            f"{self.entity_path(entity_set)}({record_id})",
            entity_set=entity_set,
            record_id=record_id,
            json=body,
            headers={"If-Match": etag},
        )
        return dict(response.json())

    def delete(self, entity_set: str, record_id: str, *, etag: str = "*") -> None:
        """Delete a record (DELETE with ``If-Match``). :raises NotFoundError: when it does not exist."""
        self.request(
            "DELETE",
            f"{self.entity_path(entity_set)}({record_id})",
            entity_set=entity_set,
            record_id=record_id,
            headers={"If-Match": etag},
        )

    def post_action(self, entity_set: str, record_id: str, action: str) -> None:
        """Call a bound action such as ``Microsoft.NAV.post`` (POST, empty body, 204).

        :raises ApiError: the API's refusal (e.g. the document cannot be posted), typed.
        """
        self.request(
            "POST",
            f"{self.entity_path(entity_set)}({record_id})/{action}",
            entity_set=entity_set,
            record_id=record_id,
        )

    def get_bytes(self, path: str) -> bytes:
        """Read binary content (e.g. ``salesInvoices(<id>)/pdfDocument/pdfDocumentContent``) below the company.

        :param path: relative to the company root of the standard API, or absolute.
        """
        if not path.startswith(("https://", "http://")):
            path = f"{self.environment_root}{STANDARD_ROUTE}/companies({self.company_id})/{path}"
        return self.request("GET", path, headers={"Accept": "*/*"}).content

    def batch(self, ops: Sequence[BatchOperation], *, atomic: bool = False) -> list[BatchResult]:
        """Send operations as JSON ``$batch`` requests of at most 100, grouped by API route.

        :param ops: operations whose ``path`` is relative to the company (``customers(<id>)``).
        :param atomic: send ``Isolation: snapshot`` so each batch of 100 is all-or-nothing.
        :return: one result per operation, in the order given.
        :raises ApiError: when a whole batch request fails (auth, throttling after retries).
        """
        results: dict[str, BatchResult] = {}
        by_route: dict[str, list[BatchOperation]] = {}
        for op in ops:
            entity_set = op.path.split("(", 1)[0].split("/", 1)[0]
            by_route.setdefault(self.route(entity_set), []).append(op)
        for route, route_ops in by_route.items():
            for start in range(0, len(route_ops), MAX_BATCH):
                chunk = route_ops[start : start + MAX_BATCH]
                payload = {
                    "requests": [
                        {
                            "id": op.id,
                            "method": op.method,
                            "url": f"companies({self.company_id})/{op.path}",
                            "headers": {"Content-Type": "application/json", **op.headers},
                            **({"body": op.body} if op.body is not None else {}),
                        }
                        for op in chunk
                    ]
                }
                headers = {"Isolation": "snapshot"} if atomic else {}
                answer = self.request(
                    "POST", f"{self.environment_root}{route}/$batch", json=payload, headers=headers
                ).json()
                for item in answer.get("responses", []):
                    results[str(item["id"])] = BatchResult(
                        id=str(item["id"]),
                        status=int(item["status"]),
                        body=item.get("body"),
                        headers=dict(item.get("headers") or {}),
                    )
        return [
            results.get(op.id) or BatchResult(op.id, 500, {"error": {"message": "no answer in the batch"}})
            for op in ops
        ]
