"""docker-compose.yaml: Compose accepts it (Debian's docker-compose, ``config``) and it follows the Compose
Specification's JSON schema; the .env example commits no secret; the image pins the locked Airflow.

No Docker engine is needed: ``docker-compose config`` only parses, interpolates and validates. The schema is the
``compose_spec.json`` that ships inside docker-compose itself (the Python package ``compose``, Apache-2.0, from
PyPI's docker-compose 1.x and Debian's docker-compose package), read from the installation that runs the test.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
REQUIRED_SECRETS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "_AIRFLOW_WWW_USER_PASSWORD",
)
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.skip("docker-compose is not installed (include/scripts/install_system_deps.sh installs it)")
    return path


def _env_file(tmp_path: Path, **overrides: str) -> Path:
    """.env.example with ``overrides`` applied, as a user's .env would be."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={overrides[name]}" if name in overrides and not line.startswith("#") else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(docker_compose: str, env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [docker_compose, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
    return subprocess.run(
        [*command, *args, "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved(docker_compose: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The configuration as docker-compose resolves it, with every profile and filled-in secrets."""
    env = _env_file(tmp_path_factory.mktemp("env"), **{name: secrets.token_urlsafe(24) for name in REQUIRED_SECRETS})
    result = _config(docker_compose, env, "--profile", "sandbox", "--profile", "debug")
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_docker_compose_config_succeeds(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "sandbox", "mailserver"} <= set(services)
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"].startswith("redis:7.2")
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
            or "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        )
        # The state store is a database of its own next to Airflow's metadata database.
        assert env["AIRFLOW_CONN_DYNAMICS_STATE"].endswith("@postgres:5432/dynamics_state"), name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow"), name
        assert services[name]["build"]["context"] == str(REPO), name
    assert services["airflow-worker"]["command"] in (["celery", "worker"], "celery worker")
    init_command = " ".join(services["airflow-init"]["command"])
    assert "include/docker/airflow_init.py" in init_command
    assert services["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    # The try-it-out services exist only under their profile.
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert services["mailserver"]["profiles"] == ["sandbox"]


def test_compose_refuses_to_start_without_secrets(docker_compose: str, tmp_path: Path) -> None:
    """The committed example holds no secret, and compose names the first one missing instead of running
    with a guessable default."""
    result = _config(docker_compose, _env_file(tmp_path))
    assert result.returncode != 0
    assert "AIRFLOW__CORE__FERNET_KEY" in result.stderr


def test_env_example_commits_no_secret() -> None:
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    secret_names = [name for name in values if re.search(r"SECRET|PASSWORD|FERNET", name)]
    assert set(REQUIRED_SECRETS) <= set(secret_names)
    # POSTGRES_PASSWORD keeps the official compose's development default; every other secret is empty.
    assert {name: values[name] for name in secret_names if name != "POSTGRES_PASSWORD" and values[name]} == {}
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".dockerignore").read_text().split()


def _compose_spec_schema(docker_compose: str) -> dict[str, Any]:
    """The Compose Specification schema shipped with the docker-compose that runs here.

    docker-compose 1.x is a Python program: its interpreter (the shebang) knows where the ``compose`` package is.
    """
    shebang = Path(docker_compose).read_text(errors="replace").splitlines()[0]
    interpreter = shebang.removeprefix("#!").split()
    result = subprocess.run(
        [*interpreter, "-c", "import compose.config, os; print(os.path.dirname(compose.config.__file__))"],
        capture_output=True,
        text=True,
        check=False,
    )
    schema_file = Path(result.stdout.strip()) / "compose_spec.json"
    if result.returncode != 0 or not schema_file.exists():
        pytest.skip(f"this docker-compose does not ship compose_spec.json: {result.stderr.strip()}")
    return dict(json.loads(schema_file.read_text()))


@pytest.mark.parametrize("which", ["committed file", "resolved configuration"])
def test_validates_against_the_compose_specification_schema(
    which: str, docker_compose: str, resolved: dict[str, Any]
) -> None:
    schema = _compose_spec_schema(docker_compose)
    assert schema["title"] == "Compose Specification"
    document = yaml.safe_load(COMPOSE_FILE.read_text()) if which == "committed file" else resolved
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


def test_image_extends_the_pinned_airflow() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    assert f"ARG AIRFLOW_VERSION={pinned.group(1)}" in dockerfile
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python3.11" in dockerfile.replace("${PYTHON_VERSION}", "3.11")
    # The lock is a constraint: the image gets the package's declared dependencies, not the development tools.
    assert "--constraint /opt/airflow/requirements.txt" in dockerfile
    assert "-r /opt/airflow/requirements.txt" not in dockerfile and " -e " not in dockerfile
    for tool in ("pytest", "ruff", "mypy", "playwright", "pgserver"):
        assert tool not in dockerfile
