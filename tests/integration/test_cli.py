"""``punchline-cli`` end to end, as a subprocess against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rendezvous.server import RendezvousServer
from tests.helpers.server import PASSWORD
from tests.helpers.tone import pitch, segment, write_tone

Cli = Callable[..., Awaitable[tuple[int, list[dict[str, Any]], str]]]


@pytest.fixture
def cli(server: RendezvousServer, tmp_path: Path) -> Cli:
    """Run punchline-cli as ``user`` (own config dir each) with --json; return (status, lines, stderr)."""

    async def run(
        user: str, *args: str, password: str | None = PASSWORD, server_url: str | None = None
    ) -> tuple[int, list[dict[str, Any]], str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNCHLINE_")}
        if password is not None:
            env["PUNCHLINE_PASSWORD"] = password
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli.main",
            *args,
            "--json",
            "--user",
            user,
            "--server",
            server_url or server.url,
            "--config-dir",
            str(tmp_path / user),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert process.returncode is not None
        return process.returncode, lines, err.decode()

    return run


async def befriend(cli: Cli) -> None:
    """Register alice and bob and make them contacts."""
    for user in ("alice", "bob"):
        assert (await cli(user, "register"))[0] == 0
    assert (await cli("alice", "add", "bob"))[0] == 0
    assert (await cli("bob", "accept", "alice"))[0] == 0


async def bob_listens(server: RendezvousServer, tmp_path: Path, *options: str) -> asyncio.subprocess.Process:
    """``listen`` as bob with ``options``; returns once it says it is listening."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNCHLINE_")}
    env["PUNCHLINE_PASSWORD"] = PASSWORD
    listener = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli.main", "listen", *options, "--json",
        "--user", "bob", "--server", server.url, "--config-dir", str(tmp_path / "bob"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert listener.stdout is not None
    assert json.loads(await asyncio.wait_for(listener.stdout.readline(), 30))["event"] == "listening"
    return listener


async def test_contact_lifecycle_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    for user in ("alice", "bob", "carol"):
        status, lines, _ = await cli(user, "register")
        assert (status, lines[0]["event"]) == (0, "registered")
    status, lines, _ = await cli("alice", "login")
    assert (status, lines) == (0, [{"event": "signed_in", "user": "alice"}])
    # The token is saved owner-only; later commands need no password.
    sessions = tmp_path / "alice" / "cli-sessions.json"
    assert sessions.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "alice" / "identity.pem").stat().st_mode & 0o777 == 0o600

    assert (await cli("alice", "add", "bob", password=None))[0] == 0
    assert (await cli("alice", "add", "carol", password=None))[0] == 0
    status, lines, _ = await cli("bob", "contacts")
    assert lines == [
        {"event": "contact", "user": "alice", "relation": "incoming", "status": "offline", "devices": []}
    ]
    assert (await cli("bob", "accept", "alice"))[0] == 0
    assert (await cli("carol", "decline", "alice"))[0] == 0

    status, lines, _ = await cli("alice", "contacts", password=None)
    assert status == 0
    assert {line["user"]: line["relation"] for line in lines} == {"bob": "mutual"}  # carol declined
    assert (await cli("alice", "remove", "bob", password=None))[0] == 0
    status, lines, _ = await cli("bob", "contacts")
    assert lines == []


async def test_whoami_prints_the_public_address_from_stun(cli: Cli) -> None:
    await cli("alice", "register")
    status, lines, stderr = await cli("alice", "whoami")
    assert status == 0, stderr
    (line,) = lines
    ip, port = line["public_address"].rsplit(":", 1)
    assert ip == "127.0.0.1"
    assert line["public_address"] == line["local_address"]  # no NAT on loopback
    assert 0 < int(port) < 65536
    assert line["user"] == "alice"
    assert len(line["device"]) == 16


async def test_failures_have_clear_messages_and_exit_codes(cli: Cli, server: RendezvousServer) -> None:
    await cli("alice", "register")
    status, lines, _ = await cli("alice", "login", password="wrong password!")
    assert (status, lines[0]["code"], lines[0]["message"]) == (
        1,
        "auth_failed",
        "Wrong username or password.",
    )
    status, lines, _ = await cli("alice", "contacts", password=None)
    assert status == 2
    assert "PUNCHLINE_PASSWORD" in lines[0]["message"]
    status, lines, _ = await cli("alice", "add", "nobody")
    assert (status, lines[0]["code"]) == (1, "no_such_user")
    status, lines, _ = await cli("alice", "register")
    assert (status, lines[0]["code"]) == (1, "username_taken")
    status, lines, _ = await cli("alice", "contacts", server_url="ws://127.0.0.1:9")
    assert status == 3
    assert "Cannot reach the server" in lines[0]["message"]


async def test_password_file_and_human_output(server: RendezvousServer, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    base = [sys.executable, "-m", "app.cli.main", "--server", server.url, "--config-dir", str(tmp_path / "c")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNCHLINE_")}
    for args in (["register", "--user", "dana"], ["login", "--user", "dana"]):
        process = await asyncio.create_subprocess_exec(
            *base, *args, "--password-file", str(password_file), stdout=asyncio.subprocess.PIPE, env=env
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
    assert out.decode() == "Signed in as dana.\n"
    # --user is remembered for this server after login.
    process = await asyncio.create_subprocess_exec(*base, "contacts", stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert "No contacts yet" in out.decode()


async def test_send_and_listen_move_a_folder_and_say_so(
    cli: Cli, server: RendezvousServer, tmp_path: Path
) -> None:
    for user in ("alice", "bob"):
        assert (await cli(user, "register"))[0] == 0
    assert (await cli("alice", "add", "bob"))[0] == 0
    assert (await cli("bob", "accept", "alice"))[0] == 0
    folder = tmp_path / "trip"
    (folder / "day 1").mkdir(parents=True)
    (folder / "day 1" / "photo.jpg").write_bytes(os.urandom(300_000))
    (folder / "notes.txt").write_text("hello\n")
    downloads = tmp_path / "downloads"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNCHLINE_")}
    env["PUNCHLINE_PASSWORD"] = PASSWORD
    listener = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli.main", "listen", "--accept-files", str(downloads), "--from", "alice",
        "--json", "--user", "bob", "--server", server.url,
        "--config-dir", str(tmp_path / "bob"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert listener.stdout is not None
        first = json.loads(await asyncio.wait_for(listener.stdout.readline(), 30))
        assert first["event"] == "listening"
        status, lines, _ = await cli("alice", "send", str(folder), "--to", "bob")
        assert status == 0, lines
        events = [line["event"] for line in lines]
        assert events[0] == "dialing"
        assert {"offer", "accepted", "progress", "done", "finished"} <= set(events)
        done = {line["path"]: line for line in lines if line["event"] == "done"}
        assert set(done) == {"trip/day 1/photo.jpg", "trip/notes.txt"}
        assert {line["path_type"] for line in done.values()} == {"lan"}
        for name, line in done.items():
            saved = downloads / name
            assert saved.read_bytes() == (tmp_path / name).read_bytes()
            assert line["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
        # The listener printed the same files as saved, with where they went.
        received: list[dict[str, Any]] = []
        while not any(line["event"] == "finished" for line in received):
            received.append(json.loads(await asyncio.wait_for(listener.stdout.readline(), 10)))
        saved_as = {line["saved_as"] for line in received if line["event"] == "done"}
        assert saved_as == {str(downloads / name) for name in done}
    finally:
        listener.terminate()
        await listener.wait()


async def test_send_explains_what_is_wrong(cli: Cli, tmp_path: Path) -> None:
    assert (await cli("alice", "register"))[0] == 0
    status, lines, _ = await cli("alice", "send", str(tmp_path / "missing.txt"), "--to", "bob")
    assert status == 2
    assert "no such file or folder" in lines[-1]["message"]
    (tmp_path / "a.txt").write_text("a")
    status, lines, _ = await cli(
        "alice", "send", str(tmp_path / "a.txt"), "--to", "bob", "--give-up-after", "0"
    )
    assert status != 0
    assert lines[-1]["event"] == "error"


async def test_call_and_listen_answer_talk_and_hang_up(
    cli: Cli, server: RendezvousServer, tmp_path: Path
) -> None:
    await befriend(cli)
    write_tone(tmp_path / "alice.wav", 440, 5)
    write_tone(tmp_path / "bob.wav", 1000, 5)
    listener = await bob_listens(
        server,
        tmp_path,
        "--answer",
        "--mic",
        str(tmp_path / "bob.wav"),
        "--record",
        str(tmp_path / "bob-hears.wav"),
    )
    try:
        assert listener.stdout is not None
        status, lines, err = await cli(
            "alice", "call", "bob", "--mic", str(tmp_path / "alice.wav"),
            "--record", str(tmp_path / "alice-hears.wav"), "--seconds", "3",
        )  # fmt: skip
        assert status == 0, (lines, err)
        events = [line["event"] for line in lines]
        assert events.index("ringing") < events.index("answered") < events.index("call_ended")
        assert "call_stats" in events
        assert (lines[-1]["event"], lines[-1]["reason"], lines[-1]["by"]) == ("call_ended", "hung up", "us")
        assert lines[-1]["message"] == "You hung up."
        received: list[dict[str, Any]] = []
        while not any(line["event"] == "call_ended" for line in received):
            received.append(json.loads(await asyncio.wait_for(listener.stdout.readline(), 10)))
        assert received[-1]["reason"] == "hung up"
        assert received[-1]["by"] == "peer"
    finally:
        listener.terminate()
        await listener.wait()
    assert 950 < pitch(segment(tmp_path / "alice-hears.wav", 1.0, 2.0)) < 1050
    assert 420 < pitch(segment(tmp_path / "bob-hears.wav", 1.0, 2.0)) < 460


async def test_a_call_to_someone_not_answering_calls_is_declined(
    cli: Cli, server: RendezvousServer, tmp_path: Path
) -> None:
    await befriend(cli)
    write_tone(tmp_path / "alice.wav", 440, 1)
    listener = await bob_listens(server, tmp_path)
    try:
        status, lines, _ = await cli(
            "alice", "call", "bob", "--mic", str(tmp_path / "alice.wav"),
            "--record", str(tmp_path / "out.wav"),
        )  # fmt: skip
        assert status == 1
        assert lines[-1]["message"] == "bob declined the call."
        assert lines[-1]["code"] == "declined"
    finally:
        listener.terminate()
        await listener.wait()
