"""Source databases and their real `pg_dump -Fc` dumps, for the restore, drill, PITR and
server-side copy tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.postgres import PgServer

OLD_ORDERS, NEW_ORDERS, CUSTOMERS = 10, 1500, 40


def source_db(pg: PgServer, orders: int) -> str:
    name = f"src_{secrets.token_hex(4)}"
    pg.createdb(name)
    pg.psql(
        f"""
        CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
        CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
                             total numeric(10, 2), created_at timestamptz NOT NULL);
        INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, {CUSTOMERS}) g;
        INSERT INTO orders (customer_id, total, created_at)
            SELECT 1 + g % {CUSTOMERS}, g * 1.5, now() - g * interval '1 minute'
            FROM generate_series(1, {orders}) g;
        """,
        db=name,
    )
    return name


def counts(pg: PgServer, db: str) -> tuple[int, int]:
    out = pg.psql("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM customers)", db)
    orders, customers = out.strip().split("|")
    return int(orders), int(customers)


def dumps_and_receipts(
    pg: PgServer, tmp_path: Path, client: docker.DockerClient, volume: str
) -> tuple[list[tuple[datetime, bytes]], Path]:
    """Two real dumps (OLD_ORDERS on 2026-03-01, NEW_ORDERS on 03-02) in a postgres-backup-local
    tree in `volume`, and 12 receipts under tmp_path/receipts (not yet settled)."""
    dumps = []
    for when, orders in ((datetime(2026, 3, 1, 1, 0), OLD_ORDERS),
                         (datetime(2026, 3, 2, 1, 0), NEW_ORDERS)):
        path = pg.pg_dump(source_db(pg, orders), tmp_path / f"{orders}.dump")
        dumps.append((when, path.read_bytes()))
    fill_volume(client, volume, lambda root: make_backups_tree(root, dumps))
    receipts = tmp_path / "receipts"
    for i in range(12):
        (receipts / f"2026/03/{i:02d}").mkdir(parents=True)
        (receipts / f"2026/03/{i:02d}/r{i}.pdf").write_bytes(secrets.token_bytes(2000 + i))
    return dumps, receipts


DAYS = [datetime(2026, 3, d, 1, 0, 0, tzinfo=UTC) for d in (1, 2, 3)]  # Sun, Mon (new week), Tue


@pytest.fixture(scope="module", name="dumps")
def dumps_fixture(
    pg: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[datetime, bytes]]:
    """Real `pg_dump -Fc` dumps of a database that grows a little every day (~100 KB each)."""
    db = f"ardua_links_{secrets.token_hex(3)}"
    pg.createdb(db)
    pg.psql("CREATE TABLE notes (id serial PRIMARY KEY, body text)", db=db)
    out, folder = [], tmp_path_factory.mktemp("link-dumps")
    for i, when in enumerate(DAYS):
        pg.psql("INSERT INTO notes (body) SELECT md5(random()::text) || md5(random()::text) "
                f"FROM generate_series(1, {2000 + 10 * i})", db=db)
        out.append((when, pg.pg_dump(db, folder / f"{i}.dump").read_bytes()))
    return out
