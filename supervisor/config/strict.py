"""Which files a config names, and the one file-mode rule (core.files) applied to each.

config.load.load() calls check() on every load, so check-config, run-once and every other
command, the daemon's start and each reload refuse the same files with the same line (exit 78).
A new file the product reads (an encryption key) goes into named_files: that is the only place
that lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol

from supervisor.core.files import file_problem
from supervisor.storage.destination import Destination


class Config(Protocol):
    """What of a config.load.Config this reads (config.load imports this module)."""

    path: Path
    destinations: tuple[Destination, ...]
    alerts: Any  # config.load.AlertsConfig
    webhook: Any  # config.load.WebhookConfig


class NamedFile(NamedTuple):
    setting: str  # the key that names it, as errors show it
    path: Path
    secret: bool  # also refused when readable by group or others


def named_files(config: Config) -> list[NamedFile]:
    """Every file the config names that the product reads, each destination's in file order."""
    files = [NamedFile(d.setting(key), path, True) for d in config.destinations
             for key, path in (("credentials_file", d.credentials_file),
                               ("encryption_key_file", d.encryption_key_file))
             if path is not None]
    if config.alerts.urls_file is not None:
        files.append(NamedFile("alerts.urls_file", config.alerts.urls_file, True))
    if config.webhook.listen and config.webhook.token_file is not None:
        files.append(NamedFile("webhook.token_file", config.webhook.token_file, True))
    return files


def problem(config: Config) -> str:
    """The first rule the config file or a file it names breaks, as one line, or ""."""
    if found := file_problem(config.path, "config file", secret=False):
        return found
    for named in named_files(config):
        if not named.path.exists():
            continue  # not the rule's business: the read names it (preflight, alerts)
        if found := file_problem(named.path, named.setting, secret=named.secret):
            return f"{config.path}: {found}"
    return ""
