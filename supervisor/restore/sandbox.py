"""`restore db` of an SQL script (plain, cluster): psql in a throwaway container, never here.

A script from S3 is data written by whoever holds the S3 write key, and psql obeys the
meta-commands in it: `\\! cmd` and `\\o |cmd` run shell commands as the user running psql, which
for `restore db` is root on this host. So the script reaches only a psql in a container of
drill.image (the same image the drill restores with): as nobody (65534:65534), read-only root
filesystem (its /tmp a noexec tmpfs), every capability dropped, no-new-privileges, the dump
bind-mounted read-only and nothing else of this host, MEM_LIMIT and PIDS_LIMIT, killed at
drill.timeout, in drill.network_mode (it reaches the target through it). psql's restricted
mode goes on top where the image's psql is one whose restricted mode holds
(pgtools.restricted_mode_safe, read with `psql --version`). docs/security.md says what a
command in the script can still do there.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import docker

from supervisor.config.load import Config
from supervisor.containers import engine
from supervisor.containers.jobs import run_labels
from supervisor.postgres import dumpformat, pgtools
from supervisor.record.report import new_run_id

JOB = "restore-db"  # the label of its containers
SCRIPT_MOUNT = "/restore"
USER = "65534:65534"  # nobody:nogroup, in Debian and Alpine images alike
MEM_LIMIT = "1g"
PIDS_LIMIT = 64
# libpq's settings from the operator's environment that the host's psql used to read; never
# the ones naming files (PGPASSFILE, PGSERVICEFILE, PGSSLROOTCERT...): the container has none.
PASSED_ENV = ("PGUSER", "PGPASSWORD", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE",
              "PGSSLMODE", "PGCONNECT_TIMEOUT", "PGAPPNAME", "PGOPTIONS", "PGTZ",
              "PGCLIENTENCODING", "PGTARGETSESSIONATTRS")


@dataclass(frozen=True)
class ScriptRun:
    exit_code: int
    stderr: str  # psql's, its first pgtools.SCRIPT_OUTPUT_BYTES
    timed_out: bool
    seconds: float
    restricted: bool  # psql ran in restricted mode
    psql_version: tuple[int, int] | None


def _spec(config: Config, command: list[str], labels: dict[str, str],
          mounts: list[engine.Mount] | None = None) -> engine.Spec:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    return engine.Spec(
        image=config.drill.image, command=command, mounts=mounts or [],
        env={**env, "HOME": "/tmp"}, labels=labels, network_mode=config.drill.network_mode,
        user=USER, mem_limit=MEM_LIMIT, pids_limit=PIDS_LIMIT,
    )


def psql_version(config: Config, client: docker.DockerClient,
                 labels: dict[str, str]) -> tuple[int, int] | None:
    """The version of drill.image's psql (None: it does not say)."""
    run = engine.run_oneshot(client, _spec(config, ["psql", "--version"], labels), 60)
    return pgtools.version_of(run.stdout) if run.exit_code == 0 else None


def run_script(config: Config, script: Path, fmt: str, connect: list[str], *,
               client: docker.DockerClient | None = None) -> ScriptRun:
    """Restores one SQL script (a file of format `fmt`) with psql in a throwaway container.
    Raises engine.DockerError."""
    client = client or engine.connect()
    engine.ensure_image(client, config.drill.image, "drill.image")
    labels = run_labels(config, JOB, new_run_id())
    version = psql_version(config, client, labels)
    restricted = fmt != dumpformat.CLUSTER_GZ and pgtools.restricted_mode_safe(version)
    # nobody reads it through the mount; its folder (state_dir/restore/…) stays 0700 root's.
    os.chmod(script, 0o644)
    path = f"{SCRIPT_MOUNT}/{script.name}"
    args = pgtools.script_args(path, "psql", connect=connect, fmt=fmt,
                               restrict_key=secrets.token_hex(16) if restricted else "")
    spec = _spec(config, args, labels, [engine.file_mount(str(script), path)])
    run = engine.run_oneshot(client, spec, config.drill.timeout_s)
    return ScriptRun(run.exit_code, run.stderr, run.timed_out, run.duration_s,
                     restricted, version)
