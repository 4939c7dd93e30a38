"""Command line: ``python -m sandbox serve|reset`` (see README.md)."""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from pathlib import Path

from sandbox.config import DEFAULT_HOST, default_data_dir, default_port


def _serve(host: str, port: int, data_dir: Path) -> None:
    import uvicorn

    from sandbox.app import Sandbox, create_app
    from sandbox.tls import ensure_tls

    tls = ensure_tls(data_dir)
    sandbox = Sandbox.open(data_dir)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.should_exit:
                return
            bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
            # The line tests and scripts wait for; flushed because stdout is usually a pipe or file.
            print(f"sandbox listening on https://{host}:{bound} (CA: {tls.ca})", flush=True)

    config = uvicorn.Config(
        create_app(sandbox),
        host=host,
        port=port,
        ssl_certfile=str(tls.cert_chain),
        ssl_keyfile=str(tls.key),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        # Idle keep-alive TLS connections would otherwise hold up shutdown until their peers go away.
        timeout_graceful_shutdown=1,
    )
    # Business Central's webhook notifications go out from a thread of their own (sandbox/webhooks.py).
    sandbox.bc.webhooks.start()
    # Dataverse's asynchronous service runs the webhook steps' system jobs (sandbox/dataverse_webhooks.py).
    sandbox.dataverse.webhooks.start()
    try:
        _Server(config).run()
    finally:
        sandbox.dataverse.webhooks.stop()
        sandbox.bc.webhooks.stop()


def _reset(data_dir: Path) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    print(f"sandbox data removed: {data_dir} (the next start reseeds it)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the sandbox in the foreground")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=None, help="default: SANDBOX_PORT or 8765; 0 picks a free port")
    serve.add_argument("--data-dir", type=Path, default=None, help="default: SANDBOX_DATA_DIR or <repo>/.state/sandbox")
    reset = commands.add_parser("reset", help="wipe the data folder (the next start reseeds)")
    reset.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).resolve()
    if args.command == "serve":
        _serve(args.host, default_port() if args.port is None else args.port, data_dir)
    else:
        _reset(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
