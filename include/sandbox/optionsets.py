"""Dataverse choice (option set) columns whose options a client can read and add: the account's payment terms,
freight terms and shipping method, which Business Central's PAYMENT TERMS, SHIPMENT METHOD and SHIPPING AGENT
mappings fill with its codes (codeunit 7204 "CDS Setup Defaults", codeunit "Int. Option Synch. Invoke").

The Web API calls, as documented in "Insert, update, delete, and order global option sets" and "Query table
definitions using the Web API" (learn.microsoft.com/power-apps/developer/data-platform/webapi/):

- ``GET EntityDefinitions(LogicalName='account')/Attributes(LogicalName='paymenttermscode')/``
  ``Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)``
  answers the column with its ``OptionSet.Options`` (``Value`` and ``Label.LocalizedLabels``);
- ``POST InsertOptionValue`` with ``EntityLogicalName``, ``AttributeLogicalName`` and ``Label`` adds an option
  and answers ``NewOptionValue``: the publisher's option value prefix times 10,000 plus a sequence (the default
  publisher's prefix 10000 gives 100000000, 100000001, ...);
- ``POST UpdateOptionValue`` with ``Value`` and ``Label`` (``MergeLabels``) relabels one (204).

Rows of the column then accept exactly these values (:meth:`OptionSets.check`); anything else is refused with
Dataverse's "outside the valid range" error, as the service refuses it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sandbox.api import ApiError

if TYPE_CHECKING:
    import sqlite3

    from sandbox.store import Store

#: The options a new organisation has (the account table's column reference, "Choices/Options").
STANDARD: dict[tuple[str, str], dict[int, str]] = {
    ("account", "paymenttermscode"): {1: "Net 30", 2: "2% 10, Net 30", 3: "Net 45", 4: "Net 60"},
    ("account", "address1_freighttermscode"): {1: "FOB", 2: "No Charge"},
    ("account", "address1_shippingmethodcode"): {
        1: "Airborne",
        2: "DHL",
        3: "FedEx",
        4: "UPS",
        5: "Postal Mail",
        6: "Full Load",
        7: "Will Call",
    },
}
#: The default publisher's Customization Option Value Prefix: added options are numbered from prefix * 10,000.
OPTION_VALUE_PREFIX = 10_000
LANGUAGE = 1033
BAD_REQUEST = "0x80048d19"
OUT_OF_RANGE = "0x8004431a"

ATTRIBUTE_PATH = re.compile(
    r"^EntityDefinitions\(LogicalName='(?P<entity>\w+)'\)/Attributes\(LogicalName='(?P<attribute>\w+)'\)"
    r"(?:/Microsoft\.Dynamics\.CRM\.PicklistAttributeMetadata)?$"
)


def create_schema(db: sqlite3.Connection) -> None:
    """The option table, with the standard options of every column in :data:`STANDARD`."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS option_values (entity TEXT NOT NULL, attribute TEXT NOT NULL,"
        " value INTEGER NOT NULL, label TEXT NOT NULL, PRIMARY KEY (entity, attribute, value))"
    )
    db.executemany(
        "INSERT OR IGNORE INTO option_values VALUES (?, ?, ?, ?)",
        [(e, a, value, label) for (e, a), options in STANDARD.items() for value, label in options.items()],
    )


def _label(body: dict[str, Any], what: str) -> str:
    labels = (body.get("Label") or {}).get("LocalizedLabels") or []
    texts = [str(item.get("Label") or "") for item in labels if isinstance(item, dict)]
    if not texts or not texts[0].strip():
        raise ApiError(400, BAD_REQUEST, f"{what}: Label.LocalizedLabels must hold a label.")
    return texts[0]


class OptionSets:
    """The choice columns of the sandbox organisation, stored in the sandbox database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def options(self, entity: str, attribute: str) -> dict[int, str] | None:
        """``value -> label`` of a column, or ``None`` when the column is not a choice column here."""
        if (entity, attribute) not in STANDARD:
            return None
        rows = self.store.read().execute(
            "SELECT value, label FROM option_values WHERE entity = ? AND attribute = ? ORDER BY value",
            (entity, attribute),
        )
        return {int(value): str(label) for value, label in rows}

    def check(self, entity: str, attribute: str, value: Any) -> None:
        """Refuse a row value outside the column's options, with Dataverse's message."""
        options = self.options(entity, attribute)
        if options is None or value is None or value in options:
            return
        # Dataverse's message, e.g. "A validation error occurred. The value 5 of 'msdyn_paymentterms' on record of
        # type 'msdyn_projectcontractsplitbillingrule' is outside the valid range. Accepted Values: 1,2,3,192350001".
        raise ApiError(
            400,
            OUT_OF_RANGE,
            f"A validation error occurred. The value {value} of '{attribute}' on record of type '{entity}' is "
            f"outside the valid range. Accepted Values: {','.join(str(v) for v in options)}",
        )

    def attribute(self, root: str, entity: str, attribute: str) -> dict[str, Any]:
        """The ``PicklistAttributeMetadata`` answer of one column."""
        options = self.options(entity, attribute)
        if options is None:
            raise ApiError(
                404, "0x80040217", f"Could not find attribute with LogicalName = '{attribute}' on '{entity}'."
            )
        return {
            "@odata.context": f"{root}$metadata#EntityDefinitions('{entity}')/Attributes/"
            "Microsoft.Dynamics.CRM.PicklistAttributeMetadata(LogicalName,OptionSet(Options))/$entity",
            "LogicalName": attribute,
            "OptionSet": {
                "Options": [
                    {
                        "Value": value,
                        "Label": {
                            "LocalizedLabels": [{"Label": label, "LanguageCode": LANGUAGE}],
                            "UserLocalizedLabel": {"Label": label, "LanguageCode": LANGUAGE},
                        },
                    }
                    for value, label in options.items()
                ]
            },
        }

    def _target(self, body: dict[str, Any], action: str) -> tuple[str, str]:
        entity = str(body.get("EntityLogicalName") or "")
        attribute = str(body.get("AttributeLogicalName") or "")
        if self.options(entity, attribute) is None:
            raise ApiError(
                400, BAD_REQUEST, f"{action}: '{entity}.{attribute}' is not a choice column of this organization."
            )
        return entity, attribute

    def insert(self, body: dict[str, Any]) -> int:
        """``InsertOptionValue``: add an option; return its value."""
        entity, attribute = self._target(body, "InsertOptionValue")
        label = _label(body, "InsertOptionValue")
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT max(value) FROM option_values WHERE entity = ? AND attribute = ? AND value >= ?",
                (entity, attribute, OPTION_VALUE_PREFIX * 10_000),
            ).fetchone()
            value = OPTION_VALUE_PREFIX * 10_000 if row[0] is None else int(row[0]) + 1
            db.execute("INSERT INTO option_values VALUES (?, ?, ?, ?)", (entity, attribute, value, label))
        return value

    def update(self, body: dict[str, Any]) -> None:
        """``UpdateOptionValue``: relabel an option."""
        entity, attribute = self._target(body, "UpdateOptionValue")
        label = _label(body, "UpdateOptionValue")
        value = body.get("Value")
        with self.store.transaction() as db:
            changed = db.execute(
                "UPDATE option_values SET label = ? WHERE entity = ? AND attribute = ? AND value = ?",
                (label, entity, attribute, value),
            ).rowcount
        if not changed:
            raise ApiError(
                400, BAD_REQUEST, f"UpdateOptionValue: '{entity}.{attribute}' has no option with value {value}."
            )
