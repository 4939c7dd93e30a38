"""The sandbox's TLS material: a local CA and a server certificate for 127.0.0.1 and localhost.

``SANDBOX_TLS_HOSTNAMES`` (comma-separated) adds names to the certificate, e.g. ``sandbox`` for the compose
profile, where the Airflow containers reach it as ``https://sandbox:8765``. The certificate is made on the first
start only: reset the data folder after changing the names.

msal accepts only ``https://`` authorities, so the token endpoint (and, for symmetry, both APIs) is
served over TLS. Clients verify the server against ``<data dir>/tls/ca.pem``; verification stays on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trustme

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert_chain: Path
    key: Path


def ensure_tls(data_dir: Path) -> TlsFiles:
    """Create the CA and server certificate on first start; reuse them afterwards."""
    folder = data_dir / "tls"
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if files.ca.exists() and files.cert_chain.exists() and files.key.exists():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Dynamics job queue sandbox")
    extra = [name.strip() for name in os.environ.get("SANDBOX_TLS_HOSTNAMES", "").split(",") if name.strip()]
    server = ca.issue_cert("127.0.0.1", "localhost", "::1", *extra)
    files.key.write_bytes(server.private_key_pem.bytes())
    files.key.chmod(0o600)
    files.cert_chain.write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
    # Written last: its presence means the set is complete.
    files.ca.write_bytes(ca.cert_pem.bytes())
    return files
