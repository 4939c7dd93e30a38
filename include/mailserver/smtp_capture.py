"""A real SMTP server (aiosmtpd) that keeps every message it accepts as a file.

Run as ``python -m mailserver.smtp_capture --port P --dir D``. Each accepted message becomes ``D/NNNNNNNN.eml``
(the bytes as received) plus ``D/NNNNNNNN.json`` (envelope sender, recipients, time of receipt in UTC), written
atomically, so a test or the demo can count exactly how many times a message reached the server. It prints
``smtp listening on 127.0.0.1:P`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class CaptureHandler:
    """aiosmtpd handler: store every message in ``folder`` and answer 250."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = [int(p.stem) for p in self.folder.glob("*.eml") if p.stem.isdigit()]
        self._numbers = itertools.count(max(existing, default=0) + 1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            number = next(self._numbers)
        stem = self.folder / f"{number:08d}"
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "received_at": datetime.now(UTC).isoformat(),
            "peer": str(session.peer),
        }
        _write_atomic(stem.with_suffix(".eml"), envelope.original_content or envelope.content)
        _write_atomic(stem.with_suffix(".json"), json.dumps(meta).encode())
        return "250 Message accepted for delivery"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="folder that receives the messages")
    args = parser.parse_args(argv)
    controller = Controller(
        CaptureHandler(args.dir), hostname=args.host, port=args.port, decode_data=False, data_size_limit=0
    )
    controller.start()
    print(f"smtp listening on {args.host}:{args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
