"""A broken config is one line on stderr and exit 78 (EX_CONFIG) from every command (`status`:
3, UNKNOWN), never a traceback: fixed cases through the real CLI in subprocesses, and a
hypothesis property over random mutations of config.example.toml, in-process."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import cli
from supervisor.config import load as config
from supervisor.record import journal as logs
from tests.harness.cli import run_cli
from tests.harness.tomlw import dumps

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TEXT = (ROOT / "config.example.toml").read_text()
EXAMPLE = tomllib.loads(EXAMPLE_TEXT)
EXIT_CONFIG, EXIT_UNKNOWN = 78, 3

# Issue 8 item 6: this edit, then `systemctl reload`, killed the daemon with an AttributeError.
TIMEOUT_LIST = EXAMPLE_TEXT.replace('timeout = "45m"', 'timeout = ["45m"]', 1)


def _one_line_naming(stderr: str, path: Path, key: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert str(path) in lines[0] and key in lines[0], stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["run"], EXIT_CONFIG),
        (["run-once", "db-upload"], EXIT_CONFIG),
        (["status"], EXIT_UNKNOWN),
        (["status", "--json"], EXIT_UNKNOWN),
        (["next"], EXIT_CONFIG),
        (["next", "db-upload", "-n", "1"], EXIT_CONFIG),
        (["check-config"], EXIT_CONFIG),
        (["history", "db-upload"], EXIT_CONFIG),
        (["restore", "list"], EXIT_CONFIG),
        (["restore", "db", "last/DB.dump", "--target", "postgresql://127.0.0.1:9/x"], EXIT_CONFIG),
        (["restore", "receipts", "/nonexistent/restore-here"], EXIT_CONFIG),
        (["drill"], EXIT_CONFIG),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_every_command_exits_78_on_a_broken_config(tmp_path: Path, args: list[str],
                                                   code: int) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(TIMEOUT_LIST)
    result = run_cli(*args, config=cfg, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    _one_line_naming(result.stderr, cfg, "jobs.db-upload.timeout: must be a duration")


BAD_FILES = {
    "timeout-list": (TIMEOUT_LIST, "jobs.db-upload.timeout"),
    "jobs-int": ("jobs = 3\n[s3]\nbucket = 'ardua-backups'\n", "[jobs] must be a table"),
    "health-string": ('health = "x"\n' + EXAMPLE_TEXT.replace("[health]", "[old-health]"),
                      "[health] must be a table"),
    "check-not-table": (EXAMPLE_TEXT.split("[[drill.checks]]")[0]
                        .replace("[drill]\n", "[drill]\nchecks = [7]\n"), "[drill.checks[0]]"),
    "datetime-path": (EXAMPLE_TEXT.replace('state_dir = "/var/lib/ardua-backup"',
                                           "state_dir = 2026-01-02T03:04:05Z"), "state_dir"),
    "nan-min": (EXAMPLE_TEXT.replace("min = 1 ", "min = nan "), "drill.checks[0].min"),
    "huge-port": (EXAMPLE_TEXT.replace("port = 0 ", "port = 1" + "0" * 30 + " "), "metrics.port"),
    "deep": ("x = " + "[" * 800 + "]" * 800 + "\n", "nested too deeply"),
}


def test_check_config_subprocess_on_fixed_bad_files(tmp_path: Path) -> None:
    procs = {}
    for name, (text, _) in BAD_FILES.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        # All at once: each is a fresh interpreter, as an operator's shell starts it.
        procs[name] = (path, subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--config", str(path), "check-config"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    for name, (path, proc) in procs.items():
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_CONFIG, (name, stderr)
        _one_line_naming(stderr, path, BAD_FILES[name][1])
        assert stderr.startswith(f"invalid: {path}: "), stderr


# -- the property: random mutations of the example config ---------------------------------------

_STRINGS = st.one_of(
    st.sampled_from(["", " ", "45m", "0s", "-5m", "1h30m", "* * * * *", "61 * * * *",
                     "volume:pg_backups", "volume:", "/data/receipts", "rel/path", "postgres",
                     "..", "http://127.0.0.1:8080/", "http://", "db-upload", "UTC", "Mars/Base",
                     "rclone/rclone:1.75.2", "host", "a\nb", "\u0000", "\u00e9t\u00e9"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
_SCALARS = st.one_of(
    _STRINGS,
    st.integers(),
    st.sampled_from([0, -1, 1, 65535, 65536, 2**63 - 1, 10**40]),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.times(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_STRINGS, inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every key path in the document (tables, array entries and values)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    found = []
    for key, value in items:
        found.append((*path, key))
        if isinstance(value, dict | list):
            found += _paths(value, (*path, key))
    return found


def _get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


PATHS = _paths(EXAMPLE)
TABLES = [(), *(p for p in PATHS if isinstance(_get(EXAMPLE, p), dict))]
KNOWN_KEYS = sorted({p[-1] for p in PATHS if isinstance(p[-1], str)})

_MUTATION = st.one_of(
    st.tuples(st.just("replace"), st.sampled_from(PATHS), _VALUES),
    st.tuples(st.just("drop"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("add"), st.sampled_from(TABLES),
              st.tuples(st.sampled_from(KNOWN_KEYS) | _STRINGS, _VALUES)),
)


def _mutated(mutations: list[tuple[str, tuple, Any]]) -> dict[str, Any]:
    data = tomllib.loads(EXAMPLE_TEXT)
    for op, path, arg in mutations:
        try:
            parent = _get(data, path[:-1]) if path else None
            if op == "replace":
                parent[path[-1]] = arg
            elif op == "drop":
                del parent[path[-1]]
            else:
                table = _get(data, path)
                if isinstance(table, dict):
                    table[arg[0]] = arg[1]
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation changed the shape there: nothing to do
    return data


def _cli(path: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--config", str(path), *args])
    assert isinstance(code, int), (args, code)
    assert "Traceback" not in err.getvalue(), (args, err.getvalue())
    return code, err.getvalue()


@pytest.fixture(scope="module")
def mutation_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # logs.setup() (loguru's add() costs ~18 ms) is left out: on these paths nothing is logged
    # before the config is loaded, and the subprocess tests above run it for real.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logs, "setup", lambda *a, **k: None)
        yield tmp_path_factory.mktemp("mutations") / "config.toml"


# Commands that fail fast on an invalid config; with a valid one they would reach for Docker
# and S3, so they run only then.
FAIL_FAST = [(["status"], EXIT_UNKNOWN), (["status", "--json"], EXIT_UNKNOWN),
             (["run-once", "db-upload"], EXIT_CONFIG), (["history"], EXIT_CONFIG),
             (["restore", "list"], EXIT_CONFIG), (["drill"], EXIT_CONFIG)]


@settings(max_examples=250, deadline=None, database=None)
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=3), also=st.sampled_from(FAIL_FAST))
def test_mutated_example_config_is_a_config_error_or_valid_never_a_crash(
    mutation_file: Path, mutations: list[tuple[str, tuple, Any]], also: tuple[list[str], int]
) -> None:
    text = dumps(_mutated(mutations))
    mutation_file.write_text(text, encoding="utf-8")
    try:
        config.parse(text, mutation_file)
        valid = True
    except config.ConfigError as exc:
        valid = False
        message = str(exc)
        assert message.startswith(f"{mutation_file}: ") and len(message.splitlines()) == 1, message

    code, err = _cli(mutation_file, "check-config")
    assert code == (0 if valid else EXIT_CONFIG), err
    code, err = _cli(mutation_file, "next", "-n", "1")
    assert code == (0 if valid else EXIT_CONFIG), err
    if not valid:
        args, expected = also
        code, err = _cli(mutation_file, *args)
        assert code == expected, (args, err)
        assert len(err.strip().splitlines()) == 1, err


def test_status_json_on_a_broken_config_is_an_unknown_object(tmp_path: Path) -> None:
    """A monitoring check that parses `status --json` still gets JSON saying why."""
    bad = tmp_path / "c.toml"
    bad.write_text(TIMEOUT_LIST)
    result = run_cli("status", "--json", config=bad)
    assert result.returncode == EXIT_UNKNOWN
    data = json.loads(result.stdout)
    assert (data["state"], data["exit_code"], data["schema"]) == ("UNKNOWN", 3, 3)
    assert data["problems"][0]["text"].startswith(f"config error: {bad}: jobs.db-upload.timeout")


# Issue 27 item 5: a config error is printed, logged and put in systemd's STATUS= (which every
# local user reads): about a ping URL it shows no more than scheme://host, never the token.
_TOKEN = "3f1c9e2a6b7d4e8f9a0bc1d2e3f4a5b6"


@pytest.mark.parametrize(("value", "shown"), [
    (f"https://hc-ping.com/{_TOKEN} x", "'https://hc-ping.com/...' is not a valid URL (no host, "
                                         "or a space in it)"),
    (f"https://hc-ping.com:99999/{_TOKEN}", "'https://hc-ping.com/...' is not a valid URL: "),
    (f"ftp://hc-ping.com/{_TOKEN}", "'ftp://hc-ping.com/...' must start with http:// or "
                                    "https://"),
    (f"hc-ping.com/{_TOKEN}", "a string (not shown: it may hold a token) must start with "
                              "http:// or https://"),
    (f"https://user:{_TOKEN}@hc-ping.com/p\t", "'https://hc-ping.com/...' contains a control "
                                               "character"),
])
def test_a_bad_ping_url_is_named_without_its_token(value: str, shown: str) -> None:
    text = EXAMPLE_TEXT + f"\n[jobs.extra]\nschedule = '0 1 * * *'\nsource = '/srv'\n" \
        f"prefix = 'extra'\nheartbeat_url = {json.dumps(value)}\n"
    with pytest.raises(config.ConfigError) as error:
        config.parse(text, Path("/c.toml"))
    assert f"jobs.extra.heartbeat_url: {shown}" in str(error.value)
    assert _TOKEN not in str(error.value)
