"""The PostgreSQL client commands a restore runs, per dump format, as argument lists: the host's
pg_restore for `restore db`, the throwaway server's own tools for the drill, and an SQL script's
psql always inside a container (supervisor.restore.sandbox, the drill's server): one builder.

An SQL script from S3 is untrusted: psql obeys its meta-commands (`\\!`, `\\o |cmd`), so it
never reaches a psql on this host (docs/security.md). Everything read back from the tools is
bounded: a script's stderr is cut at SCRIPT_OUTPUT_BYTES inside the container, its stdout
discarded there, and MISSING_ROLE matches in linear time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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
# A role name is at most 63 bytes (NAMEDATALEN - 1): the bounded lazy group tries at most 63
# ends per start, so a multi-MB error line is matched in linear time (`.+?` was quadratic:
# 1.9 s for a 48 KB line).
MISSING_ROLE = re.compile(r'role "(.{1,63}?)" does not exist')
# What a script restore keeps of psql's stderr (the first bytes: its first errors).
SCRIPT_OUTPUT_BYTES = 64 * 1024
# psql's restricted mode (`\restrict KEY`, CVE-2025-8714) could be escaped until these minor
# releases (CVE-2026-18408): major -> first fixed minor. Majors after the newest listed count
# as fixed, older ones (no restricted mode at all) as not.
RESTRICT_FIXED = {15: 19, 16: 15, 17: 11, 18: 6}
# Drops pg_dump's own `\restrict KEY` / `\unrestrict KEY` lines (outside COPY data) from a
# script restored in restricted mode: ours comes first, and a second one is an error.
_DROP_RESTRICT_AWK = (
    'incopy { print; if ($0 == "\\\\.") incopy = 0; next } '
    '/^COPY .* FROM stdin;$/ { incopy = 1; print; next } '
    '/^\\\\(un)?restrict [A-Za-z0-9]+$/ { next } '
    '{ print }'
)


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


def script_args(script: str, psql: str, *, connect: list[str], fmt: str,
                restrict_key: str = "") -> list[str]:
    """psql for a plain or a cluster SQL dump, run by bash inside a container: (gunzip |) psql,
    its stdout discarded and its stderr cut at SCRIPT_OUTPUT_BYTES (read to the end, so psql
    never blocks nor dies of SIGPIPE). A plain dump goes in as one transaction that stops at the
    first error; a cluster dump cannot (CREATE DATABASE, \\connect), so it runs to the end and
    its errors are read from stderr (see script_errors). With `restrict_key` (a plain dump, a
    psql where restricted_mode_safe): psql enters restricted mode before the first line of the
    script, whose own \\restrict lines are dropped, and no meta-command of it runs."""
    stop = ["-v", "ON_ERROR_STOP=0"] if fmt == dumpformat.CLUSTER_GZ \
        else ["--single-transaction", "-v", "ON_ERROR_STOP=1"]
    read = 'cat -- "$0"' if fmt == dumpformat.PLAIN else 'gunzip -c -- "$0"'
    restrict: list[str] = []
    if restrict_key and fmt != dumpformat.CLUSTER_GZ:
        if not re.fullmatch(r"[A-Za-z0-9]+", restrict_key):
            raise ValueError("a \\restrict key is letters and digits")
        read += f" | awk '{_DROP_RESTRICT_AWK}'"
        restrict = ["-c", f"\\restrict {restrict_key}"]
    # pipefail: a truncated gzip stream fails the restore even when psql accepted the prefix.
    program = (f'{{ {read} | "$@" 2>&1 >/dev/null; }} '
               f"| {{ head -c {SCRIPT_OUTPUT_BYTES}; cat >/dev/null; }} >&2")
    return ["bash", "-o", "pipefail", "-c", program, script, psql, *connect, "-X", "-q",
            *stop, *restrict, "-f", "-"]


def version_of(text: str) -> tuple[int, int] | None:
    """(major, minor) from `psql --version` output; None when it says no such number."""
    found = re.search(r"\(PostgreSQL\) (\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def restricted_mode_safe(version: tuple[int, int] | None) -> bool:
    """Does this psql have a restricted mode that a script cannot escape (RESTRICT_FIXED)?"""
    if version is None:
        return False
    major, minor = version
    if major > max(RESTRICT_FIXED):
        return True
    return major in RESTRICT_FIXED and minor >= RESTRICT_FIXED[major]


def conninfo_value(value: str) -> str:
    """A libpq connection-string value, quoted: `host=evil dbname=x` stays one value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dbname(database: str) -> str:
    """A database name for psql's `-d` or pg_restore's `--dbname`, which read a connection
    string when the value holds `=` (or is a URI): a name from an S3 key never can."""
    return f"dbname={conninfo_value(database)}"


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


# What run() keeps of a host tool's stdout and stderr each (the rest is counted, not kept).
OUTPUT_BYTES = 1 << 20


@dataclass(frozen=True)
class ToolRun:
    returncode: int
    stdout: str  # its first OUTPUT_BYTES
    stderr: str  # its first OUTPUT_BYTES
    stdout_lines: int  # all of them, counted as they went by


def run(args: list[str], timeout_s: float) -> ToolRun:
    """Runs a client command on this host (args[0] is looked up with pg_tool). Its output
    goes to unlinked temporary files, so a tool that writes gigabytes (a `pg_restore --list`
    of a crafted archive, an error quoting a huge value) costs disk for the moment, not
    memory; the first OUTPUT_BYTES of each are kept."""
    tool = pg_tool(args[0])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            code = subprocess.run([tool, *args[1:]], stdout=out, stderr=err, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            raise PgToolError(f"{args[0]} did not finish within {timeout_s:.0f} s") from None
        lines = 0
        out.seek(0)
        while chunk := out.read(1 << 20):
            lines += chunk.count(b"\n")
        return ToolRun(code, _head(out), _head(err), lines)


def _head(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read(OUTPUT_BYTES).decode("utf-8", "replace")
