"""The webhook receiver app (Business Central and Dataverse routes) in uvicorn on a loopback port, for the webhook
tests.

A recorder stands in for Airflow's asset manager: ``events`` are the asset events the receiver recorded, and
``fail`` makes the next N recordings fail as when the metadata database is down (the receiver answers 503)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from dynamics_jobqueue.webhooks.receiver import create_webhook_app


class Receiver:
    """The receiver app on ``http://127.0.0.1:<port>/business-central`` (``url``) and ``.../dataverse``
    (``dataverse_url``); a free port unless ``port`` is given."""

    def __init__(self, store: Any, port: int | None = None) -> None:
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}/business-central"
        self.dataverse_url = f"http://127.0.0.1:{self.port}/dataverse"
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fail = 0

        def record(name: str, uri: str, extra: dict[str, Any]) -> None:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("metadata database unavailable")
            self.events.append((name, extra))

        self.app = create_webhook_app(store=lambda: store, record=record)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started

    def stop(self) -> None:
        """Stop the server; a no-op when it is not running."""
        if self.server is None or self.thread is None:
            return
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()
        self.server = None

    def wait(self, count: int, timeout: float = 20) -> list[tuple[str, dict[str, Any]]]:
        """All events recorded so far, once there are ``count`` of them or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.events

    def take(self, count: int, timeout: float = 20, quiet_s: float = 2.5) -> list[tuple[str, dict[str, Any]]]:
        """Wait for ``count`` events, then ``quiet_s`` more for any extra one; return and forget them all."""
        self.wait(count, timeout)
        time.sleep(quiet_s)
        taken, self.events = self.events, []
        return taken
