"""The webhook's pure rules: the [webhook] keys, what each event does to the scheduler's next
fire (daemon.webhook.Push.gate, on a real state_dir), and the verdict's row for an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.config.load import ConfigError, load, parse
from supervisor.core.states import CRITICAL, OK
from supervisor.daemon import webhook
from supervisor.health.verdict import Signals, evaluate
from supervisor.postgres import hooks
from supervisor.postgres.dumps import DatabaseDumps, Dump
from tests.harness.configs import MINIMAL
from tests.harness.signals import one_destination

BASE = 'state_dir = "{state}"\n' + MINIMAL + 'timeout = "10m"\n'
NOW = datetime(2026, 1, 5, 1, 0, 30, tzinfo=UTC)


def _config(tmp_path: Path, webhook_table: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(state=tmp_path / "state") + "[webhook]\n" + webhook_table)
    return load(path)


@pytest.mark.parametrize(("table", "error"), [
    ('listen = "127.0.0.1:8187"\n', "webhook.token_file: is required when webhook.listen is set"),
    ('listen = "localhost:8187"\n', "webhook.listen: 'localhost:8187' is not an IPv4 address "
                                    "and port like '127.0.0.1:8187'"),
    ('listen = "127.0.0.1:0"\n', "webhook.listen: '127.0.0.1:0' is not an IPv4 address"),
    ('job = "nope"\n', "webhook.job: 'nope' is not a configured job"),
])
def test_webhook_keys_are_checked(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse(BASE.format(state=tmp_path) + "[webhook]\n" + table, tmp_path / "c.toml")


def test_a_token_that_is_not_one_url_segment_is_refused_without_showing_it(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("has/a slash and spaces\n")
    token.chmod(0o600)
    with pytest.raises(ConfigError) as error:
        _config(tmp_path, f'listen = "127.0.0.1:8187"\ntoken_file = "{token}"\n')
    assert "must hold one token of 16 to 256 characters" in str(error.value)
    assert "slash" not in str(error.value)


def _push(tmp_path: Path) -> tuple[webhook.Push, object, list[str]]:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    token.chmod(0o600)
    config = _config(tmp_path, f'listen = "127.0.0.1:8187"\ntoken_file = "{token}"\n')
    (tmp_path / "state").mkdir(exist_ok=True)
    woken: list[str] = []
    push = webhook.Push(lambda: woken.append("wake"), lambda: woken.append("check"))
    push.config = config  # type: ignore[assignment]
    return push, config, woken


def _event(config, event: str, at: datetime) -> None:
    state_dir = config.state_dir
    hooks.write_state(state_dir, hooks.after(hooks.read_state(state_dir), "db-upload", event, at))


def test_pre_backup_holds_a_due_run_until_post_backup_runs_it_as_webhook(tmp_path) -> None:
    push, config, _ = _push(tmp_path)
    _event(config, hooks.PRE, NOW)
    assert push.gate(config, "db-upload", NOW, NOW, busy=False) == (None, "")
    assert push.wakes() == [NOW + timedelta(minutes=10)]  # bounded by the job's timeout
    _event(config, hooks.POST, NOW + timedelta(seconds=40))
    push._requested.add("db-upload")  # what answer() does on post-backup
    later = NOW + timedelta(seconds=41)
    assert push.gate(config, "db-upload", None, later, busy=True) == (None, "")  # queued
    assert push.gate(config, "db-upload", None, later, busy=False) == (later, webhook.WEBHOOK)
    assert push.gate(config, "db-upload", None, later, busy=False) == (None, "")  # once
    assert push.wakes() == []


def test_error_or_the_timeout_ends_the_hold(tmp_path) -> None:
    push, config, _ = _push(tmp_path)
    _event(config, hooks.PRE, NOW)
    assert push.gate(config, "db-upload", NOW, NOW, busy=False) == (None, "")
    _event(config, hooks.ERROR, NOW + timedelta(seconds=5))
    later = NOW + timedelta(seconds=6)
    assert push.gate(config, "db-upload", None, later, busy=False) == (later, "")
    _event(config, hooks.PRE, NOW)  # never followed by post-backup or error
    late = NOW + timedelta(minutes=10, seconds=1)
    assert push.gate(config, "db-upload", late, late, busy=False) == (late, "")


def test_a_post_backup_run_ignores_the_quiet_period_and_go_cron_only(tmp_path) -> None:
    _, config, _ = _push(tmp_path)
    run = webhook.run_config(config, webhook.WEBHOOK)
    assert run.guard.quiet_period_s == 0 and run.health.db_health_url == ""
    assert run.guard.max_shrink_share == config.guard.max_shrink_share
    assert webhook.run_config(config, "") is config


def _signals(dump_at: datetime, error_at: datetime | None) -> Signals:
    dump = Dump(key="last/ardua-20260105-010000.dump", size=5000, modified=dump_at)
    return one_destination(NOW, (DatabaseDumps("ardua", dump, None),), in_s3=True,
                           dump_job="db-upload", hook_error_at=error_at, dump_uploaded_at=None)


def test_an_error_is_critical_until_a_newer_dump(tmp_path) -> None:
    _, config, _ = _push(tmp_path)
    error = evaluate(_signals(NOW - timedelta(hours=1), NOW), config.health, NOW)
    row = next(c for c in error.checks if c.name == "db-backup webhook")
    assert row.state == CRITICAL and error.state == CRITICAL
    assert "the dump container reported an error at 2026-01-05T01:00:30Z" in error.diagnoses
    newer = evaluate(_signals(NOW + timedelta(minutes=1), NOW), config.health,
                     NOW + timedelta(minutes=2))
    assert next(c for c in newer.checks if c.name == "db-backup webhook").state == OK
