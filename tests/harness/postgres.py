"""A throw-away PostgreSQL 15 server on 127.0.0.1, run as the ``postgres`` OS user."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.harness.s3server import _port_free
from tests.harness.server import Server

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOST = "127.0.0.1"
OS_USER = "postgres"


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if _port_free(port):
            return port
    raise RuntimeError("no free port")


class PgServer(Server):
    """``initdb`` + ``postgres`` in a temp dir; trust auth; unix socket in that dir.

    Attributes: ``host``, ``port``, ``dir``, ``datadir``.
    """

    host = HOST

    def __init__(self, bin_dir: Path = PG_BIN) -> None:
        self.bin = Path(bin_dir)
        if not (self.bin / "postgres").exists():
            raise FileNotFoundError(f"{self.bin}/postgres missing (apt-get install postgresql-15)")
        self.dir = Path(tempfile.mkdtemp(prefix="ardua-pg-"))
        self.datadir = self.dir / "data"
        self.port = _free_port()
        self._started = False
        pw = pwd.getpwnam(OS_USER)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)

    def _as_postgres(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        cmd = args if os.geteuid() != 0 else ["runuser", "-u", OS_USER, "--", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir, **kw)
        if res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
            )
        return res

    def start(self) -> PgServer:
        if self._started:
            return self
        if not (self.datadir / "PG_VERSION").exists():
            self._as_postgres(
                [str(self.bin / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                 "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                timeout=120,
            )  # fmt: skip
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            [str(self.bin / "pg_ctl"), "-D", str(self.datadir),
             "-l", str(self.dir / "postgres.log"), "-w", "-t", "60", "-o", opts, "start"],
            timeout=90,
        )  # fmt: skip
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._as_postgres(
                [str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                timeout=90,
            )

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{db}"

    def _client_args(self, db: str) -> list[str]:
        return ["-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", db]

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL (any number of statements) with ON_ERROR_STOP; return stdout (-At format)."""
        res = subprocess.run(
            [str(self.bin / "psql"), *self._client_args(db), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"psql failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def createdb(self, name: str) -> None:
        res = subprocess.run(
            [str(self.bin / "createdb"), "-h", HOST, "-p", str(self.port), "-U", "postgres", name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {res.stderr.strip()}")

    def pg_dump(self, db: str, path: os.PathLike | str, *opts: str) -> Path:
        """pg_dump of db to path, as postgres-backup-local runs it (`pg_dump -d DB -f FILE
        ${POSTGRES_EXTRA_OPTS}`); opts default to -Fc (custom format)."""
        res = subprocess.run(
            [str(self.bin / "pg_dump"), *self._client_args(db), "-f", str(path),
             *(opts or ("-Fc",))],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"pg_dump {db} failed: {res.stderr.strip()}")
        return Path(path)

    def pg_dumpall_gz(self, db: str, path: os.PathLike | str) -> Path:
        """The whole cluster, as postgres-backup-local's POSTGRES_CLUSTER=TRUE writes it:
        `pg_dumpall -l DB | gzip > FILE`."""
        with open(path, "wb") as out:
            dump = subprocess.Popen(
                [str(self.bin / "pg_dumpall"), *self._client_args(db)[:-2], "-l", db],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            gz = subprocess.run(["gzip"], stdin=dump.stdout, stdout=out, timeout=300)
            assert dump.stdout is not None and dump.stderr is not None
            dump.stdout.close()
            err = dump.stderr.read().decode()
            if dump.wait(timeout=300) != 0 or gz.returncode != 0:
                raise RuntimeError(f"pg_dumpall | gzip failed: {err.strip()}")
        return Path(path)

    def pg_restore(self, path: os.PathLike | str, db: str) -> None:
        """Restore a -Fc dump into an existing database."""
        res = subprocess.run(
            [str(self.bin / "pg_restore"), *self._client_args(db), "--no-owner",
             "--exit-on-error", str(path)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"pg_restore into {db} failed: {res.stderr.strip()}")
