"""Load the table mappings from ``include/mappings/*.yaml`` and validate them as a set.

One file holds one mapping. Files are read in name order (``10_currency.yaml``, ``20_salespeople.yaml`` ...),
and that order breaks ties in the run order, so it is the seed documents' recommended first-run order where the
dependencies allow any. The set is checked as a whole: unique names, ``depends_on`` naming existing mappings, no
cycles, and every lookup going to a mapping the field's mapping depends on (directly), because a lookup can
only find couplings that an earlier task made.

The result is cached per folder and file modification times, so the DAG file can call :func:`load_mappings` at
every parse for the cost of a ``stat`` per file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import yaml

from dynamics_jobqueue import settings
from dynamics_jobqueue.sync.mapping import MappingError, TableMapping, build_mapping
from dynamics_jobqueue.sync.mapping_file import validate_file


def mappings_dir() -> Path:
    """The mappings folder: the setting ``mappings_dir``, default ``include/mappings``."""
    return settings.mappings_dir()


@dataclass(frozen=True)
class MappingSet:
    """Validated mappings in run order (dependencies first, ties in file order).

    :param mappings: every mapping, in run order.
    """

    mappings: tuple[TableMapping, ...]

    def __iter__(self) -> Iterator[TableMapping]:
        return iter(self.mappings)

    def __len__(self) -> int:
        return len(self.mappings)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.mappings]

    def get(self, name: str) -> TableMapping:
        """The mapping called ``name``. :raises KeyError: naming the mappings that exist."""
        for mapping in self.mappings:
            if mapping.name == name or mapping.slug == name:
                return mapping
        raise KeyError(f"no table mapping {name!r}; mappings: {', '.join(self.names)}")


def load_mappings(folder: Path | str | None = None) -> MappingSet:
    """Read and validate every ``*.yaml``/``*.yml`` file of ``folder`` (default :func:`mappings_dir`).

    :raises MappingError: for the first problem found, naming the file, the mapping and the field.
    """
    path = Path(folder) if folder is not None else mappings_dir()
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if not files:
        raise MappingError(f"no table mapping files (*.yaml) in {path}", file=str(path))
    signature = tuple((str(f), f.stat().st_mtime_ns) for f in files)
    return _load_cached(signature)


@lru_cache(maxsize=8)
def _load_cached(signature: tuple[tuple[str, int], ...]) -> MappingSet:
    mappings = []
    for file_name, _ in signature:
        file = Path(file_name)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise MappingError(f"not valid YAML: {exc}", file=file.name) from None
        validate_file(data, file=file.name)
        mappings.append(build_mapping(data, file=file.name))
    return MappingSet(tuple(validate_set(mappings)))


def validate_set(mappings: list[TableMapping]) -> list[TableMapping]:
    """Check the references between mappings and return them in run order.

    :param mappings: in file order.
    :return: topologically sorted by ``depends_on``, ties kept in the given order.
    :raises MappingError: duplicate names, unknown dependencies, lookups outside ``depends_on``, cycles.
    """
    by_name: dict[str, TableMapping] = {}
    for mapping in mappings:
        if mapping.name in by_name:
            raise MappingError(
                f"the name is also used in {by_name[mapping.name].file}", file=mapping.file, mapping=mapping.name
            )
        by_name[mapping.name] = mapping
    slugs: dict[str, str] = {}
    for mapping in mappings:
        if mapping.slug in slugs:
            raise MappingError(
                f"task id {mapping.slug!r} is also the task id of {slugs[mapping.slug]}",
                file=mapping.file,
                mapping=mapping.name,
            )
        slugs[mapping.slug] = mapping.name
    for mapping in mappings:
        for dependency in mapping.depends_on:
            if dependency not in by_name:
                raise MappingError(
                    f"depends_on names {dependency!r}, which is not a mapping ({', '.join(by_name)})",
                    file=mapping.file,
                    mapping=mapping.name,
                    field="depends_on",
                )
        for f in mapping.fields:
            if f.lookup is None:
                continue
            target = f.lookup.mapping
            if target not in by_name:
                raise MappingError(
                    f"lookup names {target!r}, which is not a mapping",
                    file=mapping.file,
                    mapping=mapping.name,
                    field=f.label,
                )
            if target not in mapping.depends_on:
                raise MappingError(
                    f"looks up {target} couplings, so {target} must be in depends_on (it has to sync first)",
                    file=mapping.file,
                    mapping=mapping.name,
                    field=f.label,
                )
            if by_name[target].erp.key is None and f.lookup.erp_via is None:
                raise MappingError(
                    f"{target} has no ERP business key (erp.key) to look up by; add erp_via",
                    file=mapping.file,
                    mapping=mapping.name,
                    field=f.label,
                )

    mappings = [_mark_option_lookups(m, by_name) for m in mappings]
    ordered: list[TableMapping] = []
    placed: set[str] = set()
    remaining = list(mappings)
    while remaining:
        ready = next((m for m in remaining if set(m.depends_on) <= placed), None)
        if ready is None:
            cycle = ", ".join(m.name for m in remaining)
            first = remaining[0]
            raise MappingError(
                f"depends_on forms a cycle among {cycle}", file=first.file, mapping=first.name, field="depends_on"
            )
        ordered.append(ready)
        placed.add(ready.name)
        remaining.remove(ready)
    return ordered


def _mark_option_lookups(mapping: TableMapping, by_name: dict[str, TableMapping]) -> TableMapping:
    """Flag the lookups that go to an option mapping (their CRM value is a number, not a bound record)."""
    fields = tuple(
        replace(f, lookup=replace(f.lookup, option=True))
        if f.lookup is not None and by_name[f.lookup.mapping].is_option_mapping
        else f
        for f in mapping.fields
    )
    return replace(mapping, fields=fields) if fields != mapping.fields else mapping
