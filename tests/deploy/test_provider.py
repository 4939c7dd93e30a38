"""The package as an Airflow provider: discovered through its ``apache_airflow_provider`` entry point with the
connection types and forms of Business Central, Dataverse, Microsoft Graph mailboxes and email server profiles;
the Connections form's "Test" works against the sandbox (real HTTPS, real tokens)."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from dynamics_jobqueue import get_provider_info
from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.graph import GraphHook

PACKAGE = "airflow-provider-dynamics-jobqueue"
CONNECTION_TYPES = {
    "dynamics_business_central": "dynamics_jobqueue.hooks.business_central.BusinessCentralHook",
    "dynamics_dataverse": "dynamics_jobqueue.hooks.dataverse.DataverseHook",
    "dynamics_graph": "dynamics_jobqueue.hooks.graph.GraphHook",
    "dynamics_mail": "dynamics_jobqueue.hooks.mail.MailHook",
}
AIRFLOW_DIR = Path(airflow.__file__).parent
# ProvidersManager.hooks warns that tasks should use the Task SDK's runtime manager; the api-server's connection
# forms still come from ProvidersManager, which is what these tests look at.
pytestmark = pytest.mark.filterwarnings("ignore:ProvidersManager.hooks is deprecated")


def test_entry_point_names_get_provider_info() -> None:
    [entry] = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("dynamics_jobqueue")]
    assert entry.load() is get_provider_info


@pytest.mark.parametrize("schema_file", ["provider_info.schema.json", "provider.yaml.schema.json"])
def test_provider_info_follows_airflows_schemas(schema_file: str) -> None:
    """Both of Airflow's schemas: the runtime one (provider_info) and the richer provider.yaml one, whose
    ``connection-types`` items describe ``conn-fields`` and ``ui-field-behaviour``."""
    schema = json.loads((AIRFLOW_DIR / schema_file).read_text())
    info = get_provider_info()
    if schema_file == "provider.yaml.schema.json":
        jsonschema.validate(info["connection-types"], schema["properties"]["connection-types"])
    else:
        jsonschema.validate(info, schema)


@pytest.fixture(scope="module")
def providers_manager() -> Any:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    manager.initialize_providers_hooks()
    return manager


def test_providers_manager_discovers_the_connection_types(providers_manager: Any) -> None:
    assert providers_manager.providers[PACKAGE].version == "0.1.0"
    for conn_type, hook_class_name in CONNECTION_TYPES.items():
        hook = providers_manager.hooks[conn_type]
        assert hook is not None, conn_type
        assert hook.hook_class_name == hook_class_name
        assert hook.connection_type == conn_type
    names = {n.split(".")[-1] for n in providers_manager.notification}
    assert "JobQueueFailureNotifier" in names


def test_connection_forms_show_the_right_fields(providers_manager: Any) -> None:
    widgets = providers_manager.connection_form_widgets
    behaviours = providers_manager.field_behaviours
    for conn_type, expected in {
        "dynamics_business_central": {"tenant_id", "environment", "company_id", "company_name", "authority_host"},
        "dynamics_dataverse": {"tenant_id", "authority_host"},
        "dynamics_graph": {"tenant_id", "authority_host"},
        "dynamics_mail": {"imap_port", "imap_ssl", "pop3_port", "pop3_ssl", "smtp_host", "smtp_port", "smtp_ssl"}
        | {"smtp_starttls"},
    }.items():
        fields = {w.field_name for name, w in widgets.items() if name.startswith(f"extra__{conn_type}__")}
        assert fields == expected, conn_type
        assert behaviours[conn_type]["hidden_fields"] == ["schema", "port"]
    assert behaviours["dynamics_business_central"]["relabeling"] == {
        "host": "API host",
        "login": "Client ID",
        "password": "Client secret",
    }
    assert behaviours["dynamics_dataverse"]["relabeling"]["host"] == "Organisation URL"
    assert behaviours["dynamics_mail"]["relabeling"]["host"] == "Mail server"
    environment = widgets["extra__dynamics_business_central__environment"].field
    assert environment["value"] == "production" and environment["schema"]["title"] == "Environment"


def _set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_business_central_test_connection_finds_the_company(sandbox: Any) -> None:
    ok, message = BusinessCentralHook().test_connection()
    assert ok, message
    assert "CRONUS" in message and "c0c05000-0000-4000-8000-000000000001" in message


def test_business_central_form_fields_alone_resolve_the_company(sandbox: Any, monkeypatch) -> None:
    """Only the form's fields (company by name, no id) plus the sandbox's CA: the extras the form writes are the
    extras the hook reads."""
    conn = sandbox.connections()["business_central_default"]
    extra = {k: conn["extra"][k] for k in ("tenant_id", "authority_host", "ca_bundle")}
    _set_connection(
        monkeypatch,
        "bc_form",
        {**conn, "extra": {**extra, "environment": "production", "company_name": "CRONUS UK Ltd."}},
    )
    ok, message = BusinessCentralHook("bc_form").test_connection()
    assert ok, message


def test_dataverse_test_connection_answers_who_am_i(sandbox: Any) -> None:
    ok, message = DataverseHook().test_connection()
    assert ok, message
    assert "as application user" in message


def test_graph_test_connection_gets_a_token(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = sandbox.connections()["dataverse_default"]
    _set_connection(
        monkeypatch, "graph_test", {**conn, "conn_type": "dynamics_graph", "host": f"{sandbox.base_url}/graph"}
    )
    ok, message = GraphHook("graph_test").test_connection()
    assert ok, message
    assert message.startswith("token granted for")


@pytest.mark.parametrize("hook_class", [BusinessCentralHook, DataverseHook])
def test_wrong_secret_fails_with_the_identity_platforms_reason(
    hook_class: type, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = sandbox.connections()[hook_class.default_conn_name]
    _set_connection(monkeypatch, "wrong_secret", {**conn, "password": "not-the-secret"})
    ok, message = hook_class("wrong_secret").test_connection()
    assert not ok
    assert message.startswith("AuthenticationError") and "invalid_client" in message


def test_unknown_environment_fails_the_business_central_test(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = sandbox.connections()["business_central_default"]
    _set_connection(monkeypatch, "bc_env", {**conn, "extra": {**conn["extra"], "environment": "no-such-env"}})
    ok, message = BusinessCentralHook("bc_env").test_connection()
    assert not ok, message


@pytest.mark.slow
@pytest.mark.parametrize("conn_id", ["business_central_default", "dataverse_default"])
def test_airflow_cli_connection_test_uses_the_provider(conn_id: str, sandbox: Any, airflow_env: Any) -> None:
    """``airflow connections test`` resolves the hook from the conn type through ProvidersManager, as the UI's
    "Test" button does."""
    result = airflow_env.run(
        "connections",
        "test",
        conn_id,
        extra_env={**sandbox.environment(), "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Connection success!" in result.stdout, result.stdout[-2000:]
