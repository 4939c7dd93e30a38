"""Post & Print: where the posted document's PDF goes.

The reference prints the posted document on the job queue's printer after posting (docs/reference/dynamics-semantics.md
section 2, items 2 and 4). Here the destination is either a storage folder — an Airflow ``ObjectStoragePath``
(``file:///...`` by default, ``s3://...`` or any fsspec URL with its connection) — or a CUPS/IPP printer
reached with ``lp``. A print that fails or hangs never undoes the posting: the runner marks the entry Error
with "posted but not printed" and does not post again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Protocol

from airflow.sdk import ObjectStoragePath

from dynamics_jobqueue import settings
from dynamics_jobqueue.paths import state_dir


class PrintError(Exception):
    """The document could not be printed (the message says why)."""


class Printer(Protocol):
    """Sends one PDF to its destination."""

    def print_pdf(self, file_name: str, title: str, pdf: bytes, *, timeout_s: float) -> str:
        """Print ``pdf`` and return where it went (a path, URL or CUPS job id).

        :param file_name: a file-system-safe name (``sales-invoice-103001.pdf``).
        :param title: the job title (``Sales Invoice 103001``).
        :param timeout_s: give up after this many seconds.
        :raises PrintError: on any failure, including the timeout.
        """
        ...


@dataclass(frozen=True)
class FolderPrinter:
    """Writes PDFs into a folder of any Airflow object storage (local by default).

    :param folder: the folder, e.g. ``file:///var/spool/posted`` or ``s3://bucket/posted`` (created on demand).
    :param conn_id: the Airflow connection of the storage (not needed for local folders).
    """

    folder: str
    conn_id: str | None = None

    def print_pdf(self, file_name: str, title: str, pdf: bytes, *, timeout_s: float) -> str:
        base = ObjectStoragePath(self.folder, conn_id=self.conn_id)
        target = base / file_name
        try:
            base.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                out.write(pdf)
        except OSError as exc:
            raise PrintError(f"cannot write {target}: {exc}") from exc
        return str(target)


@dataclass(frozen=True)
class LpPrinter:
    """Prints through CUPS with ``lp`` (the PDF on standard input).

    :param printer: the CUPS destination (``-d``); ``None`` uses the system default printer.
    :param command: the ``lp`` executable.
    """

    printer: str | None = None
    command: str = "lp"

    def print_pdf(self, file_name: str, title: str, pdf: bytes, *, timeout_s: float) -> str:
        executable = shutil.which(self.command)
        if executable is None:
            raise PrintError(f"{self.command!r} is not installed (CUPS client)")
        args = [executable, "-t", title, *(["-d", self.printer] if self.printer else []), "-"]
        try:
            done = subprocess.run(args, input=pdf, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PrintError(f"the printer did not answer within {timeout_s:.0f} s") from exc
        if done.returncode != 0:
            raise PrintError(done.stderr.decode(errors="replace").strip() or f"lp exited with {done.returncode}")
        return done.stdout.decode(errors="replace").strip() or "printed"


def default_destination() -> str:
    """The setting ``posting_print_destination`` or the local folder ``<state dir>/printed``."""
    return settings.get("posting_print_destination") or (state_dir() / "printed").resolve().as_uri()


def printer_for(destination: str | None = None, *, conn_id: str | None = None) -> Printer:
    """The printer for a destination string.

    :param destination: ``lp`` (default CUPS printer), ``lp:<printer>``, or a folder path/URL; default
        :func:`default_destination`.
    :param conn_id: storage connection for a remote folder.
    """
    destination = destination or default_destination()
    if destination == "lp":
        return LpPrinter()
    if destination.startswith("lp:"):
        return LpPrinter(printer=destination.removeprefix("lp:"))
    if "://" not in destination:
        destination = os.path.abspath(destination)
        destination = f"file://{destination}"
    return FolderPrinter(destination, conn_id=conn_id)


def pdf_file_name(document_type: str, number: str) -> str:
    """``Sales Invoice`` + ``103001`` -> ``sales-invoice-103001.pdf`` (safe on every file system)."""
    stem = re.sub(r"[^a-z0-9]+", "-", f"{document_type} {number}".lower()).strip("-")
    return f"{stem}.pdf"
