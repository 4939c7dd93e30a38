"""Fault injection, latency, statistics, reset, bulk data and persistence of the sandbox."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sandbox.runner import INCLUDE_DIR, SandboxProcess


def test_429_carries_retry_after_and_the_api_error_shape(sandbox, bc, dv):
    sandbox.admin("faults", {"rate_429": 1, "retry_after_s": 7})
    answer = bc.get("customers")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["error"]["code"] == "Application_TooManyRequests"
    crm = dv.get("accounts")
    assert crm.status_code == 429
    assert crm.json()["error"]["code"] == "0x80072322"
    with sandbox.session() as session:  # login and admin routes are never faulted
        assert session.get(f"{sandbox.base_url}/_sandbox/health").status_code == 200


def test_a_faulted_write_is_never_applied(sandbox, bc):
    sandbox.admin("faults", {"rate_5xx": 1, "seed": 3})
    answer = bc.post("customers", json={"displayName": "Must not exist"})
    assert answer.status_code in (500, 503)
    assert "error" in answer.json()
    sandbox.admin("faults", {})
    assert bc.get("customers", params={"$filter": "displayName eq 'Must not exist'"}).json()["value"] == []


def test_dropped_connection_and_seeded_fault_mix(sandbox, bc):
    sandbox.admin("faults", {"rate_drop": 1})
    with pytest.raises(requests.ConnectionError):
        bc.get("customers")
    sandbox.admin("faults", {"rate_5xx": 0.5, "seed": 42})
    first = [bc.get("currencies", params={"$top": "1"}).status_code for _ in range(12)]
    sandbox.admin("faults", {"rate_5xx": 0.5, "seed": 42})
    second = [bc.get("currencies", params={"$top": "1"}).status_code for _ in range(12)]
    assert first == second  # the same seed gives the same sequence
    assert set(first) <= {200, 500, 503} and 200 in first and len(set(first)) > 1


def test_latency_is_added_to_every_api_request(sandbox, bc):
    bc.get("companies")  # connection and TLS set up before timing
    sandbox.admin("faults", {"latency_ms": 300})
    started = time.monotonic()
    assert bc.get(bc.root.split("companies(")[0] + "companies").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_stats_count_requests_per_route(sandbox, bc, dv):
    sandbox.admin("stats/reset", {})
    bc.get("customers")
    bc.get("customers")
    dv.get("accounts")
    stats = sandbox.admin("stats")
    assert stats["requests"] == 3
    assert stats["by_route"] == {"GET bc/customers": 2, "GET dataverse/accounts": 1}


def test_reset_restores_the_seed(sandbox, bc):
    bc.post("customers", json={"displayName": "Temporary"})
    assert len(bc.get("customers").json()["value"]) == 6
    sandbox.reset()
    customers = bc.get("customers").json()["value"]
    assert [c["number"] for c in customers] == ["10000", "20000", "30000", "40000", "50000"]


def test_generate_bulk_customers_pages_them_back(sandbox, bc):
    result = sandbox.admin("generate", {"entity": "customers", "count": 2500, "prefix": "S"})
    assert result == {"entity": "customers", "created": 2500, "first": "S0000001", "last": "S0002500"}
    rows, pages = bc.all_pages("customers", 1000, params={"$filter": "startswith(number,'S')", "$select": "number"})
    assert pages == 3 and len(rows) == 2500
    assert rows[0]["number"] == "S0000001" and rows[-1]["number"] == "S0002500"
    more = sandbox.admin("generate", {"entity": "customers", "count": 10, "prefix": "S"})
    assert more["first"] == "S0002501"


@pytest.mark.parametrize("path", ["faults", "webhooks", "dataverse-webhooks"])
def test_a_settings_call_takes_a_json_object_and_refuses_anything_else(sandbox, path):
    before = sandbox.admin(path)
    with sandbox.session() as session:
        url = f"{sandbox.base_url}/_sandbox/{path}"
        listed = session.post(url, data=b"[1]", headers={"Content-Type": "application/json"})
        assert (listed.status_code, listed.json()) == (400, {"error": "a JSON object is required"})
        garbled = session.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
        assert garbled.status_code == 400 and "Expecting property name" in garbled.json()["error"]
    assert sandbox.admin(path) == before  # refused: nothing changed


def test_data_and_tokens_survive_a_restart(tmp_path):
    process = SandboxProcess(data_dir=tmp_path / "sandbox")
    with process:
        session = process.session()
        token = session.post(
            f"{process.base_url}/login/sandbox-tenant/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "integration-app",
                "client_secret": "integration-secret",
                "scope": f"{process.base_url}/businesscentral/.default",
            },
        ).json()["access_token"]
        root = (
            f"{process.base_url}/businesscentral/v2.0/sandbox-tenant/production/api/v2.0/"
            "companies(c0c05000-0000-4000-8000-000000000001)/"
        )
        headers = {"Authorization": f"Bearer {token}"}
        created = session.post(root + "customers", json={"displayName": "Persistent Ltd"}, headers=headers).json()
        session.close()
    ca_before = process.ca_file.read_bytes()
    restarted = SandboxProcess(port=process.port, data_dir=tmp_path / "sandbox")
    with restarted:
        assert restarted.ca_file.read_bytes() == ca_before  # TLS material is reused
        with restarted.session() as session:
            again = session.get(root + f"customers({created['id']})", headers=headers)
        assert again.status_code == 200
        assert again.json()["displayName"] == "Persistent Ltd"
        assert again.json()["@odata.etag"] == created["@odata.etag"]


def test_cli_reset_wipes_the_data_folder(tmp_path):
    data_dir = tmp_path / "sandbox"
    (data_dir / "tls").mkdir(parents=True)
    (data_dir / "sandbox.sqlite3").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "reset", "--data-dir", str(data_dir)],
        env={"PYTHONPATH": str(INCLUDE_DIR), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "removed" in result.stdout
    assert not data_dir.exists()


def test_expired_tokens_are_refused(tmp_path):
    process = SandboxProcess(data_dir=tmp_path / "sandbox", env={"SANDBOX_TOKEN_LIFETIME": "1"})
    with process, process.session() as session:
        answer = session.post(
            f"{process.base_url}/login/sandbox-tenant/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "integration-app",
                "client_secret": "integration-secret",
                "scope": f"{process.base_url}/dataverse/.default",
            },
        ).json()
        assert answer["expires_in"] == 1
        time.sleep(1.5)
        expired = session.get(
            f"{process.base_url}/dataverse/api/data/v9.2/WhoAmI",
            headers={"Authorization": f"Bearer {answer['access_token']}"},
        )
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


def test_extra_tls_hostnames_go_into_the_server_certificate(tmp_path, monkeypatch) -> None:
    from cryptography import x509

    from sandbox.tls import ensure_tls

    monkeypatch.setenv("SANDBOX_TLS_HOSTNAMES", "sandbox, sandbox.internal")
    files = ensure_tls(tmp_path)
    cert = x509.load_pem_x509_certificate(files.cert_chain.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "sandbox", "sandbox.internal"} <= set(names.get_values_for_type(x509.DNSName))
