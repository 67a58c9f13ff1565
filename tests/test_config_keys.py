"""Each config key is declared once (supervisor.config.load.KEYS); the example file and the README
document exactly those keys, no more, no fewer."""

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
        if path == "jobs":
            keys |= {k for job in value.values() for k in _flatten(job, "jobs.*")}
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


def _readme_keys() -> set[str]:
    """Keys in the first column of README's configuration tables: the main one (full paths,
    `jobs.NAME.x`), the `[drill]` one and the `[[drill.checks]]` one (names in their table)."""
    context: str | None = None
    keys: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("#"):
            context = ("" if line == "## Configuration" else
                       "drill" if line.startswith("### `[drill]` configuration") else None)
        elif line.startswith("`[[drill.checks]]`"):
            context = "drill.checks[]"
        elif context is not None and (row := re.match(r"\| `([^`]+)`(?: / `([^`]+)`)? \|", line)):
            for name in filter(None, row.groups()):
                keys.add(f"{context}.{name}".lstrip(".").replace(".NAME.", ".*."))
    return keys


def test_the_readme_documents_every_declared_key() -> None:
    assert _readme_keys() == DECLARED


def test_dataclass_defaults_are_the_declared_ones() -> None:
    assert config.HealthConfig().dump_max_age_s == config.default("health.dump_max_age")
    assert config.GuardConfig().quiet_period_s == config.default("guard.quiet_period") == 120.0
    assert config.DrillConfig().receipts_sample == config.default("drill.receipts_sample")
