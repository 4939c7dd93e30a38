"""Checks of the console's inputs against the loaded table mappings and both systems, before anything is written.

Couple names a mapping of the mappings folder (the same :func:`~dynamics_jobqueue.sync.loader.load_mappings` the
``crm_sync`` DAG runs) and two record ids that must exist: the ERP record in the mapping's Business Central
entity set (``GET companies(..)/<set>(<id>)``), the CRM record in its Dataverse table; the coupling keeps both
business keys, as a run's coupling does, so lookups and the console's search find it. Remap picks a CRM user
from Dataverse's ``systemusers`` (a disabled or unknown user is refused). The hooks use their default
connections (``business_central_default``, ``dataverse_default``), as the DAGs do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import ApiError, NotFoundError
from dynamics_jobqueue.hooks.microsoft import and_filters, odata_literal
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.sync.mapping import MappingError, TableMapping


class InvalidInputError(ValueError):
    """The request names something that does not exist (unknown mapping, not a GUID): HTTP 422."""


class RecordNotFoundError(LookupError):
    """A record the request names is not in its system: HTTP 404."""


class SystemUnavailableError(RuntimeError):
    """Business Central or Dataverse did not answer the check: HTTP 502."""


def mapping_names() -> list[str]:
    """The names of the loaded table mappings, in run order (empty when the folder does not load)."""
    try:
        return load_mappings().names
    except (MappingError, OSError):
        return []


def mapping(name: str) -> TableMapping:
    """The loaded mapping called ``name``. :raises InvalidInputError: when there is none."""
    try:
        return load_mappings().get(name)
    except KeyError as exc:
        raise InvalidInputError(str(exc.args[0])) from exc


def _guid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not a GUID: {value!r}") from exc


@dataclass(frozen=True)
class CouplePair:
    """A checked pair: both ids (lower-case GUIDs) and both business keys (``None`` when the table has none)."""

    mapping: str
    erp_id: str
    crm_id: str
    erp_key: str | None
    crm_key: str | None


def _read(what: str, read: Any) -> dict[str, Any]:
    try:
        return dict(read())
    except NotFoundError as exc:
        raise RecordNotFoundError(f"{what} does not exist.") from exc
    except ApiError as exc:
        raise SystemUnavailableError(f"{what} could not be checked: {exc}") from exc


def check_couple(mapping_name: str, erp_id: str, crm_id: str) -> CouplePair:
    """Check a Couple request against the mapping and both systems.

    :raises InvalidInputError: unknown mapping, an id that is not a GUID.
    :raises RecordNotFoundError: the ERP or the CRM record does not exist.
    :raises SystemUnavailableError: a system did not answer.
    """
    table = mapping(mapping_name)
    erp_id, crm_id = _guid(erp_id, "The ERP record id"), _guid(crm_id, "The CRM record id")
    erp_hook, crm_hook = BusinessCentralHook(), DataverseHook()
    erp = _read(f"ERP record {erp_id} of {table.erp.entity_set}", lambda: erp_hook.get(table.erp.entity_set, erp_id))
    select = [table.crm.id_field, *([table.crm.key] if table.crm.key else [])]
    crm = _read(
        f"CRM record {crm_id} of {table.crm.entity_set}",
        lambda: crm_hook.get(table.crm.entity_set, crm_id, select=select),
    )

    def key(record: dict[str, Any], field: str | None) -> str | None:
        value = record.get(field) if field else None
        return None if value in (None, "") else str(value)

    return CouplePair(table.name, erp_id, crm_id, key(erp, table.erp.key), key(crm, table.crm.key))


#: What the picker shows of a CRM user.
USER_FIELDS = ["systemuserid", "fullname", "internalemailaddress"]


def crm_users(search: str | None, limit: int = 20) -> list[dict[str, Any]]:
    """Enabled CRM users whose name or email contains ``search``, by name (at most ``limit``).

    :raises SystemUnavailableError: when Dataverse does not answer.
    """
    text = (search or "").strip()
    matching = (
        f"(contains(fullname,{odata_literal(text)}) or contains(internalemailaddress,{odata_literal(text)}))"
        if text
        else None
    )
    try:
        pages = DataverseHook().query(
            "systemusers",
            filter=and_filters("isdisabled eq false", matching),
            select=USER_FIELDS,
            orderby="fullname asc",
            top=limit,
        )
        return [{name: row.get(name) for name in USER_FIELDS} for page in pages for row in page.records][:limit]
    except ApiError as exc:
        raise SystemUnavailableError(f"Dataverse could not list the CRM users: {exc}") from exc


def check_crm_user(crm_user_id: uuid.UUID) -> dict[str, Any]:
    """The enabled CRM user with this id.

    :raises InvalidInputError: when it is not a CRM user or is disabled.
    :raises SystemUnavailableError: when Dataverse does not answer.
    """
    try:
        user = DataverseHook().get("systemusers", str(crm_user_id), select=[*USER_FIELDS, "isdisabled"])
    except NotFoundError as exc:
        raise InvalidInputError(f"{crm_user_id} is not a CRM user.") from exc
    except ApiError as exc:
        raise SystemUnavailableError(f"Dataverse could not check CRM user {crm_user_id}: {exc}") from exc
    if user.get("isdisabled"):
        raise InvalidInputError(f"CRM user {user.get('fullname') or crm_user_id} is disabled.")
    return {name: user.get(name) for name in USER_FIELDS}
