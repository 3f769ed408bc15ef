"""The README's "Try it" runs as written: a server on this computer, two accounts, connect and send.

The blocks are taken from README.md itself; only ``.venv/bin/`` (this test's interpreter's folder) and
``/tmp/`` (a temporary folder) are substituted. They run in a private network namespace (``unshare -n``,
root), so the server's default ports are free and nothing else on the machine is touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
pytestmark = pytest.mark.slow


def try_it_blocks() -> dict[str, str]:
    """The section's shell blocks by their first line ("# Terminal 1: ..."), in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return {block.splitlines()[0]: block for block in blocks if block.startswith("# Terminal")}


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root for a private network namespace (unshare -n)")
def test_the_readme_try_it_works_as_written(tmp_path: Path) -> None:
    blocks = list(try_it_blocks().values())
    assert [b.splitlines()[0].split(":")[0] for b in blocks] == [
        "# Terminal 1",
        "# Terminal 2",
        "# Terminal 3",
        "# Terminal 2 again",
    ]
    bin_dir = Path(sys.executable).parent
    work = tmp_path / "tmp"
    work.mkdir()

    def as_here(block: str) -> str:
        # /tmp/ first: the interpreter itself may live under /tmp (a clone there).
        return block.replace("/tmp/", f"{work}/").replace(".venv/bin/", f"{bin_dir}/")

    server, accounts, listener, alice = (as_here(b) for b in blocks)
    script = f"""
set -euo pipefail
ip link set lo up
export HOME={tmp_path}
( {server} ) > {work}/server.log 2>&1 &
for _ in $(seq 100); do grep -q "listening" {work}/server.log 2>/dev/null && break; sleep 0.1; done
{accounts}
( {listener} ) > {work}/listen.log 2>&1 &
for _ in $(seq 150); do grep -q "waiting for connections" {work}/listen.log && break; sleep 0.1; done
{alice}
kill %2 %1
wait || true
"""
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    logs = "\n".join(
        f"--- {name}\n{(work / name).read_text(errors='replace')}"
        for name in ("server.log", "listen.log")
        if (work / name).exists()
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs}"
    assert "echoes answered" in done.stdout
    assert "5/5 echoes answered" in done.stdout, done.stdout
    assert (work / "bob-files" / "hello.txt").read_text() == "hello bob\n"
    assert "alice" in done.stdout  # the contact list
