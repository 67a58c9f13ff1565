"""How many randomly mistyped configs crash the parser or a command instead of a ConfigError.

Takes config.example.toml, makes N seeded random mutations (a value replaced by a list, an inline
table, a date, a datetime, a time, a bool, an int, a float or a string; a key dropped; a key
added; a table turned into a value), writes each back as TOML and counts the copies for which
`config.parse` raises anything but ConfigError, and those for which `check-config` or `next`
(in-process, through `supervisor.cli.main`) raise or print a traceback. A fixed seed makes the
before/after numbers comparable. Run: .venv/bin/python -m benchmarks.config_mutations [N] [SEED]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import random
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import stop_cleanly_on_sigterm
from supervisor import cli
from supervisor.config import load as config
from tests.harness.tomlw import dumps

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def _weird(rng: random.Random) -> Any:
    """A value of a random TOML type, biased to the ones a config parser trips over."""
    kind = rng.choice(["list", "table", "date", "datetime", "time", "bool", "int", "float", "str"])
    if kind == "list":
        return rng.choice([[], ["45m"], [1, 2], [{"a": 1}], [["x"]]])
    if kind == "table":
        return rng.choice([{}, {"a": 1}, {"schedule": "* * * * *"}, {"x": {"y": "z"}}])
    if kind == "date":
        return dt.date(2026, 1, rng.randint(1, 28))
    if kind == "datetime":
        return rng.choice([dt.datetime(2026, 1, 2, 3, 4, 5),
                           dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)])
    if kind == "time":
        return dt.time(3, 4, 5)
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "int":
        return rng.choice([0, 1, -1, 7, 65536, 2**31, 2**63 - 1, -(2**63)])
    if kind == "float":
        return rng.choice([0.0, -0.5, 0.5, 1.5, 1e308, float("nan"), float("inf"), float("-inf")])
    return rng.choice(["", " ", "x", "45m", "/abs/path", "volume:x", "* * * * *", "\u00e9", "0"])


def _containers(data: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every (path, dict-or-list) in the document, the root included."""
    found: list[tuple[tuple, Any]] = [(path, data)]
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        if isinstance(value, dict | list):
            found += _containers(value, (*path, key))
    return found


def mutate(data: dict[str, Any], rng: random.Random) -> str:
    """One random mutation of `data` (changed in place); returns what was done."""
    containers = [(p, c) for p, c in _containers(data) if c]
    path, parent = rng.choice(containers)
    keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
    key = rng.choice(keys)
    op = rng.choice(["replace", "replace", "replace", "drop", "add", "table-to-value"])
    if op == "table-to-value":
        tables = [(p, c) for p, c in _containers(data) if p and isinstance(c, dict)]
        full, _ = rng.choice(tables)
        holder: Any = data
        for part in full[:-1]:
            holder = holder[part]
        holder[full[-1]] = _weird(rng)
        return f"table-to-value {'.'.join(map(str, full))}"
    if op == "drop" and isinstance(parent, dict):
        del parent[key]
        return f"drop {'.'.join(map(str, (*path, key)))}"
    if op == "add" and isinstance(parent, dict):
        name = rng.choice(["extra", "timeout", "schedule", "x-y", "checks", "jobs"])
        parent[name] = _weird(rng)
        return f"add {'.'.join(map(str, (*path, name)))}"
    parent[key] = _weird(rng)
    return f"replace {'.'.join(map(str, (*path, key)))}"


def _cli(path: Path, *args: str) -> str | None:
    """Runs one command in-process; the crash (exception or traceback) or None."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--config", str(path), *args])
    except Exception as exc:  # the point of the measurement: anything that escapes
        return f"{type(exc).__name__}: {exc}"
    if not isinstance(code, int) or "Traceback" in err.getvalue():
        return f"code {code!r}, stderr {err.getvalue()[-200:]!r}"
    return None


def main(n: int = 400, seed: int = 8) -> int:
    rng = random.Random(seed)
    example = tomllib.loads(EXAMPLE.read_text())
    crashes: Counter[str] = Counter()
    any_crash = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        for i in range(n):
            data = tomllib.loads(EXAMPLE.read_text())
            what = mutate(data, rng)
            text = dumps(data)
            path.write_text(text)
            crashed = False
            try:
                config.parse(text, path)
            except config.ConfigError:
                pass
            except Exception as exc:
                crashes["parse"] += 1
                crashed = True
                print(f"#{i} {what}: parse raised {type(exc).__name__}: {exc}")
            for command in (["check-config"], ["next", "-n", "1"]):
                problem = _cli(path, *command)
                if problem:
                    crashes[command[0]] += 1
                    crashed = True
                    print(f"#{i} {what}: {command[0]}: {problem}")
            any_crash += crashed
    assert example  # the example itself stays valid
    print(f"{n} mutations (seed {seed}): parse crashed {crashes['parse']}, check-config "
          f"{crashes['check-config']}, next {crashes['next']}; any crash {any_crash}/{n}")
    return 1 if any_crash else 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
