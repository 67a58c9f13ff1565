"""Client-side encryption end to end (docs/encryption.md): real rclone crypt in the rclone
container, real SeaweedFS, real PostgreSQL dumps. Every object under an encrypted destination's
prefixes is rclone crypt's format (the dumps' and receipts' bytes appear in no body), a stock
rclone configured only from the doc's recipe reads them back, status, restores and the drill
decrypt byte-exact, a wrong key restores nothing, and a prefix never holds both forms."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from supervisor import cli
from supervisor.config import load as config
from supervisor.health import gather
from supervisor.record import proofs
from supervisor.restore import drill, spotcheck
from supervisor.storage.versions import parse_at
from tests.harness.cli import _detach_cli_logging  # noqa: F401 - autouse fixture
from tests.harness.files import settle
from tests.harness.images import ensure_debian_pg_image
from tests.harness.pgimage import ensure_postgres_image
from tests.harness.pgtree import volume_mountpoint
from tests.harness.poll import poll
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server, server_now
from tests.harness.sourcedb import CUSTOMERS, NEW_ORDERS, dumps_and_receipts
from tests.harness.sourcedb import counts as _counts

pytestmark = pytest.mark.docker

RCLONE = Path("/work/main/.venv/bin/rclone")
MARKER = b"ARDUA-PLAINTEXT-MARKER"
NEWEST = "postgres/last/ardua-20260302-010000.dump"
DOC = Path(__file__).resolve().parents[1] / "docs" / "encryption.md"


def key_file(path: Path, password: str, password2: str, mode: int = 0o600) -> Path:
    path.write_text(f'password = "{password}"\npassword2 = "{password2}"\n')
    path.chmod(mode)
    return path


@dataclass
class Encrypted:
    path: Path
    cfg: config.Config
    root: Path  # the dump volume's tree
    db_upload: str  # what run-once db-upload printed
    receipts: Path
    key: Path
    bucket: str


@pytest.fixture
def encrypted(tmp_path: Path, pg: PgServer, pg_volume: str, bucket: str, s3server: S3Server,
              write_config, docker_client: docker.DockerClient, capsys) -> Encrypted:
    """Two real dumps and 12 receipts (one holding MARKER), uploaded encrypted by the CLI to a
    versioned bucket."""
    s3server.client().put_bucket_versioning(Bucket=bucket,
                                            VersioningConfiguration={"Status": "Enabled"})
    _, receipts = dumps_and_receipts(pg, tmp_path, docker_client, pg_volume)
    (receipts / "2026" / "marked.txt").parent.mkdir(exist_ok=True)
    (receipts / "2026" / "marked.txt").write_bytes(MARKER * 3000)  # two crypt blocks
    key = key_file(tmp_path / "crypt.toml", "correct horse", "battery staple")
    path = write_config(tmp_path, s3server, bucket, db_volume=pg_volume,
                        receipts_dir=settle(receipts), s3={"encryption_key_file": str(key)})
    printed = []
    for job in ("db-upload", "receipts-upload"):
        assert cli.main(["--config", str(path), "run-once", job]) == 0
        printed.append(capsys.readouterr().out)
    return Encrypted(path, config.load(path), volume_mountpoint(docker_client, pg_volume),
                     printed[0], receipts, key, bucket)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_every_object_is_encrypted_and_a_stock_rclone_reads_it(
        encrypted: Encrypted, s3server: S3Server, tmp_path: Path, docker_client,
        capsys) -> None:
    # Hard links crossed the uplink once: 2 dumps uploaded, 5 links copied in S3 (ciphertext,
    # nonce and all), and status finds the newest dump by its `.bin` key and crypt's size.
    assert re.search(r"transferred\s+2 files", encrypted.db_upload), encrypted.db_upload
    assert re.search(r"copied in S3\s+5 files", encrypted.db_upload), encrypted.db_upload
    signals = gather.gather(encrypted.cfg, docker_client)
    newest = [d for d in signals.databases if d.newest]
    assert newest and all(signals.held(d) for d in newest)
    ledger = (encrypted.cfg.state_dir / "runs.sqlite3").read_bytes()
    for secret in (b"correct horse", b"battery staple"):  # nowhere the product writes
        assert secret not in ledger and secret.decode() not in encrypted.db_upload
    held = s3server.list_keys(encrypted.bucket)
    dumps, receipts = _tree(encrypted.root), _tree(encrypted.receipts)
    plain = {k for k in held if k.rsplit("/", 1)[-1] == ".last_success"}
    assert {k for k in held if k not in plain} == (
        {f"postgres/{rel}.bin" for rel in dumps} | {f"receipts/{rel}.bin" for rel in receipts})
    for key in plain:  # the sentinels stay readable by any monitor
        assert re.fullmatch(rb"\S+Z OK\n?", held[key]), held[key]
    for key, body in held.items():
        if key not in plain:
            assert body.startswith(b"RCLONE\x00\x00"), key
            assert MARKER not in body and b"PGDMP" not in body, key

    out = tmp_path / "stock"
    recipe = stock_rclone_config(tmp_path, s3server, encrypted.bucket, "correct horse",
                                 "battery staple")
    for prefix, local in (("postgres", dumps), ("receipts", receipts)):
        subprocess.run([str(RCLONE), "--config", str(recipe), "copy",
                        f"ardua-crypt:{encrypted.bucket}/{prefix}", str(out / prefix)],
                       check=True, capture_output=True, timeout=120)
        assert _tree(out / prefix) == local

    capsys.readouterr()
    cli.main(["--config", str(encrypted.path), "doctor"])
    row = next(line for line in capsys.readouterr().out.splitlines()
               if "client-side encryption" in line)
    assert "OK" in row and "on (rclone crypt): the key decrypts the newest object" in row

    # A newest dump whose object is one byte short of crypt's size for it: not held.
    s3server.put(encrypted.bucket, f"{NEWEST}.bin", held[f"{NEWEST}.bin"][:-1])
    signals = gather.gather(encrypted.cfg, docker_client)
    assert not all(signals.held(d) for d in signals.databases if d.newest)


def stock_rclone_config(tmp_path: Path, s3server: S3Server, bucket: str, password: str,
                        password2: str) -> Path:
    """rclone.conf exactly as docs/encryption.md's recovery recipe writes it: its ini block with
    the test's endpoint, keys and the two passwords obscured by `rclone obscure`."""
    block = re.search(r"```ini\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/encryption.md has no ```ini block"
    obscure = {name: subprocess.run([str(RCLONE), "obscure", value], check=True,
                                    capture_output=True, text=True).stdout.strip()
               for name, value in (("PASSWORD", password), ("PASSWORD2", password2))}
    text = block.group(1)
    for placeholder, value in {
        "https://s3.example.com": s3server.endpoint_url, "AKIA...": s3server.access_key,
        "SECRET...": s3server.secret_key, "OBSCURED_PASSWORD2": obscure["PASSWORD2"],
        "OBSCURED_PASSWORD": obscure["PASSWORD"], "us-east-1": s3server.region,
    }.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value)
    path = tmp_path / "rclone.conf"
    path.write_text(text)
    return path


def test_restores_decrypt_byte_exact_and_a_wrong_key_restores_nothing(
        encrypted: Encrypted, pg: PgServer, s3server: S3Server, tmp_path: Path,
        docker_client, capsys) -> None:
    _cli = lambda *a: cli.main(["--config", str(encrypted.path), *a])  # noqa: E731
    assert _cli("restore", "list") == 0
    listing = capsys.readouterr().out
    assert re.search(rf"custom\s+{NEWEST}\n", listing), listing  # by name, its format read

    target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(target)
    assert _cli("restore", "db", NEWEST, "--target", pg.dsn(target)) == 0
    assert "decrypted with every block authenticated" in capsys.readouterr().out
    assert _counts(pg, target) == (NEW_ORDERS, CUSTOMERS)

    # As S3 held them then (versions): a receipt changed and uploaded since is restored as it was.
    client = s3server.client()
    at = max(v["LastModified"] for v in client.list_object_versions(
        Bucket=encrypted.bucket)["Versions"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = _tree(encrypted.receipts)
    poll(lambda: server_now(client, encrypted.bucket) > parse_at(at), "S3's clock past T", 5)
    (encrypted.receipts / "2026/03/00/r0.pdf").write_bytes(b"overwritten later")
    settle(encrypted.receipts)
    assert _cli("run-once", "receipts-upload") == 0
    at_target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(at_target)
    assert _cli("restore", "db", f"{NEWEST}.bin", "--at", at, "--target", pg.dsn(at_target)) \
        == 0  # by its S3 key too
    assert _counts(pg, at_target) == (NEW_ORDERS, CUSTOMERS)
    restored = tmp_path / "restored"
    assert _cli("restore", "receipts", str(restored), "--as-root", "--at", at) == 0
    assert _tree(restored) == before
    now = tmp_path / "now"
    assert _cli("restore", "receipts", str(now), "--as-root") == 0
    assert _tree(now) == _tree(encrypted.receipts) != before
    cfg = config.load(encrypted.path)
    spot = spotcheck.spot_check_receipts(dataclasses.replace(
        cfg, drill=dataclasses.replace(cfg.drill, receipts_sample=100)))
    assert spot.ok and spot.checked == 13, spot
    image = ensure_postgres_image(docker_client, ensure_debian_pg_image(docker_client))
    report = drill.run_drill(dataclasses.replace(cfg, drill=dataclasses.replace(
        cfg.drill, image=image, network_mode="host", timeout_s=300.0, receipts_sample=5)),
        client=docker_client)
    assert report.ok, report.message
    # verify reads through the decryption too: every object proven, receipts against the local
    # files by their names without crypt's suffix; one of them rotted locally is caught.
    capsys.readouterr()
    assert _cli("verify", "--all", "--json") == 0
    proven = json.loads(capsys.readouterr().out)
    assert (proven["failed"], proven["coverage"]) == ([], 1.0), proven
    rotted = encrypted.receipts / "2026/03/01/r1.pdf"
    stamp = rotted.stat()
    rotted.write_bytes(b"X" * stamp.st_size)  # the same size, the same mtime: disk rot
    os.utime(rotted, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    proofs.Proofs(cfg.state_dir).forget_gone("s3", [])  # every proof gone: all due again
    assert _cli("verify", "--all", "--json") == 2
    failed = json.loads(capsys.readouterr().out)["failed"]
    assert [f["key"] for f in failed] == ["receipts/2026/03/01/r1.pdf.bin"], failed
    rotted.write_bytes(_tree(now)["2026/03/01/r1.pdf"])  # repaired from the restore
    os.utime(rotted, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

    key_file(encrypted.key, "another horse", "battery staple")
    wrong = f"cannot decrypt s3://{encrypted.bucket}/{NEWEST}.bin: wrong encryption key for " \
            f"destination s3?"
    other = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(other)
    capsys.readouterr()
    assert _cli("restore", "db", NEWEST, "--target", pg.dsn(other)) == 1
    assert capsys.readouterr().err.strip() == f"ardua-backup: {wrong}"
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'orders'", db=other).strip() \
        == "0"
    empty = tmp_path / "empty"
    assert _cli("restore", "receipts", str(empty), "--as-root") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wrong encryption key for destination s3?" in err
    assert not empty.exists() or not any(empty.iterdir())
    assert _cli("doctor") == 2  # CRITICAL: the key no longer matches what S3 holds
    row = next(line for line in capsys.readouterr().out.splitlines()
               if "client-side encryption" in line)
    assert "CRITICAL" in row and "wrong encryption key for destination s3?" in row


def test_a_prefix_never_holds_both_forms(tmp_path: Path, s3server: S3Server, bucket: str,
                                         write_config, capsys) -> None:
    """Encryption turned on or off, or the key changed, for a prefix that holds objects in the
    other form: refused before anything changes, one line that says what to do."""
    receipts = tmp_path / "receipts"
    (receipts / "a").mkdir(parents=True)
    (receipts / "a" / "r1.pdf").write_bytes(b"%PDF receipt one" * 100)
    (receipts / "r2.pdf").write_bytes(b"%PDF receipt two")
    settle(receipts)
    key = key_file(tmp_path / "crypt.toml", "k1", "s1")

    def run(prefix: str, key_path: Path | None) -> tuple[int, str]:
        path = write_config(tmp_path, s3server, bucket, receipts_dir=receipts, overrides={
            "s3": {"encryption_key_file": str(key_path) if key_path else None},
            "jobs": {"receipts-upload": {"prefix": prefix}}})
        capsys.readouterr()
        code = cli.main(["--config", str(path), "run-once", "receipts-upload"])
        return code, capsys.readouterr().err

    assert run("plain", None)[0] == 0
    assert run("sealed", key)[0] == 0
    held = s3server.list_keys(bucket)
    assert {k for k in held if k.startswith("sealed/") and not k.endswith(".last_success")} \
        == {"sealed/a/r1.pdf.bin", "sealed/r2.pdf.bin"}

    code, err = run("plain", key)  # off -> on
    assert code != 0
    assert f"s3://{bucket}/plain/ holds 2 object(s) written without encryption" in err
    assert "use a new prefix or bucket" in err
    code, err = run("sealed", None)  # on -> off
    assert code != 0 and "holds objects encrypted with rclone crypt" in err
    assert "s3.encryption_key_file again, or use a new prefix or bucket" in err
    key_file(key, "k2", "s1")  # the key changed
    code, err = run("sealed", key)
    assert code != 0
    assert f"the encryption key of destination s3 does not decrypt s3://{bucket}/sealed/" in err
    assert "(a changed key?)" in err and "k2" not in err
    assert s3server.list_keys(bucket) == held  # nothing changed anywhere

    key.chmod(0o644)  # the key file's mode: a config error naming it
    code, err = run("sealed", key)
    assert code == 78
    assert f"s3.encryption_key_file {key}" in err and "k2" not in err
    key.write_text('password = "only one"\n')
    key.chmod(0o600)
    code, err = run("sealed", key)
    assert code == 78 and f"s3.encryption_key_file {key} must set password2" in err
