"""One file-mode rule (core.files, like sshd's StrictModes), applied by config.load() to the
config file and every file it names (config.strict.named_files): the table of the rule on
os.stat results, then each command that loads a config proving it end to end with the real
CLI: check-config, run-once, the daemon's start and its reload (SIGHUP). Also: a path that must
be a directory but is a file is named "is not a directory"."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from supervisor.config import load as config
from supervisor.config import strict
from supervisor.core.files import directory_problem, file_problem, mode_problem
from supervisor.core.states import EXIT_CONFIG
from tests.conftest import write_credentials
from tests.harness.cli import run_cli, service
from tests.harness.configs import MINIMAL

NOBODY = 65534
ME = 4321000  # a uid without an account: messages show the number


def _stat(mode: int, uid: int = 0) -> os.stat_result:
    # (st_mode, st_ino, st_dev, st_nlink, st_uid, st_gid, st_size, st_atime, st_mtime, st_ctime)
    return os.stat_result((mode, 1, 1, 1, uid, 0, 10, 0, 0, 0))


REG, DIR, FIFO = stat.S_IFREG, stat.S_IFDIR, stat.S_IFIFO


@pytest.mark.parametrize(("mode", "uid", "secret", "expected"), [
    # the config file (not secret): others may read it, nobody else may change it
    (REG | 0o644, 0, False, ""),
    (REG | 0o640, ME, False, ""),  # the user running the process
    (REG | 0o600, 0, False, ""),
    (REG | 0o664, 0, False, "is writable by group or others (mode 0664); run: chmod go-w"),
    (REG | 0o646, 0, False, "is writable by group or others (mode 0646); run: chmod go-w"),
    (REG | 0o666, 0, False, "is writable by group or others (mode 0666); run: chmod go-w"),
    (REG | 0o644, NOBODY, False, "is owned by nobody, not root or 4321000: another user could "
                                 "change it; run: chown 4321000"),
    (REG | 0o644, 4242, False, "is owned by 4242"),
    # a secret file (credentials, alert URLs): also unreadable by group and others
    (REG | 0o600, 0, True, ""),
    (REG | 0o400, ME, True, ""),
    (REG | 0o640, 0, True, "is readable by other users (mode 0640); run: chmod 600"),
    (REG | 0o604, 0, True, "is readable by other users (mode 0604); run: chmod 600"),
    (REG | 0o601, 0, True, "is readable by other users (mode 0601); run: chmod 600"),
    (REG | 0o620, 0, True, "is writable by group or others (mode 0620); run: chmod 600"),
    (REG | 0o600, NOBODY, True, "is owned by nobody"),
    # not a file at all
    (DIR | 0o755, 0, False, "is a directory, not a file"),
    (FIFO | 0o600, 0, True, "is not a regular file"),
])
def test_the_rule(mode: int, uid: int, secret: bool, expected: str) -> None:
    path = Path("/etc/ardua-backup/x")
    found = mode_problem(path, _stat(mode, uid), secret=secret, trusted={0, ME}, me=ME)
    if not expected:
        assert found == ""
    else:
        assert found.startswith(f"{path} {expected}"), found
        assert "\n" not in found
        if "run:" in found:
            assert found.endswith(f" {path}")  # the command names the file


def test_file_problem_names_a_missing_file_and_a_file_in_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    missing = tmp_path / "nope"
    assert file_problem(missing, "s", secret=True) == f"s {missing} does not exist"
    assert file_problem(blocker / "creds", "s", secret=True) == (
        f"s {blocker / 'creds'} cannot be read: a part of its path is not a directory")
    assert file_problem(tmp_path, "s", secret=False) == f"s {tmp_path} is a directory, not a file"


def test_directory_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert directory_problem(tmp_path) == ""
    assert directory_problem(tmp_path / "new", missing_ok=True) == ""
    assert directory_problem(tmp_path / "new") == f"{tmp_path / 'new'} does not exist"
    assert directory_problem(blocker) == f"{blocker} is not a directory"
    assert directory_problem(blocker / "sub") == f"{blocker / 'sub'}: {blocker} is not a directory"


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A config naming a credentials file and an alert URLs file, all as the rule wants."""
    creds = write_credentials(tmp_path / "aws-credentials", "AKEXAMPLE", "secret")
    urls = tmp_path / "alert-urls"
    urls.write_text("json://127.0.0.1:9/token\n")
    urls.chmod(0o600)
    cfg = tmp_path / "c.toml"
    cfg.write_text(MINIMAL.replace('bucket = "ardua-backups"',
                                   f'bucket = "ardua-backups"\ncredentials_file = "{creds}"')
                   + f'[alerts]\nurls_file = "{urls}"\n')
    cfg.chmod(0o644)
    return cfg, creds, urls


def test_named_files_is_the_one_list(tmp_path: Path) -> None:
    cfg, creds, urls = _files(tmp_path)
    assert strict.named_files(config.load(cfg)) == [
        strict.NamedFile("s3.credentials_file", creds, True),
        strict.NamedFile("alerts.urls_file", urls, True)]


# (what to break, how, the line check-config (and run-once, for the first two) must print)
BREAKS = [
    ("config", lambda p: p.chmod(0o666),
     "{cfg}: config file {p} is writable by group or others (mode 0666); run: chmod go-w {p}"),
    ("creds", lambda p: p.chmod(0o644),
     "{cfg}: s3.credentials_file {p} is readable by other users (mode 0644); run: chmod 600 {p}"),
    ("creds", lambda p: os.chown(p, NOBODY, -1),
     "{cfg}: s3.credentials_file {p} is owned by nobody, not root: another user could "
     "change it; run: chown root {p}"),
    ("urls", lambda p: p.chmod(0o640),
     "{cfg}: alerts.urls_file {p} is readable by other users (mode 0640); run: chmod 600 {p}"),
]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
@pytest.mark.parametrize(("which", "breaks", "line"), BREAKS,
                         ids=["config-0666", "creds-0644", "creds-nobody", "urls-0640"])
def test_check_config_and_run_once_refuse_with_78_and_one_line(
        tmp_path: Path, which: str, breaks, line: str) -> None:
    cfg, creds, urls = _files(tmp_path)
    config.load(cfg)  # valid before the break
    path = {"config": cfg, "creds": creds, "urls": urls}[which]
    breaks(path)
    expected = line.format(cfg=cfg, p=path)
    if which == "config":
        expected = expected.removeprefix(f"{cfg}: ")
    checked = run_cli("check-config", config=cfg)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        EXIT_CONFIG, "", f"invalid: {expected}\n")
    if which == "urls" or "nobody" in expected:
        return  # the same load: run-once is proven on the two measured cases
    ran = run_cli("run-once", "db-upload", config=cfg)
    assert (ran.returncode, ran.stdout, ran.stderr) == (
        EXIT_CONFIG, "", f"ardua-backup: {expected}\n")


def test_a_missing_credentials_file_is_left_to_its_reader(tmp_path: Path) -> None:
    """The rule judges files that exist; a missing credentials file is named when S3 is used
    (the preflight), as before, so `next` works on the example config anywhere."""
    cfg, creds, _ = _files(tmp_path)
    creds.unlink()
    assert config.load(cfg).destination().credentials_file == creds


def test_state_dir_that_is_a_file_is_not_a_directory(tmp_path: Path) -> None:
    cfg, _, _ = _files(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg.write_text(f'state_dir = "{blocker}"\n' + cfg.read_text())
    checked = run_cli("check-config", config=cfg)
    assert (checked.returncode, checked.stderr) == (
        EXIT_CONFIG, f"invalid: {cfg}: state_dir: {blocker} is not a directory\n")


@pytest.mark.docker
def test_daemon_start_and_reload_apply_the_rule(write_config, s3server, bucket,
                                                tmp_path: Path) -> None:
    jobs = {"db-upload": {"schedule": "0 0 1 1 *", "catch_up": False},
            "receipts-upload": {"schedule": "0 4 * * *", "catch_up": False}}
    cfg = write_config(tmp_path, s3server, bucket, jobs=jobs, health={"db_container": ""})
    creds = tmp_path / "aws-credentials"
    problem = (f"reload failed, previous schedule kept: {cfg}: s3.credentials_file {creds} is "
               f"readable by other users (mode 0644); run: chmod 600 {creds}")
    with service(cfg, tmp_path) as (proc, notify):
        notify.expect("READY", "1", timeout=60)
        creds.chmod(0o644)
        proc.send_signal(signal.SIGHUP)
        notify.expect("RELOADING", "1")
        status = notify.expect("READY", "1")["STATUS"]
        assert status.startswith(problem), status
        assert proc.poll() is None  # the previous schedule keeps running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert problem in (tmp_path / "daemon.log").read_text()

    cfg.chmod(0o666)  # both broken: the config file itself is judged first
    again = tmp_path / "again"
    again.mkdir()
    with service(cfg, again) as (proc, _):
        assert proc.wait(timeout=30) == EXIT_CONFIG
    assert (again / "daemon.log").read_text().strip().splitlines() == [
        f"<3>config file {cfg} is writable by group or others (mode 0666); run: chmod go-w {cfg}"]


@pytest.mark.docker
def test_a_source_or_restore_dest_that_is_a_file_is_not_a_directory(
        write_config, s3server, bucket, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=blocker)
    ran = run_cli("run-once", "receipts-upload", config=cfg)
    assert ran.returncode == 1
    assert f"=> source directory {blocker} is not a directory on this host" in ran.stdout
    # A receipt in S3: the restore gets past choosing its destination (restore.source) to DEST.
    s3server.client().put_object(Bucket=bucket, Key="receipts/r1.pdf", Body=b"%PDF-1.4")
    restored = run_cli("restore", "receipts", str(blocker / "into"), config=cfg)
    assert (restored.returncode, restored.stderr.strip().splitlines()) == (
        1, [f"ardua-backup: {blocker / 'into'}: afile exists and is not a directory"])


@pytest.mark.parametrize("url", ["http://AKEXAMPLE:s3cret@127.0.0.1:8333",
                                 "http://127.0.0.1:8333/?X-Amz-Credential=AKEXAMPLE",
                                 "http://127.0.0.1:8333#s3cret"])
def test_an_endpoint_url_holds_no_credentials(tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(MINIMAL.replace('bucket = "ardua-backups"',
                                   f'bucket = "ardua-backups"\nendpoint_url = "{url}"'))
    with pytest.raises(config.ConfigError, match=r"s3.endpoint_url: 'http://127.0.0.1/...' "
                                                 r"must not hold user:password@") as err:
        config.load(cfg)
    assert "s3cret" not in str(err.value) and "AKEXAMPLE" not in str(err.value)
