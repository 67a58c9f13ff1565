"""What the daemon's imports leave out: apprise (3 MB of RSS, loaded when a URL is checked or an
alert sent) and the test tools."""

from __future__ import annotations

import subprocess
import sys


def test_daemon_imports_no_apprise_and_no_test_tools() -> None:
    code = ("import sys, supervisor.daemon.loop, supervisor.upload.run; "
            "print(sorted(m for m in ('apprise', 'hypothesis', 'pytest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
