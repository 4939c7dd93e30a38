"""A table mapping's names checked against the services' ``$metadata`` before a run reads or writes anything.

A misspelt field or entity set would otherwise fail only mid-run, as an HTTP 400 for every record. Both services
publish their schema as an OData CSDL document at ``<api root>$metadata`` (Business Central per API route:
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/webservices/return-metadata ; Dataverse:
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-service-documents).

The check runs when it can find something new (:func:`check_unless_passed`): the state store keeps each mapping's
last passed check (``dynamics.sync_metadata_check``), and a task skips the download while the same definition
passed against the same services within ``metadata_check_max_age_h`` hours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from dynamics_jobqueue.sync import queries as q
from dynamics_jobqueue.sync.mapping import MappingError, TableMapping, Via

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook

_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"

#: entity set -> its properties and navigation properties
ServiceSchema = dict[str, frozenset[str]]


def parse_csdl(document: bytes) -> ServiceSchema:
    """The entity sets of a CSDL document and the property names of each (properties and navigation properties).

    :raises ValueError: when the document is not CSDL XML.
    """
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as exc:
        raise ValueError(f"$metadata is not CSDL XML: {exc}") from None
    types: dict[str, frozenset[str]] = {}
    for schema in root.iter(f"{_EDM}Schema"):
        namespace = schema.get("Namespace", "")
        for entity_type in schema.iter(f"{_EDM}EntityType"):
            names = {
                p.get("Name", "")
                for tag in ("Property", "NavigationProperty")
                for p in entity_type.iter(f"{_EDM}{tag}")
            }
            types[f"{namespace}.{entity_type.get('Name')}"] = frozenset(names)
    return {
        entity_set.get("Name", ""): types.get(entity_set.get("EntityType", ""), frozenset())
        for entity_set in root.iter(f"{_EDM}EntitySet")
    }


def check_mapping(mapping: TableMapping, erp: Callable[[str], ServiceSchema], crm: ServiceSchema) -> None:
    """Check every entity set and field name ``mapping`` uses against the services' schemas.

    :param erp: the Business Central schema of the API route that serves an entity set (routes differ per set).
    :param crm: the Dataverse schema.
    :raises MappingError: for the first unknown name, naming the file, the mapping and the field.
    """
    for side, entity_set, name, label in _names(mapping):
        schema = erp(entity_set) if side == "erp" else crm
        service = "Business Central" if side == "erp" else "Dataverse"
        if entity_set not in schema:
            raise MappingError(
                f"{service} has no entity set {entity_set!r} ($metadata)",
                file=mapping.file,
                mapping=mapping.name,
                field=label,
            )
        if name is not None and not _has(schema[entity_set], name):
            raise MappingError(
                f"{service} entity set {entity_set} has no field {name!r} ($metadata)",
                file=mapping.file,
                mapping=mapping.name,
                field=label,
            )


def _has(properties: frozenset[str], name: str) -> bool:
    # A Dataverse lookup is read as _<attribute>_value and written through its navigation property.
    return name in properties or f"_{name}_value" in properties


def _names(mapping: TableMapping) -> Iterator[tuple[str, str, str | None, str]]:
    """(side, entity set, field or None, label) of every name the mapping uses."""
    erp_set, crm_set = mapping.erp.entity_set, mapping.crm.entity_set
    yield "erp", erp_set, None, "erp.entity_set"
    yield "crm", crm_set, None, "crm.entity_set"
    if mapping.erp.key:
        yield "erp", erp_set, mapping.erp.key, "erp.key"
    if mapping.crm.option_set is not None:  # an option mapping: the choice column is a property of the table
        yield "crm", crm_set, mapping.crm.option_set[1], "crm.option_set"
        return
    if mapping.crm.key:
        yield "crm", crm_set, mapping.crm.key, "crm.key"
    yield "crm", crm_set, mapping.crm.id_field, "crm.id"
    for field in mapping.fields:
        if field.erp:
            yield "erp", erp_set, field.erp, field.label
        if field.crm:
            yield "crm", crm_set, field.crm, field.label
        lookup = field.lookup
        if lookup is None:
            continue
        if lookup.bind and not lookup.option:
            yield "crm", crm_set, lookup.bind, field.label
        for side, via in (("erp", lookup.erp_via), ("crm", lookup.crm_via)):
            yield from _via_names(side, via, field.label)


def _via_names(side: str, via: Via | None, label: str) -> Iterator[tuple[str, str, str | None, str]]:
    if via is None:
        return
    yield side, via.entity_set, None, label
    yield side, via.entity_set, via.match, label
    yield side, via.entity_set, via.value, label


def check_against_services(mapping: TableMapping, erp_hook: BusinessCentralHook, crm_hook: DataverseHook) -> None:
    """Read both services' ``$metadata`` (Business Central: each API route the mapping uses) and check ``mapping``.

    :raises MappingError: for the first unknown entity set or field (see :func:`check_mapping`).
    :raises ApiError: when a ``$metadata`` document cannot be read.
    """
    routes: dict[str, ServiceSchema] = {}

    def erp(entity_set: str) -> ServiceSchema:
        route = erp_hook.route(entity_set)
        if route not in routes:
            routes[route] = parse_csdl(erp_hook.metadata(entity_set))
        return routes[route]

    crm = parse_csdl(crm_hook.metadata())
    check_mapping(mapping, erp, crm)


def check_fingerprint(mapping: TableMapping, erp_hook: BusinessCentralHook, crm_hook: DataverseHook) -> tuple[str, str]:
    """What a passed check of ``mapping`` vouches for, without a request: ``(definition, services)``.

    :return: ``definition``: SHA-256 (hex) of every (side, entity set, field, label) the check looks at, in the
        mapping's order, and the API route of each Business Central entity set among them (``extra.endpoints``);
        ``services``: the Business Central environment root and the Dataverse Web API root checked against.
    """
    names = list(_names(mapping))
    routes = sorted({(entity_set, erp_hook.route(entity_set)) for side, entity_set, _, _ in names if side == "erp"})
    payload = json.dumps({"names": names, "routes": routes}, separators=(",", ":"))
    services = f"{erp_hook.url(erp_hook.environment_root)} {crm_hook.web_api_root}"
    return hashlib.sha256(payload.encode()).hexdigest(), services


def check_unless_passed(
    state: StateStoreHook,
    mapping: TableMapping,
    erp_hook: BusinessCentralHook,
    crm_hook: DataverseHook,
    *,
    max_age_h: float,
    now: datetime | None = None,
) -> bool:
    """:func:`check_against_services`, unless the same definition passed against the same services lately.

    The check's answer only changes when the mapping's names or routes change (a new mapping file, an edited
    field, an ``extra.endpoints`` route), when the connections point elsewhere (:func:`check_fingerprint`), or when
    the services' schema changes; the first two check again at once, the last within ``max_age_h``. Meanwhile a
    field removed from a service fails the records that use it, each with the service's own error (HTTP 400
    naming the field) in the job log, as before this check existed. A passed check is recorded in
    ``dynamics.sync_metadata_check``; a failed one is not, so the next run checks again.

    :param max_age_h: hours a passed check stays valid (setting ``metadata_check_max_age_h``); 0 checks every time.
    :param now: the current time (UTC; default the clock).
    :return: ``True`` when the services' ``$metadata`` was read and the mapping passed, ``False`` when skipped.
    :raises MappingError: for the first unknown entity set or field (see :func:`check_mapping`).
    :raises ApiError: when a ``$metadata`` document cannot be read.
    """
    definition, services = check_fingerprint(mapping, erp_hook, crm_hook)
    if max_age_h > 0:
        with state.transaction() as cur:
            cur.execute(q.METADATA_CHECK_PASSED, (mapping.name, definition, services))
            row = cur.fetchone()
        if row is not None and row[0] > (now or datetime.now(UTC)) - timedelta(hours=max_age_h):
            return False
    check_against_services(mapping, erp_hook, crm_hook)
    with state.transaction() as cur:
        cur.execute(q.SET_METADATA_CHECK_PASSED, (mapping.name, definition, services))
    return True
