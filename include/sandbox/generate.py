"""Bulk synthetic data for benchmarks: CRONUS-shaped Business Central customers.

Rows are written with ``executemany`` in chunks, bypassing the per-record API rules (no company
contacts are created), so a million customers take well under a minute.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sandbox.api import timestamp
from sandbox.business_central import stable_id
from sandbox.schema import BC_SETS, EMPTY_GUID

if TYPE_CHECKING:
    from sandbox.store import Store

CHUNK = 20_000

#: Addresses of the five CRONUS customers, cycled through by the synthetic ones.
_ADDRESSES = (
    ("Station Road, 21", "", "Cambridge", "", "GB", "CB1 2FB"),
    ("Southwark Bridge Rd, 91-95", "", "London", "", "GB", "SE1 0AX"),
    ("10 High Tower Green", "", "Miami", "FL", "US", "US-FL 37125"),
    ("Walter-Gropius-Strasse 5", "Park Stadt Schwabing", "Munchen", "", "DE", "DE-80807"),
    ("Occam Court, 1", "Surrey", "Guildford", "", "GB", "GU2 7YQ"),
)


def generate_customers(store: Store, count: int, prefix: str) -> dict[str, Any]:
    """Insert ``count`` customers numbered ``<prefix>0000001..`` (continuing after existing ones).

    :param count: number of customers, at least 1.
    :param prefix: number prefix, e.g. ``"S"``; upper-cased like a BC Code field.
    :returns: ``{"entity", "created", "first", "last"}``.
    :raises ValueError: for a count below 1 or a prefix longer than 10 characters.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    prefix = prefix.upper()
    if len(prefix) > 10:
        raise ValueError("prefix must have at most 10 characters")
    entity = BC_SETS["customers"]
    last = (
        store.read()
        .execute(
            f'SELECT bkey FROM "{entity.table}" WHERE bkey LIKE ? ORDER BY bkey DESC LIMIT 1',
            (prefix.replace("%", "") + "%",),
        )
        .fetchone()
    )
    tail = last[0][len(prefix) :] if last else ""
    start = int(tail) + 1 if tail.isdigit() else 1
    width = max(7, len(str(start + count)))
    template: dict[str, Any] = {name: spec.default for name, spec in entity.fields.items()}
    template.update(
        {
            "type": "Company",
            "salespersonCode": "JO",
            "paymentTermsCode": "14 DAYS",
            "paymentTermsId": stable_id("paymentTerms", "14 DAYS"),
            "currencyId": EMPTY_GUID,
        }
    )
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        with store.transaction() as db:
            version = store.next_version(db, size)
            modified = timestamp()
            rows = []
            for i in range(size):
                n = start + done + i
                number = f"{prefix}{n:0{width}d}"
                line1, line2, city, state, country, postal = _ADDRESSES[n % len(_ADDRESSES)]
                rid = str(uuid.uuid4())
                body = dict(template)
                body.update(
                    id=rid,
                    number=number,
                    displayName=f"Synthetic Customer {number}",
                    addressLine1=line1,
                    addressLine2=line2,
                    city=city,
                    state=state,
                    country=country,
                    postalCode=postal,
                    email=f"{number.lower()}@synthetic.example",
                    lastModifiedDateTime=modified,
                )
                rows.append((rid, number, version + i, modified, dumps(body)))
            store.insert_many(db, entity, rows)
        done += size
    store.checkpoint()
    return {
        "entity": "customers",
        "created": count,
        "first": f"{prefix}{start:0{width}d}",
        "last": f"{prefix}{start + count - 1:0{width}d}",
    }
