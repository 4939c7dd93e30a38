"""``$metadata``: the service document (OData CSDL XML) of the sandbox's entity sets.

Both services publish their schema at ``<api root>$metadata`` (Business Central per API route:
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/webservices/return-metadata ; Dataverse:
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-service-documents). This renders the
parts clients read: entity types with their properties (Dataverse lookups as ``_<attribute>_value`` properties and
single-valued navigation properties) and the entity container's entity sets.
"""

from __future__ import annotations

import uuid
from typing import Any
from xml.sax.saxutils import quoteattr

from sandbox.odata import QueryError, matches, parse_filter
from sandbox.schema import EntitySet

#: The table definition properties the sandbox serves (EntityMetadata; MetadataId is always returned).
ENTITY_DEFINITION_PROPERTIES = ("MetadataId", "LogicalName", "EntitySetName", "SchemaName")


def entity_definitions(root: str, query: dict[str, str], sets: dict[str, EntitySet]) -> dict[str, Any]:
    """``GET EntityDefinitions`` with ``$select`` and ``$filter`` (``eq``/``ne``, ``and``/``or``): one row per table
    ("Query table definitions using the Web API", learn.microsoft.com/power-apps/developer/data-platform/webapi/
    query-metadata-web-api). Other query options -> :class:`QueryError`."""
    for option in query:
        if option not in ("$select", "$filter"):
            raise QueryError(f"The query option {option} is not supported on EntityDefinitions by the sandbox.")
    tables = dict.fromkeys((e.type_name, e.name) for e in sets.values())
    rows = [
        {
            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"EntityDefinitions/{logical}")),
            "LogicalName": logical,
            "EntitySetName": entity_set,
            "SchemaName": logical.capitalize(),
        }
        for logical, entity_set in tables
    ]
    if "$filter" in query:
        node = parse_filter(query["$filter"])
        rows = [r for r in rows if matches(node, r)]
    selected = list(ENTITY_DEFINITION_PROPERTIES)
    if "$select" in query:
        selected = [c.strip() for c in query["$select"].split(",") if c.strip()]
        unknown = [c for c in selected if c not in ENTITY_DEFINITION_PROPERTIES]
        if unknown:
            raise QueryError(
                f"Could not find a property named '{unknown[0]}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
            )
        selected = list(dict.fromkeys(["MetadataId", *selected]))
    columns = f"({','.join(selected)})" if "$select" in query else ""
    return {
        "@odata.context": f"{root}$metadata#EntityDefinitions{columns}",
        "value": [{c: r[c] for c in selected} for r in rows],
    }


_EDM_TYPES = {
    "string": "Edm.String",
    "code": "Edm.String",
    "enum": "Edm.String",
    "int": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "bool": "Edm.Boolean",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
}


def csdl(sets: dict[str, EntitySet], namespace: str, container: str) -> bytes:
    """The CSDL document of ``sets`` (one entity type per set) in ``namespace``."""
    by_name = {entity.name: entity for entity in sets.values()}
    types = []
    for entity in sets.values():
        lines = [
            f"<EntityType Name={quoteattr(entity.type_name)}>",
            f"<Key><PropertyRef Name={quoteattr(entity.key)}/></Key>",
        ]
        for spec in entity.fields.values():
            lines.append(f"<Property Name={quoteattr(spec.name)} Type={quoteattr(_EDM_TYPES[spec.type])}/>")
        for lookup in entity.lookups.values():
            lines.append(f'<Property Name={quoteattr(lookup.value_field)} Type="Edm.Guid"/>')
            for navigation, target in lookup.targets.items():
                target_type = by_name[target].type_name if target in by_name else target
                lines.append(
                    f"<NavigationProperty Name={quoteattr(navigation)} Type={quoteattr(f'{namespace}.{target_type}')}/>"
                )
        lines.append("</EntityType>")
        types.append("".join(lines))
    entity_sets = "".join(
        f"<EntitySet Name={quoteattr(e.name)} EntityType={quoteattr(f'{namespace}.{e.type_name}')}/>"
        for e in sets.values()
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
        f'<Schema Namespace={quoteattr(namespace)} xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        f"{''.join(types)}<EntityContainer Name={quoteattr(container)}>{entity_sets}</EntityContainer>"
        "</Schema></edmx:DataServices></edmx:Edmx>"
    ).encode()
