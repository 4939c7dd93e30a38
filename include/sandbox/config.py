"""Where the sandbox listens and keeps its data (command line, then environment, then defaults)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"


def default_port() -> int:
    """``SANDBOX_PORT`` or 8765."""
    return int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT))


def default_data_dir() -> Path:
    """``SANDBOX_DATA_DIR`` or ``<repo>/.state/sandbox``."""
    value = os.environ.get("SANDBOX_DATA_DIR")
    return Path(value) if value else REPO_ROOT / ".state" / "sandbox"
