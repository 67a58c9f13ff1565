"""The PostgreSQL client commands a restore runs, per dump format, as argument lists: the host's
tools for `restore db`, the throwaway server's own for the drill (one builder, two places).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from supervisor.postgres import dumpformat

# Tables, views, sequences... anything a restore would collide with, outside the catalogs.
USER_RELATIONS_SQL = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
)
USER_TABLES_SQL = USER_RELATIONS_SQL.replace("IN ('r', 'p', 'v', 'm', 'S', 'f')", "IN ('r', 'p')")
# A cluster dump creates its databases itself: the server must not have them yet.
USER_DATABASES_SQL = ("SELECT count(*) FROM pg_database WHERE datname NOT IN "
                      "('postgres', 'template0', 'template1')")
# pg_dumpall always writes CREATE ROLE for the superuser that restores it: harmless.
_ROLE_EXISTS = re.compile(r'ERROR:\s+role ".*" already exists')
MISSING_ROLE = re.compile(r'role "(.+?)" does not exist')


class PgToolError(Exception):
    """A client tool could not be found or did not finish; one line."""


def list_args(archive: str) -> list[str]:
    return ["pg_restore", "--list", archive]


def restore_args(
    archive: str, *, connect: list[str], jobs: int, clean: bool, privileges: bool
) -> list[str]:
    """pg_restore of a custom archive or a directory dump."""
    # --no-owner: the roles of the source server may not exist where we restore; objects are
    # owned by the connecting user. --exit-on-error: a partial restore must not look like one.
    args = ["pg_restore", *connect, "--no-owner", "--exit-on-error", f"--jobs={jobs}"]
    if clean:
        args += ["--clean", "--if-exists"]
    if not privileges:
        args.append("--no-privileges")
    return [*args, archive]


def script_args(script: str, psql: str, *, connect: list[str], fmt: str) -> list[str]:
    """psql for a plain or a cluster SQL dump (gunzip | psql when compressed). A plain dump
    goes in as one transaction that stops at the first error; a cluster dump cannot (CREATE
    DATABASE, \\connect), so it runs to the end and its errors are read from stderr (see
    script_errors)."""
    stop = ["-v", "ON_ERROR_STOP=0"] if fmt == dumpformat.CLUSTER_GZ \
        else ["--single-transaction", "-v", "ON_ERROR_STOP=1"]
    if fmt == dumpformat.PLAIN:
        return [psql, *connect, "-X", "-q", *stop, "-f", script]
    # pipefail: a truncated gzip stream fails the restore even when psql accepted the prefix.
    return ["bash", "-o", "pipefail", "-c", 'gunzip -c -- "$0" | "$@"', script, psql,
            *connect, "-X", "-q", *stop]


def script_errors(stderr: str) -> list[str]:
    """The errors of a cluster restore that matter (all but the superuser's CREATE ROLE)."""
    return [line.strip() for line in stderr.splitlines()
            if "ERROR:" in line and not _ROLE_EXISTS.search(line)]


def first_error(stderr: str) -> str:
    """The line of pg_restore/psql output that explains a failure."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    return lines[0] if lines else "no error text"


def pg_tool(name: str) -> str:
    """A PostgreSQL client binary: from PATH, else the newest /usr/lib/postgresql/N/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise PgToolError(f"{name} not found; install the PostgreSQL client (postgresql-client)")
    return str(candidates[-1])


def run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Runs a client command on this host (args[0] is looked up with pg_tool unless it is
    bash, whose pipeline names its psql itself)."""
    tool = args[0] if args[0] == "bash" else pg_tool(args[0])
    try:
        return subprocess.run(
            [tool, *args[1:]], capture_output=True, text=True, timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise PgToolError(f"{args[0]} did not finish within {timeout_s:.0f} s") from None
