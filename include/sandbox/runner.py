"""Starting and stopping the sandbox as a subprocess (for tests, benchmarks and the demo).

Example::

    with SandboxProcess(data_dir=tmp_path / "sandbox") as sandbox:
        session = sandbox.session()
        session.get(f"{sandbox.base_url}/_sandbox/health").raise_for_status()
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from sandbox.config import DEFAULT_HOST, default_data_dir

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

INCLUDE_DIR = Path(__file__).resolve().parents[1]
_READY = re.compile(r"sandbox listening on https://\S+?:(\d+) ")


class SandboxProcess:
    """``python -m sandbox serve`` in a child process.

    :param port: TCP port; ``None`` or 0 lets the server pick a free one (read back from its output).
    :param data_dir: the data folder (default: ``SANDBOX_DATA_DIR`` or ``<repo>/.state/sandbox``).
    :param host: listen address (loopback).
    :param env: extra environment for the child, e.g. ``{"SANDBOX_LATENCY_MS": "20"}``.
    :param startup_timeout: seconds to wait for the health endpoint.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        *,
        host: str = DEFAULT_HOST,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = port or 0
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.host = host
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = self.data_dir / "sandbox.log"

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>`` (valid once started when the port was chosen by the server)."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients must verify the server against."""
        return self.data_dir / "tls" / "ca.pem"

    def session(self) -> requests.Session:
        """A requests session that trusts the sandbox CA (and ignores ``REQUESTS_CA_BUNDLE``)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_file)
        return session

    def start(self) -> SandboxProcess:
        """Spawn the server and wait until it answers its health endpoint.

        :raises RuntimeError: when the process exits or does not become healthy in time (the
            message holds the end of its log).
        """
        if self.process is not None and self.process.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(INCLUDE_DIR), env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "sandbox", "serve", "--host", self.host, "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the sandbox exited with code {self.process.returncode}:\n{self._log_tail(offset)}")
            match = _READY.search(self._log_tail(offset, limit=None))
            if match:
                self.port = int(match.group(1))
                if self._healthy():
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the sandbox did not become healthy in {self.startup_timeout} s:\n{self._log_tail(offset)}")

    def _healthy(self) -> bool:
        try:
            with self.session() as session:
                return session.get(f"{self.base_url}/_sandbox/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _log_tail(self, offset: int, limit: int | None = 4000) -> str:
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        return text if limit is None else text[-limit:]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call an admin endpoint (``/_sandbox/<path>``) and return its JSON answer.

        :raises requests.HTTPError: on an error answer.
        """
        with self.session() as session:
            response = session.request(method, f"{self.base_url}/_sandbox/{path}", json=json, timeout=600)
            response.raise_for_status()
            return response.json()

    def reset(self) -> None:
        """Wipe and reseed the data, clear faults and statistics."""
        self.admin("POST", "reset")

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault configuration (no arguments: no faults); see :class:`sandbox.faults.FaultConfig`."""
        result: dict[str, Any] = self.admin("POST", "faults", settings)
        return result

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
