"""Where the real systemd-journald is, for the tests that start one of their own."""

from pathlib import Path

JOURNALD = Path("/lib/systemd/systemd-journald")
