"""Benchmarks: scripts that print a table of measured ratios against a baseline measured in the
same run (README: "Compare modes", "Overhead of a run", "Memory")."""

import signal
import sys


def stop_cleanly_on_sigterm() -> None:
    """SIGTERM (`kill`, a timeout) ends a benchmark as Ctrl-C does, through its with-blocks: the
    S3 server, the containers and the temporary trees it made go with it, none left running."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
