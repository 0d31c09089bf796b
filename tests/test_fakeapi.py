"""The fake API a user can run: ``python -m konbini_ld.fakeapi``, then ``fetch`` against it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_a_user_can_fetch_end_to_end_from_the_fake_api(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-m", "konbini_ld.fakeapi", "--port", "0", "--credits", "5",
                               "--day", "2"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        ids = re.search(r"audio ids include (\d+)", line)
        assert url and ids, line
        env = {**os.environ, "KONBINI_API_URL": url.group(1), "KONBINI_API_KEY": "demo-key"}
        run = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(tmp_path / "s"), "fetch",
                              "--videos", ids.group(1)], capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 0 and "fetched 2" in run.stderr and "remaining 3" in run.stderr, run.stderr
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout:
            server.stdout.close()


def test_its_help_documents_its_options() -> None:
    out = subprocess.run([sys.executable, "-m", "konbini_ld.fakeapi", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--port", "--key", "--credits", "--latency", "--day"):
        assert option in out.stdout
