"""What `ardua-backup verify` proved of each object S3 holds, remembered across runs, and the
coverage `status` and `verify --json` report from it.

One row per object proven: destination + key + ETag (S3's listing gives no version ids, and
any other bytes under the key have another ETag: a new version with other bytes, an overwrite,
a re-upload of rotted bytes), with the result, its reason, when, and the bytes read. A changed
object is another row, so it has no proof and is due at once. The rows live
in the ledger's database file (a table of their own, written here only); like the ledger, WAL
and a busy timeout let the daemon and a manual `verify` write at once, and every call opens its
own connection (the daemon writes from worker threads). `status` reads them read-only
(`?mode=ro`): it may run where state_dir cannot be written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from supervisor.record.ledger import Ledger, sql_time

Ident = tuple[str, str, str]  # destination, key, ETag

_SCHEMA = """
CREATE TABLE IF NOT EXISTS proofs (
    destination TEXT NOT NULL,
    key         TEXT NOT NULL,
    etag        TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    proven_at   TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    run_id      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (destination, key, etag)
);
"""


@dataclass(frozen=True)
class Held:
    """One object a destination holds now, as a proof names it."""

    destination: str
    key: str
    etag: str
    size: int

    @property
    def ident(self) -> Ident:
        return (self.destination, self.key, self.etag)


@dataclass(frozen=True)
class Proof:
    ok: bool
    reason: str
    at: datetime
    bytes: int


@dataclass(frozen=True)
class Coverage:
    """The retained objects against their proofs at `now`."""

    total: int
    proven: int  # with a passing proof younger than max_age
    failed: tuple[tuple[Held, str], ...]  # whose proof failed, and why
    oldest: datetime | None  # the oldest passing proof of a retained object

    @property
    def ratio(self) -> float:
        return self.proven / self.total if self.total else 1.0


def lookup(proofs: Mapping[Ident, Proof]) -> Callable[[Held], Proof | None]:
    """The latest proof of an object's bytes: its own, or that of another key of the same
    destination with the same ETag (the same bytes: postgres-backup-local's daily/, weekly/,
    monthly/ hard links are server-side copies of the last/ dump), so one read proves them
    all."""
    by_content: dict[tuple[str, str], Proof] = {}
    for (dest, _key, etag), proof in proofs.items():
        seen = by_content.get((dest, etag))
        if seen is None or proof.at > seen.at:
            by_content[(dest, etag)] = proof
    return lambda h: proofs.get(h.ident) or by_content.get((h.destination, h.etag))


def coverage(held: Iterable[Held], proofs: Mapping[Ident, Proof],
             now: datetime, max_age_s: float) -> Coverage:
    """Pure: how many of `held` have a passing proof younger than max_age_s, which failed."""
    total = proven = 0
    failed: list[tuple[Held, str]] = []
    oldest: datetime | None = None
    proof_of = lookup(proofs)
    for h in held:
        total += 1
        proof = proof_of(h)
        if proof is None:
            continue
        if not proof.ok:
            failed.append((h, proof.reason))
            continue
        oldest = proof.at if oldest is None else min(oldest, proof.at)
        if (now - proof.at).total_seconds() <= max_age_s:
            proven += 1
    return Coverage(total, proven, tuple(failed), oldest)


def _rows(rows: Iterable[tuple[str, str, str, int, str, str, int]],
          ) -> dict[Ident, Proof]:
    return {(d, k, e): Proof(bool(ok), reason, datetime.fromisoformat(at), n)
            for d, k, e, ok, reason, at, n in rows}


_SELECT = "SELECT destination, key, etag, ok, reason, proven_at, bytes FROM proofs"


class Proofs(Ledger):
    """The proofs table, read and written by `verify`: in the ledger's file, opened by the
    ledger's rules (WAL, busy timeout, a connection per call)."""

    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        super().__init__(state_dir, read_only=read_only)
        if not read_only:
            with self._connect() as db:
                db.executescript(_SCHEMA)

    def record(self, held: Held, proof: Proof, run_id: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO proofs (destination, key, etag, ok, reason, proven_at, "
                "bytes, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*held.ident, int(proof.ok), proof.reason, sql_time(proof.at), proof.bytes, run_id))

    def all(self) -> dict[Ident, Proof]:
        with self._connect() as db:
            return _rows(db.execute(_SELECT).fetchall())

    def forget_gone(self, destination: str, held: Iterable[Held]) -> int:
        """Drops the proofs of `destination`'s versions it no longer holds (deleted by a sync,
        overwritten, expired): the table stays the size of what is retained."""
        keep = {h.ident for h in held}
        with self._connect() as db:
            rows = db.execute("SELECT destination, key, etag FROM proofs "
                              "WHERE destination = ?", (destination,)).fetchall()
            gone = [r for r in rows if tuple(r) not in keep]
            db.executemany("DELETE FROM proofs WHERE destination = ? AND key = ? AND "
                           "etag = ?", gone)
        return len(gone)


def read_only(state_dir: Path) -> dict[Ident, Proof] | None:
    """Every proof, read without writing anything (status); None when verify never ran here
    (no database, or no proofs table in it). sqlite3.Error when it cannot be read."""
    reader = Proofs.reader(state_dir)
    if reader is None or not reader.has_table("proofs"):
        return None
    return reader.all()
