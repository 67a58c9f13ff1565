"""The words every part of ardua-backup shares, declared once: the health states and their order,
how a run ends, and the process exit codes. `status`, `doctor`, the alerts, the metrics and the CLI
all read them from here."""

from __future__ import annotations

from collections.abc import Iterable

# -- health: one verdict, worst last ---------------------------------------------------------------
OK, WARNING, UNKNOWN, CRITICAL = "OK", "WARNING", "UNKNOWN", "CRITICAL"
SEVERITY = (OK, WARNING, UNKNOWN, CRITICAL)
# The monitoring-plugin convention (Nagios, Icinga, Sensu): `status` and `doctor` exit with these.
STATUS_EXIT = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}


def rank(state: str) -> int:
    """OK 0 < WARNING 1 < UNKNOWN 2 < CRITICAL 3; ValueError for anything else."""
    try:
        return SEVERITY.index(state)
    except ValueError:
        raise ValueError(f"unknown health state {state!r} (one of {', '.join(SEVERITY)})") from None


def worst(states: Iterable[str]) -> str:
    """The worst of `states`; OK when there is none."""
    return max(states, key=rank, default=OK)


# -- runs: how a run ends, and what the ledger says of one that has not -------------------------
SUCCESS, FAILED, REFUSED = "success", "failed", "refused"
# Not a failure: the source is being written right now; nothing ran, try again after it settles.
DEFERRED = "deferred"
RESULTS = (SUCCESS, FAILED, REFUSED, DEFERRED)
BAD_RESULTS = (FAILED, REFUSED)  # a person must hear of these
RUNNING, INTERRUPTED = "running", "interrupted"

# -- process exit codes -------------------------------------------------------------------------
EXIT_OK, EXIT_FAILED = 0, 1
EXIT_DEFERRED = 75  # sysexits.h EX_TEMPFAIL: nothing went wrong, try again later
# sysexits.h EX_CONFIG: every command's code for an invalid config (`status`: UNKNOWN, 3). The unit
# has RestartPreventExitStatus=78: restarting cannot fix a config.
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def exit_code(result: str) -> int:
    """A run's result as the command's exit code."""
    return EXIT_OK if result == SUCCESS else EXIT_DEFERRED if result == DEFERRED else EXIT_FAILED
