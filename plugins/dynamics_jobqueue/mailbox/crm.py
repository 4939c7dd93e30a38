"""The CRM side of mailbox synchronization: Dataverse ``emails`` activities and the records they point at.

- :func:`activity_id_for` derives the email activity's GUID from the Message-ID, so creating it with
  ``If-None-Match: *`` is idempotent across reruns, UIDVALIDITY changes, replays and mailboxes (the same
  message delivered to two tracked users is one activity, as in the reference).
- :class:`PartyResolver` resolves addresses to contacts, accounts and system users (one query per set for
  all addresses of a message; the CRM matches email addresses case-insensitively).
- :func:`find_tracked` finds the tracked emails a message replies to (by Message-ID or tracking token).

Dataverse codes used (email entity reference): ``statecode`` 0 Open, 1 Completed; ``statuscode`` 3 Sent,
4 Received, 6 Pending Send; ``directioncode`` true = outgoing; activity party ``participationtypemask``
1 Sender, 2 To, 3 Cc.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.batch import BatchOperation
from dynamics_jobqueue.hooks.dataverse import (
    ACTIVITY_PARTY,
    EMAIL_REGARDING,
    LOOKUP_LOGICAL_NAME,
    bind,
    upsert_operation,
)
from dynamics_jobqueue.hooks.errors import ConflictError
from dynamics_jobqueue.hooks.microsoft import and_filters, eq_filter, in_filter

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.mailbox.message import Attachment, ParsedMessage

log = logging.getLogger(__name__)

#: Largest attachment stored in the CRM: Dataverse's default maximum file size for attachments (5,120 KB,
#: "Set file size limit for attachments", Power Platform admin, email settings).
MAX_ATTACHMENT_BYTES = 5_120 * 1024

STATUS_SENT = 3
STATUS_RECEIVED = 4
STATUS_PENDING_SEND = 6
STATE_COMPLETED = 1
SENDER, TO, CC = 1, 2, 3

# Fixed namespace: the same Message-ID yields the same activity id in every installation.
_ACTIVITY_NS = uuid.UUID("6f1d3c2e-5a7b-4c8d-9e0f-1a2b3c4d5e6f")

#: Email-enabled tables searched for an address, in the order a match is preferred, with their address column.
PARTY_SETS: tuple[tuple[str, str, str], ...] = (
    ("contacts", "contactid", "emailaddress1"),
    ("accounts", "accountid", "emailaddress1"),
    ("systemusers", "systemuserid", "internalemailaddress"),
)
_SET_OF = {"contact": "contacts", "account": "accounts", "systemuser": "systemusers"}


def activity_id_for(message_id: str) -> str:
    """The email activity GUID of a Message-ID (UUID v5, case-insensitive on the id)."""
    return str(uuid.uuid5(_ACTIVITY_NS, message_id.strip().lower()))


@dataclass(frozen=True)
class Party:
    """A resolved address: the entity set and id of the CRM record (``None`` when unresolved)."""

    address: str
    entity_set: str | None = None
    record_id: str | None = None

    @property
    def resolved(self) -> bool:
        return self.record_id is not None

    @property
    def regarding_candidate(self) -> bool:
        """Contacts and accounts can be the regarding record of an email; users cannot."""
        return self.entity_set in ("contacts", "accounts")


class PartyResolver:
    """Resolve email addresses to CRM records, caching answers for the life of the resolver (one cycle)."""

    def __init__(self, dataverse: DataverseHook) -> None:
        self.dataverse = dataverse
        self._cache: dict[str, Party] = {}

    def resolve(self, addresses: Iterable[str]) -> dict[str, Party]:
        """Map each address (lower-case) to its :class:`Party`; unknown addresses stay unresolved."""
        wanted = [a.lower() for a in dict.fromkeys(addresses) if a]
        missing = [a for a in wanted if a not in self._cache]
        found: dict[str, Party] = {}
        for entity_set, key, column in PARTY_SETS:
            todo = [a for a in missing if a not in found]
            for start in range(0, len(todo), 50):
                chunk = todo[start : start + 50]
                for page in self.dataverse.iter_pages(
                    entity_set, filter=in_filter(column, chunk), select=[key, column]
                ):
                    for row in page:
                        address = str(row.get(column) or "").lower()
                        if address in chunk and address not in found:
                            found[address] = Party(address, entity_set, str(row[key]))
        for address in missing:
            self._cache[address] = found.get(address, Party(address))
        return {a: self._cache[a] for a in wanted}


@dataclass(frozen=True)
class TrackedEmail:
    """A tracked email found by correlation: its id and its regarding record (entity set, id) if any."""

    activity_id: str
    regarding_set: str | None
    regarding_id: str | None


def find_tracked(dataverse: DataverseHook, message_ids: Sequence[str], token: str | None) -> TrackedEmail | None:
    """The tracked email a message belongs to: by Message-ID (``In-Reply-To`` first, then ``References``),
    then by tracking token; ``None`` when the message is not part of a tracked conversation."""
    candidates: list[tuple[str, str]] = [("messageid", mid) for mid in message_ids]
    if token:
        candidates.append(("trackingtoken", token))
    if not candidates:
        return None
    terms = " or ".join(eq_filter(col, val) for col, val in candidates[:40])
    # the lookup annotation names the regarding record's table (Web API "lookuplogicalname" annotation)
    page = next(
        dataverse.query(
            "emails",
            filter=terms,
            select=["activityid", "messageid", "trackingtoken", "_regardingobjectid_value"],
            top=50,
            annotations=[LOOKUP_LOGICAL_NAME],
        ),
        None,
    )
    rows = page.records if page else []
    for column, value in candidates:
        for row in rows:
            if str(row.get(column) or "").lower() == value.lower():
                regarding_id = row.get("_regardingobjectid_value")
                logical = row.get(f"_regardingobjectid_value@{LOOKUP_LOGICAL_NAME}")
                return TrackedEmail(
                    str(row["activityid"]),
                    _SET_OF.get(str(logical)) if regarding_id else None,
                    str(regarding_id) if regarding_id else None,
                )
    return None


def track_email(
    dataverse: DataverseHook,
    message: ParsedMessage,
    *,
    owner_id: str | None,
    parties: dict[str, Party],
    regarding: tuple[str, str] | None,
) -> tuple[str, bool]:
    """Create the email activity of an incoming message, with its activity parties, in one change set.

    :param owner_id: ``systemuserid`` of the mailbox's user (the activity's owner).
    :param parties: resolved sender and recipients (from :class:`PartyResolver`).
    :param regarding: ``(entity_set, id)`` of the regarding record, or ``None``.
    :return: ``(activity id, created)``; ``created`` is false when the activity already existed (dedupe).
    :raises ApiError: when Dataverse refuses the email for another reason.
    """
    activity_id = activity_id_for(message.message_id)
    content = message.content()
    body: dict[str, Any] = {
        "subject": message.subject[:400],
        "description": content.text,
        "sender": message.sender,
        "torecipients": ";".join(message.to)[:500],
        "ccrecipients": ";".join(message.cc)[:500],
        "messageid": message.message_id,
        "inreplyto": message.in_reply_to,
        "trackingtoken": message.tracking_token,
        "directioncode": False,
        "statecode": STATE_COMPLETED,
        "statuscode": STATUS_RECEIVED,
        "actualend": message.date.strftime("%Y-%m-%dT%H:%M:%SZ") if message.date else None,
    }
    if owner_id:
        body.update(bind("ownerid", "systemusers", owner_id))
    if regarding:
        entity_set, record_id = regarding
        body.update(bind(EMAIL_REGARDING[entity_set], entity_set, record_id))
    ops = [upsert_operation("email", "emails", activity_id, body, mode="create")]
    roles = [(SENDER, message.sender)] + [(TO, a) for a in message.to] + [(CC, a) for a in message.cc]
    for mask, address in roles:
        party = parties.get(address.lower(), Party(address.lower()))
        party_id = uuid.uuid5(uuid.UUID(activity_id), f"{mask}:{party.address}")
        party_body: dict[str, Any] = {
            "participationtypemask": mask,
            "addressused": party.address,
            **bind("activityid_email", "emails", activity_id),
        }
        if party.resolved and party.entity_set and party.record_id:
            party_body.update(bind(ACTIVITY_PARTY[party.entity_set], party.entity_set, party.record_id))
        ops.append(
            upsert_operation(
                f"party-{mask}-{party.address}", "activityparties", str(party_id), party_body, mode="create"
            )
        )
    ops += attachment_operations(activity_id, content.files)
    results = dataverse.batch(ops, atomic=True, continue_on_error=False)
    first = results[0]
    if first.ok:
        return activity_id, True
    error = first.error
    if isinstance(error, ConflictError) or first.status == 412:
        return activity_id, False
    failed = next((r for r in results if not r.ok and r.status != 424), first)
    raise failed.error or RuntimeError(f"Dataverse refused email {message.message_id}")


def attachment_operations(activity_id: str, files: Sequence[Attachment]) -> list[BatchOperation]:
    """The ``activitymimeattachment`` records of an email's attachments, as server-side synchronization stores
    them: ``body`` Base64, ``filename``, ``mimetype``, ``attachmentnumber``, bound to the email through
    ``objectid_email`` (activitymimeattachment EntityType, Dataverse Web API reference). Ids derive from the
    activity id and the attachment's position, so a rerun creates nothing twice. Files over
    :data:`MAX_ATTACHMENT_BYTES` are left out (Dataverse refuses them; the message stays on the mail server).
    """
    ops = []
    for number, attachment in enumerate(files, start=1):
        if len(attachment.data) > MAX_ATTACHMENT_BYTES:
            log.warning(
                "Email %s: attachment %r (%d bytes) is over the CRM's attachment size limit and is not stored",
                activity_id,
                attachment.filename,
                len(attachment.data),
            )
            continue
        record_id = uuid.uuid5(uuid.UUID(activity_id), f"attachment:{number}")
        ops.append(
            upsert_operation(
                f"attachment-{number}",
                "activitymimeattachments",
                str(record_id),
                {
                    "filename": attachment.filename[:255],
                    "mimetype": attachment.mimetype[:256],
                    "body": base64.b64encode(attachment.data).decode("ascii"),
                    "attachmentnumber": number,
                    "objecttypecode": "email",
                    **bind("objectid_email", "emails", activity_id),
                },
                mode="create",
            )
        )
    return ops


def pending_send(dataverse: DataverseHook, owner_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Emails in Pending Send owned by any of ``owner_ids`` (one query per 50 owners)."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(owner_ids), 50):
        owners = in_filter("_ownerid_value", owner_ids[start : start + 50])
        for page in dataverse.iter_pages(
            "emails",
            filter=and_filters(eq_filter("statuscode", STATUS_PENDING_SEND), eq_filter("directioncode", True), owners),
            select=[
                "activityid",
                "subject",
                "description",
                "torecipients",
                "ccrecipients",
                "trackingtoken",
                "messageid",
                "inreplyto",
                "_ownerid_value",
                "_regardingobjectid_value",
            ],
        ):
            rows.extend(page)
    return rows


def mark_sent(dataverse: DataverseHook, activity_id: str, message_id: str, tracking_token: str, sent_on: str) -> None:
    """Mark a sent email Sent/Completed with the Message-ID and tracking token it went out with.

    :param sent_on: UTC time of the SMTP acceptance, ISO 8601 with ``Z``.
    :raises NotFoundError: when the email was deleted in the meantime.
    """
    dataverse.upsert(
        "emails",
        activity_id,
        {
            "statuscode": STATUS_SENT,
            "statecode": STATE_COMPLETED,
            "messageid": message_id,
            "trackingtoken": tracking_token,
            "senton": sent_on,
            "actualend": sent_on,
        },
        mode="update",
    )


def user_addresses(dataverse: DataverseHook, user_ids: Sequence[str]) -> dict[str, str]:
    """``systemuserid`` -> ``internalemailaddress`` of the given users."""
    if not user_ids:
        return {}
    found: dict[str, str] = {}
    for page in dataverse.iter_pages(
        "systemusers", filter=in_filter("systemuserid", user_ids), select=["systemuserid", "internalemailaddress"]
    ):
        for row in page:
            found[str(row["systemuserid"])] = str(row.get("internalemailaddress") or "")
    return found
