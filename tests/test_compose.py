"""compose.yaml stays faithful to the design and to the product's defaults."""

from pathlib import Path

import yaml

from supervisor.config import load as config
from supervisor.storage import markers

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_db_backup_is_postgres_backup_local_writing_custom_format_dumps() -> None:
    svc = SERVICES["db-backup"]
    assert svc["image"].startswith("prodrigestivill/postgres-backup-local:")
    env = svc["environment"]
    assert env["BACKUP_SUFFIX"] == ".dump"
    assert "-Fc" in env["POSTGRES_EXTRA_OPTS"].split()
    for key in ("SCHEDULE", "TZ", "BACKUP_KEEP_DAYS", "BACKUP_KEEP_WEEKS", "BACKUP_KEEP_MONTHS"):
        assert env[key]
    assert "pg_backups:/backups" in svc["volumes"]
    assert COMPOSE["volumes"]["pg_backups"]["name"] == "pg_backups"


def test_upload_services_sync_read_only_with_the_products_flags() -> None:
    example = config.load(ROOT / "config.example.toml")
    for job in ("db-upload", "receipts-upload"):
        svc = SERVICES[job]
        cfg = example.job(job)
        assert svc["image"] == example.rclone.image
        cmd = svc["command"]
        assert cmd[:3] == ["sync", "/source/", example.destination().remote(cfg.prefix)]
        for name in markers.MARKER_NAMES:
            assert f"/{name}" in cmd
        assert any(v.endswith(":/source:ro") for v in svc["volumes"])
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        env = svc["environment"]
        assert not any("SECRET" in k or "ACCESS_KEY" in k for k in env)


def test_db_backup_calls_the_daemons_webhook_on_the_bridge_gateway() -> None:
    """postgres-backup-local's hooks/00-webhook: post-backup and error go to WEBHOOK_URL,
    pre-backup to WEBHOOK_PRE_BACKUP_URL (docs/webhook.md)."""
    svc = SERVICES["db-backup"]
    env = svc["environment"]
    assert env["WEBHOOK_URL"] == env["WEBHOOK_PRE_BACKUP_URL"]
    assert env["WEBHOOK_URL"].startswith("http://host.docker.internal:8187/hooks/pbl/${")
    assert "host.docker.internal:host-gateway" in svc["extra_hosts"]
    assert "WEBHOOK_ERROR_URL" not in env and "WEBHOOK_POST_BACKUP_URL" not in env  # no twice
