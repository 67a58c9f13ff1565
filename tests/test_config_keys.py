"""Each config key is declared once (supervisor.config.load.KEYS); the example file and
docs/configuration.md (generated from KEYS by scripts/gen_config_docs.py) document exactly those
keys, no more, no fewer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from supervisor.config import load as config

ROOT = Path(__file__).resolve().parent.parent
DECLARED = {k.path for k in config.KEYS}


def _flatten(data: dict, table: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        path = f"{table}.{name}".lstrip(".")
        if path in ("jobs", "destinations"):
            keys |= {k for each in value.values() for k in _flatten(each, f"{path}.*")}
        elif path == "drill.checks":
            keys |= {k for check in value for k in _flatten(check, "drill.checks[]")}
        elif isinstance(value, dict):
            keys |= _flatten(value, path)
        else:
            keys.add(path)
    return keys


def test_the_example_config_sets_every_declared_key() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert _flatten(example) == DECLARED


def _documented_keys() -> set[str]:
    """Keys in the first column of docs/configuration.md's tables, by their full paths as an
    operator writes them (`jobs.NAME.timeout`, `drill.checks[].sql`)."""
    keys: set[str] = set()
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if row := re.match(r"\| `([^`]+)` \|", line):
            keys.add(row.group(1).replace("jobs.NAME.", "jobs.*.")
                     .replace("destinations.NAME.", "destinations.*."))
    return keys


def test_the_configuration_doc_documents_every_declared_key() -> None:
    assert _documented_keys() == DECLARED


def test_dataclass_defaults_are_the_declared_ones() -> None:
    assert config.HealthConfig().dump_max_age_s == config.default("health.dump_max_age")
    assert config.GuardConfig().quiet_period_s == config.default("guard.quiet_period") == 120.0
    assert config.DrillConfig().receipts_sample == config.default("drill.receipts_sample")
