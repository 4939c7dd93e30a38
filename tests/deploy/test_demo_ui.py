"""``make demo-ui`` on a busy port: a clear refusal naming the port and the way out, before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_busy_port_is_refused_with_the_way_out(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(REPO / "include" / "scripts" / "demo_ui.py")],
            env={**os.environ, "AIRFLOW_UI_PORT": str(port), "DYNAMICS_DEMO_DIR": str(tmp_path / "demo")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode != 0
    assert f"port {port} is busy" in result.stderr and "AIRFLOW_UI_PORT=0" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "demo").exists()  # nothing started, nothing written
