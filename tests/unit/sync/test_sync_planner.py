"""The planner decides per record, from frames only (no I/O): docs/reference/dynamics-semantics.md section 1, steps
1-5."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from dynamics_jobqueue.paths import include_dir
from dynamics_jobqueue.sync.fingerprint import fingerprint_rows
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.sync.mapping import Direction, UpdateConflictResolution
from dynamics_jobqueue.sync.planner import (
    BOTH_SAME,
    MODIFIED,
    LookupResolution,
    PageInput,
    apply_lookups,
    current_values,
    hash_columns,
    mapped_values,
    plan_page,
)

MAPPINGS = load_mappings(include_dir() / "mappings")
# as a Full Synch. Review runs it: uncoupled records that match nothing are created
CUSTOMER = dataclasses.replace(MAPPINGS.get("CUSTOMER"), synch_only_coupled_records=False)
JO = "0c3f0d1e-0000-4000-8000-00000000000a"
EUR = "0c3f0d1e-0000-4000-8000-00000000000b"
T0 = pd.Timestamp("2026-11-01T10:00:00Z")
T1 = pd.Timestamp("2026-11-02T10:00:00Z")
T2 = pd.Timestamp("2026-11-03T10:00:00Z")


def erp_customers(**names: str) -> pd.DataFrame:
    rows = []
    for number, name in names.items():
        rows.append(
            {
                "id": f"e-{number}",
                "number": number.removeprefix("c"),
                "displayName": name,
                "addressLine1": "Station Road, 21",
                "addressLine2": "",
                "postalCode": "CB1 2FB",
                "city": "Cambridge",
                "country": "GB",
                "email": "robert.townes@contoso.com",
                "website": "",
                "phoneNumber": "",
                "creditLimit": 0,
                "salespersonCode": "JO",
                "currencyCode": "",
                MODIFIED: T1,
            }
        )
    return pd.DataFrame(rows).set_index("id", drop=False).rename_axis(None)


def resolved(frame: pd.DataFrame) -> pd.DataFrame:
    values = mapped_values(CUSTOMER, Direction.TO_CRM, frame)
    values, problems = apply_lookups(
        CUSTOMER, Direction.TO_CRM, values, {"ownerid": LookupResolution(found={"JO": JO})}
    )
    assert problems.empty
    return values


def page(frame: pd.DataFrame, **kwargs) -> PageInput:
    return PageInput(source=frame, values=resolved(frame), **kwargs)


def couplings(values: pd.DataFrame, source_id: str, *, synced: pd.Timestamp = T0, crm_synced=None, same=True):
    digest = fingerprint_rows(values, hash_columns(CUSTOMER, Direction.TO_CRM))[source_id] if same else "stale"
    return pd.DataFrame(
        {
            "dest_id": [f"crm-{source_id}"],
            "source_synced_at": [synced],
            "dest_synced_at": [crm_synced],
            "dest_hash": [digest],
        },
        index=[source_id],
    )


def test_mapped_values_apply_constants_transformations_and_keep_lookup_sources() -> None:
    values = mapped_values(CUSTOMER, Direction.TO_CRM, erp_customers(c10000="Adatum Corporation"))
    row = values.loc["e-c10000"]
    assert row["accountnumber"] == "10000" and row["name"] == "Adatum Corporation"
    assert row["customertypecode"] == 3
    assert row["ownerid"] == "JO" and row["transactioncurrencyid"] is None  # "" (LCY) is blank
    assert row["address1_line2"] is None and row["creditlimit"] == 0

    crm = pd.DataFrame(
        [{"accountid": "a1", "name": "N" * 150, "address1_postalcode": "cb1 2fb", "_ownerid_value": JO, MODIFIED: T1}],
        index=["a1"],
    )
    back = mapped_values(CUSTOMER, Direction.FROM_CRM, crm).loc["a1"]
    assert back["displayName"] == "N" * 100  # truncated to BC's Text[100]
    assert back["postalCode"] == "CB1 2FB"  # BC Code fields are upper case
    assert "salespersonCode" not in back.index  # salesperson flows to the CRM only


def test_blank_lookups_are_left_out_and_missing_ones_fail_or_skip_alone() -> None:
    frame = erp_customers(c10000="A", c20000="B", c30000="C")
    frame.loc["e-c20000", "salespersonCode"] = "XX"
    frame.loc["e-c30000", "salespersonCode"] = "VENDOR"
    frame.loc["e-c10000", "currencyCode"] = "EUR"
    values = mapped_values(CUSTOMER, Direction.TO_CRM, frame)
    resolutions = {
        "ownerid": LookupResolution(
            found={"JO": JO},
            out_of_scope={"VENDOR"},
            missing={"XX": "dependency not coupled: SALESPEOPLE has no coupling for salespeoplePurchasers code 'XX'"},
        ),
        "transactioncurrencyid": LookupResolution(found={"EUR": EUR}),
    }
    values, problems = apply_lookups(CUSTOMER, Direction.TO_CRM, values, resolutions)
    assert values.loc["e-c10000", "transactioncurrencyid"] == EUR and values.loc["e-c10000", "ownerid"] == JO
    assert problems.loc["e-c20000", "action"] == "fail"
    assert (
        "dependency not coupled" in problems.loc["e-c20000", "reason"] and "'XX'" in problems.loc["e-c20000", "reason"]
    )
    assert problems.loc["e-c30000", "action"] == "skip"
    assert "e-c10000" not in problems.index
    plan = plan_page(CUSTOMER, Direction.TO_CRM, PageInput(source=frame, values=values, problems=problems))
    assert plan["action"].to_dict() == {"e-c10000": "insert", "e-c20000": "fail", "e-c30000": "skip"}
    assert plan.loc["e-c20000", "kind"] == "dependency"


def test_uncoupled_records_insert_or_only_couple() -> None:
    frame = erp_customers(c10000="Adatum")
    assert plan_page(CUSTOMER, Direction.TO_CRM, page(frame)).loc["e-c10000", "action"] == "insert"
    only_coupled = dataclasses.replace(CUSTOMER, synch_only_coupled_records=True)
    assert plan_page(only_coupled, Direction.TO_CRM, page(frame)).loc["e-c10000", "action"] == "couple"


def test_unchanged_needs_no_destination_read_and_changes_update() -> None:
    frame = erp_customers(c10000="Adatum")
    values = resolved(frame)
    same = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=couplings(values, "e-c10000")))
    assert same.loc["e-c10000", "action"] == "unchanged" and same.loc["e-c10000", "dest_id"] == "crm-e-c10000"
    changed = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=couplings(values, "e-c10000", same=False)))
    assert changed.loc["e-c10000", "action"] == "update"


def test_echoes_handled_and_skipped_records() -> None:
    frame = erp_customers(c10000="A", c20000="B", c30000="C")
    values = resolved(frame)
    coupled = pd.concat(
        [
            couplings(values, "e-c10000", synced=T1, same=False),  # modified-on == last synced: our own write
            couplings(values, "e-c20000", same=False),
            couplings(values, "e-c30000", same=False),
        ]
    )
    state = pd.DataFrame({"skipped": [False, True], "handled": [True, False]}, index=["e-c20000", "e-c30000"])
    plan = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=coupled, record_state=state))
    assert plan["action"].to_dict() == {"e-c10000": "ignore", "e-c20000": "ignore", "e-c30000": "skip"}
    assert "Skipped" in plan.loc["e-c30000", "reason"]
    replay = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=coupled), ignore_echoes=False)
    assert replay.loc["e-c10000", "action"] == "update"


def crm_counterpart(values: pd.DataFrame, source_id: str, modified: pd.Timestamp, **changes) -> pd.DataFrame:
    crm = pd.DataFrame([values.loc[source_id].to_dict() | changes], index=[f"crm-{source_id}"])
    crm[MODIFIED] = modified
    return crm


@pytest.mark.parametrize(
    ("rule", "action", "consumed"),
    [
        (UpdateConflictResolution.NONE, "fail", True),
        (UpdateConflictResolution.SEND_ERP_DATA, "update", True),
        (UpdateConflictResolution.TAKE_CRM_DATA, "defer", False),
    ],
)
def test_both_sides_changed_is_an_update_conflict_resolved_per_the_mapping(rule, action, consumed) -> None:
    mapping = dataclasses.replace(CUSTOMER, resolve_update_conflicts=rule)
    frame = erp_customers(c10000="Adatum Corporation (ERP edit)")
    values = resolved(frame)
    old = couplings(values, "e-c10000", crm_synced=T0, same=False)
    counterpart = crm_counterpart(values, "e-c10000", T2, name="Adatum (CRM edit)")
    plan = plan_page(mapping, Direction.TO_CRM, page(frame, couplings=old, counterpart=counterpart))
    row = plan.loc["e-c10000"]
    assert row["action"] == action and bool(row["dest_changed"]) and bool(row["consumed"]) is consumed
    if rule is UpdateConflictResolution.NONE:
        assert row["kind"] == "conflict"
        message = row["reason"]
        assert "customers 10000" in message and "accounts crm-e-c10000" in message
        assert "name: ERP gives 'Adatum Corporation (ERP edit)', CRM has 'Adatum (CRM edit)'" in message
        assert "resolve_update_conflicts" in message


def test_both_sides_changed_conflicts_only_when_a_bidirectional_field_would_change() -> None:
    # BC (codeunit 5345, SynchRecord): the ERP raised the credit limit (a to-CRM field), the CRM user edited
    # something the ERP->CRM pass does not write: no conflict, the ERP's values are written.
    frame = erp_customers(c10000="Adatum")
    frame.loc["e-c10000", "creditLimit"] = 5000
    values = resolved(frame)
    old = couplings(values, "e-c10000", crm_synced=T0, same=False)
    counterpart = crm_counterpart(values, "e-c10000", T2, creditlimit=0)
    plan = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=old, counterpart=counterpart))
    row = plan.loc["e-c10000"]
    assert values.loc["e-c10000", "creditlimit"] == 5000 and counterpart.loc["crm-e-c10000", "creditlimit"] == 0
    assert (row["action"], bool(row["dest_changed"]), bool(row["consumed"])) == ("update", True, False)
    # The same, and the CRM also changed the city (bidirectional): a conflict with BC's message.
    counterpart = crm_counterpart(values, "e-c10000", T2, creditlimit=0, address1_city="Ely")
    plan = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=old, counterpart=counterpart))
    row = plan.loc["e-c10000"]
    assert (row["action"], row["kind"]) == ("fail", "conflict")
    assert row["reason"].startswith(
        "Cannot update a record in the accounts table. The mapping between city field on the customers table and "
        "the address1_city field on the accounts table is bi-directional, and one or both values have changed "
        "since the last synchronization. customers 10000"
    )
    differing = "address1_city: ERP gives 'Cambridge', CRM has 'Ely'; creditlimit: ERP gives 5000, CRM has 0"
    assert differing in row["reason"]


def test_both_sides_changed_to_the_same_values_is_unchanged_and_an_old_crm_version_is_no_conflict() -> None:
    frame = erp_customers(c10000="Adatum")
    values = resolved(frame)
    old = couplings(values, "e-c10000", crm_synced=T0, same=False)
    equal = plan_page(
        CUSTOMER, Direction.TO_CRM, page(frame, couplings=old, counterpart=crm_counterpart(values, "e-c10000", T2))
    )
    assert equal.loc["e-c10000", "action"] == "unchanged" and equal.loc["e-c10000", "reason"] == BOTH_SAME
    synced = couplings(values, "e-c10000", crm_synced=T2, same=False)  # that CRM version was already synced
    counterpart = crm_counterpart(values, "e-c10000", T2, name="other")
    stale = plan_page(CUSTOMER, Direction.TO_CRM, page(frame, couplings=synced, counterpart=counterpart))
    assert stale.loc["e-c10000", "action"] == "update" and not stale.loc["e-c10000", "dest_changed"]


def test_current_values_read_lookups_as_their_value_fields() -> None:
    crm = pd.DataFrame(
        [{"accountid": "a1", "name": "A", "customertypecode": 3, "_ownerid_value": JO.upper()}], index=["a1"]
    )
    now = current_values(CUSTOMER, Direction.TO_CRM, crm).loc["a1"]
    assert now["ownerid"] == JO and now["customertypecode"] == 3 and now["accountnumber"] is None
