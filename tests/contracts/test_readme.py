"""Every contract fixture names its source in README.md."""

from __future__ import annotations

from pathlib import Path

CONTRACTS = Path(__file__).resolve().parent


def test_every_fixture_is_listed_with_its_source() -> None:
    readme = (CONTRACTS / "README.md").read_text()
    fixtures = sorted(
        str(p.relative_to(CONTRACTS)) for p in CONTRACTS.rglob("*") if p.suffix in (".http", ".json") and p.is_file()
    )
    assert fixtures
    missing = [f for f in fixtures if f"`{f}`" not in readme]
    assert not missing, f"fixtures without a source in README.md: {missing}"
