"""A small HTTPS server that answers the hooks with Microsoft's documented responses, byte for byte.

Each answer is a file of this folder as the documentation prints it (README.md names the source of each).
The server writes it to the socket unchanged except for the documented placeholders (``[Organization URI]``,
``https://graph.microsoft.com``), which become this server's URL so that links can be followed; ``framing``
``lf`` keeps the documentation's line ends, ``crlf`` turns every LF into CRLF as the services send. No
``Content-Length`` is added where the documentation shows none: the connection closes after each answer.
The Microsoft identity platform's discovery and token endpoints are answered too, so msal signs in as it would
against a tenant.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

CONTRACTS = Path(__file__).resolve().parent
TENANT = "contoso-tenant"
PLACEHOLDERS = ("[Organization URI]", "[Organization Uri]")


@dataclass
class Received:
    """A request the server received: method, path with query, headers (lower-case names) and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Route:
    method: str
    path_contains: str
    answer: bytes
    times: int | None


@dataclass
class ContractServer:
    """The server's routes and the requests it received; ``base_url`` is ``https://127.0.0.1:<port>``."""

    base_url: str = ""
    ca_file: str = ""
    received: list[Received] = field(default_factory=list)
    routes: list[_Route] = field(default_factory=list)

    def answer(
        self,
        method: str,
        path_contains: str,
        fixture: str,
        *,
        framing: str = "lf",
        times: int | None = None,
        json_status: str | None = None,
        edit: tuple[str, str] | None = None,
    ) -> None:
        """Answer requests whose path contains ``path_contains`` with the documented response in ``fixture``.

        :param framing: ``lf`` (as documented) or ``crlf``.
        :param times: answer this many requests, then let later routes answer.
        :param json_status: for a fixture that documents only a JSON body: the status line to send it with.
        :param edit: ``(old, new)``: a documented elision to resolve (README names each one used).
        """
        text = (CONTRACTS / fixture).read_text(encoding="utf-8")
        if edit is not None:
            assert edit[0] in text, f"{fixture} no longer contains {edit[0]!r}"
            text = text.replace(edit[0], edit[1])
        if json_status is not None:
            if text.startswith("200 OK\n"):  # the BC reference prints the status above the body
                text = text[len("200 OK\n") :]
            text = f"HTTP/1.1 {json_status}\nContent-Type: application/json; odata.metadata=minimal\n\n{text}"
        for placeholder in PLACEHOLDERS:
            text = text.replace(placeholder, f"{self.base_url}/dataverse")
        text = text.replace("https://graph.microsoft.com", f"{self.base_url}/graph")
        if framing == "crlf":
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        self.routes.append(_Route(method, path_contains, text.encode("utf-8"), times))

    def answer_raw(self, method: str, path_contains: str, answer: bytes, *, times: int | None = None) -> None:
        """Answer with ``answer`` as given (statuses the documentation shows no example of, e.g. a bare 503)."""
        self.routes.append(_Route(method, path_contains, answer, times))

    def connection(self, api: str, **extra: object) -> str:
        """``AIRFLOW_CONN_*`` JSON of a connection to this server's ``api`` (``dataverse``, ``businesscentral``,
        ``graph``)."""
        return json.dumps(
            {
                "conn_type": "http",
                "host": f"{self.base_url}/{api}",
                "login": "contract-client",
                "password": "contract-secret",
                "extra": {
                    "tenant_id": TENANT,
                    "authority_host": f"{self.base_url}/login",
                    "ca_bundle": self.ca_file,
                    "max_retries": 0,
                    "timeout": 10,
                    **extra,
                },
            }
        )

    def requests_to(self, path_contains: str) -> list[Received]:
        return [r for r in self.received if path_contains in r.path and "/login/" not in r.path]

    def _route(self, method: str, path: str) -> bytes:
        login = f"/login/{TENANT}"
        if path.startswith(f"{login}/v2.0/.well-known/openid-configuration"):
            return _json_answer(
                {
                    "token_endpoint": f"{self.base_url}{login}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{self.base_url}{login}/oauth2/v2.0/authorize",
                    "issuer": f"{self.base_url}{login}/v2.0",
                }
            )
        if path.startswith(f"{login}/oauth2/v2.0/token"):
            return _json_answer({"token_type": "Bearer", "expires_in": 3599, "access_token": "contract-token"})
        for route in self.routes:
            if route.method == method and route.path_contains in path and route.times != 0:
                if route.times is not None:
                    route.times -= 1
                return route.answer
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _json_answer(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)


class _Handler(socketserver.StreamRequestHandler):
    server: _TlsServer

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1").strip()
        if not request_line:
            return
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = self.rfile.readline().decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.rfile.read(int(headers.get("content-length", "0") or 0))
        contract = self.server.contract
        contract.received.append(Received(method, path, headers, body))
        self.wfile.write(_closing(contract._route(method, path)))
        self.wfile.flush()


def _closing(answer: bytes) -> bytes:
    """``answer`` with ``Connection: close``: this server answers one request per connection and closes it, and
    HTTP/1.1 says so in that header (RFC 9112, section 9.6). Without it the client keeps the connection for its next
    request and, when the close arrives after the pick-up, that request fails as a dropped connection - which a
    POST may not retry (it was flaky under load)."""
    status, eol, rest = answer.partition(b"\n")
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if b"\nconnection:" in head.lower():
        return answer
    line_end = b"\r\n" if status.endswith(b"\r") else b"\n"
    return status + eol + b"Connection: close" + line_end + rest


class _TlsServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, contract: ContractServer, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.contract = contract
        self.context = context

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True), address


@pytest.fixture(scope="session")
def _tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("contract-tls") / "ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    return context, str(ca_file)


@pytest.fixture
def contract(_tls: tuple[ssl.SSLContext, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractServer]:
    """A fresh contract server; the hooks' default connections point at it."""
    context, ca_file = _tls
    server_state = ContractServer(ca_file=ca_file)
    server = _TlsServer(server_state, context)
    server_state.base_url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_DATAVERSE_DEFAULT", server_state.connection("dataverse"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT",
        server_state.connection(
            "businesscentral", environment="production", company_id="c0c05000-0000-4000-8000-000000000001"
        ),
    )
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_DEFAULT", server_state.connection("graph"))
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
