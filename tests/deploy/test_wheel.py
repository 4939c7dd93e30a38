"""The built wheel in a clean virtualenv, without the checkout: what a deployment gets from ``pip install``.

Builds the wheel with uv, installs it into a fresh venv with the lock file as constraints (the wheel's declared
dependencies only), and runs everything from a folder outside the repository with no ``PYTHONPATH``: Airflow finds
the provider and the plugin through the entry points, the migrations ship inside the package, development tools
and the embedded Postgres are not installed, and a missing state-store connection is a clear error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")

pytestmark = pytest.mark.slow


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A venv with only the built wheel (and its dependencies), and the environment to run it in."""
    root = tmp_path_factory.mktemp("wheel")
    # sdist first, then the wheel from it (uv's default): nothing of the checkout's build/ can leak into the wheel.
    built = _run([str(UV), "build", "--out-dir", str(root / "dist"), str(REPO)])
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (root / "dist").glob("*.whl")
    venv = root / "venv"
    created = _run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)])
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    install = [str(UV), "pip", "install", "--quiet", "--python", str(python), "--constraint"]
    result = _run([*install, str(REPO / "requirements.txt"), str(wheel)])
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "plugins").mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "PYTHON", "DYNAMICS_", "VIRTUAL_ENV"))
    }
    env |= {
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    return {"root": root, "python": python, "airflow": venv / "bin" / "airflow", "env": env}


def _in_venv(installed: dict[str, Any], *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(list(command), env={**installed["env"], **env}, cwd=installed["root"])


def _json_line(stdout: str) -> Any:
    [line] = [line for line in stdout.splitlines() if line.startswith("[")]  # log lines share stdout
    return json.loads(line)


def test_only_declared_dependencies_are_installed(installed: dict[str, Any]) -> None:
    script = (
        "import importlib.util, dynamics_jobqueue as p, pathlib\n"
        "print(pathlib.Path(p.__file__).parent)\n"
        "for name in ('pytest', 'ruff', 'mypy', 'playwright', 'pgserver', 'imap_tools', 'sandbox'):\n"
        "    print(name, importlib.util.find_spec(name) is not None)\n"
        "for name in ('airflow.providers.smtp', 'airflow.providers.postgres', 'psycopg'):\n"
        "    print(name, importlib.util.find_spec(name) is not None)\n"
    )
    result = _in_venv(installed, str(installed["python"]), "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    package, *found = result.stdout.splitlines()
    assert "site-packages" in package and str(REPO) not in package
    assert found == [
        "pytest False",
        "ruff False",
        "mypy False",
        "playwright False",
        "pgserver False",
        "imap_tools False",
        "sandbox False",
        "airflow.providers.smtp True",
        "airflow.providers.postgres True",
        "psycopg True",
    ]
    assert (Path(package) / "py.typed").exists()
    assert sorted(p.name for p in (Path(package) / "sql" / "migrations").glob("*.sql")) == sorted(
        p.name for p in (REPO / "plugins" / "dynamics_jobqueue" / "sql" / "migrations").glob("*.sql")
    )


def test_airflow_lists_the_provider_its_config_and_the_plugin(installed: dict[str, Any]) -> None:
    airflow = str(installed["airflow"])
    providers = _in_venv(installed, airflow, "providers", "list", "--output", "json")
    assert providers.returncode == 0, providers.stderr[-3000:]
    ours = [p for p in _json_line(providers.stdout) if p["package_name"] == "airflow-provider-dynamics-jobqueue"]
    assert [p["version"] for p in ours] == ["0.1.0"]

    plugins = _in_venv(installed, airflow, "plugins", "--output", "json")
    assert plugins.returncode == 0, plugins.stderr[-3000:]
    [plugin] = [p for p in _json_line(plugins.stdout) if p["name"] == "dynamics_jobqueue"]
    assert "EntryPoint(name='dynamics_jobqueue'" in plugin["source"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/dynamics"
    assert {app["name"] for app in plugin["react_apps"]} >= {"Job Queue Entries", "Integration Sync", "Trends"}
    # The React app's built bundle ships inside the package: a user needs no Node.js.
    bundle = (
        "import importlib.resources as r\n"
        "print((r.files('dynamics_jobqueue') / 'console/static/console.js').read_text()[:400])"
    )
    shipped = _in_venv(installed, str(installed["python"]), "-c", bundle)
    assert shipped.returncode == 0 and "AirflowPlugin" in shipped.stdout, shipped.stderr[-2000:]

    config = _in_venv(installed, airflow, "config", "get-value", "dynamics_jobqueue", "embedded_state_store")
    assert config.returncode == 0 and config.stdout.strip().splitlines()[-1] == "False", config.stderr[-2000:]


MIGRATE = (
    "from dynamics_jobqueue.hooks.state import StateStoreHook\n"
    "print('APPLIED', StateStoreHook(migrate=False).migrate())\n"
    "print('AGAIN', StateStoreHook().migrate())\n"
)


def test_the_state_store_migrates_from_the_installed_package(
    installed: dict[str, Any], postgres_server: Any, state_database: str
) -> None:
    conn = json.dumps(postgres_server.airflow_connection(state_database))
    result = _in_venv(installed, str(installed["python"]), "-c", MIGRATE, AIRFLOW_CONN_DYNAMICS_STATE=conn)
    assert result.returncode == 0, result.stderr[-3000:]
    versions = sorted(
        int(p.name[:4]) for p in (REPO / "plugins" / "dynamics_jobqueue" / "sql" / "migrations").glob("*.sql")
    )
    assert f"APPLIED {versions}" in result.stdout
    assert "AGAIN []" in result.stdout


def test_without_the_connection_the_installed_hook_names_it_and_starts_nothing(installed: dict[str, Any]) -> None:
    result = _in_venv(installed, str(installed["python"]), "-c", MIGRATE)
    assert result.returncode != 0
    assert "The state store connection 'dynamics_state' is not defined" in result.stderr
    assert "AIRFLOW_CONN_DYNAMICS_STATE=postgresql://" in result.stderr
    assert "pgserver" not in result.stderr  # the embedded server was never tried
