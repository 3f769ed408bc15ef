"""The rendezvous server run inside the app: for a LAN (``punchline --host-server``) and for the demo.

`punchline demo` shows a newcomer the whole app on one machine: a server on loopback, two accounts
("alice" and "bob") that are already contacts, and two windows signed in as them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from app.account.identity import DeviceIdentity, load_or_create_identity
from app.account.signing_in import register, sign_in
from app.nat.peer_link import route_address
from app.signalling.client import Credentials, SignallingClient
from rendezvous.config import Limits, ServerConfig, TurnConfig
from rendezvous.server import RendezvousServer, StartupError
from rendezvous.wire.ports import DEFAULT_PORT, DEFAULT_STUN_PORT

__all__ = ["DEMO_USERS", "Demo", "DemoUser", "StartupError", "host_server", "lan_address", "start_demo"]

DEMO_USERS = ("alice", "bob")


async def host_server(
    data_dir: Path,
    *,
    host: str = "0.0.0.0",  # noqa: S104 - a server for the LAN listens on every interface
    port: int = DEFAULT_PORT,
    stun_port: int = DEFAULT_STUN_PORT,
) -> RendezvousServer:
    """Start the rendezvous server (signalling, STUN, TURN) with its database in ``data_dir``.

    The relay listens on every interface and tells clients it is at this computer's LAN address.
    """
    turn = TurnConfig(external_ip=lan_address() or "127.0.0.1")
    return await RendezvousServer.start(
        ServerConfig(
            host=host,
            port=port,
            stun_port=stun_port,
            stun_alt_port=stun_port + 1 if stun_port else 0,  # RFC 5780 behaviour discovery (network check)
            stun_alt_port_is_default=True,
            data_dir=data_dir,
            turn=turn,
        )
    )


def lan_address() -> str | None:
    """This computer's address on its network: the one the kernel would send from toward the internet."""
    return route_address(("192.0.2.1", 9))  # TEST-NET: a connected UDP socket sends nothing


@dataclass
class DemoUser:
    """One signed-in demo account, with its own config folder (keys, pins) and downloads folder."""

    client: SignallingClient
    identity: DeviceIdentity
    config_dir: Path
    downloads: Path
    password: str = field(repr=False, default="")


@dataclass
class Demo:
    """The demo's server and its signed-in users."""

    server: RendezvousServer
    users: list[DemoUser]

    async def close(self) -> None:
        """Sign both users out and stop the server."""
        for user in self.users:
            await user.client.close()
        await self.server.close()


async def start_demo(folder: Path, names: tuple[str, ...] = DEMO_USERS) -> Demo:
    """A server on loopback (fresh database in ``folder``), accounts ``names``, all contacts of each other."""
    server = await _loopback_server(folder / "server")
    users: list[DemoUser] = []
    try:
        for name in names:
            password = secrets.token_urlsafe(16)  # nobody types it: the windows are signed in already
            await register(server.url, name, password)
            config_dir = folder / name
            identity = load_or_create_identity(config_dir)
            client = await sign_in(server.url, Credentials(name, password=password), identity)
            users.append(DemoUser(client, identity, config_dir, folder / name / "Downloads", password))
        for i, user in enumerate(users):
            for other in users[i + 1 :]:
                await user.client.add_contact(other.client.username)
                await other.client.accept_contact(user.client.username)
    except BaseException:
        await Demo(server, users).close()
        raise
    return Demo(server, users)


async def _loopback_server(data_dir: Path) -> RendezvousServer:
    """The demo's server on 127.0.0.1, with 127.0.0.2 as its second address for the network check's
    "change IP" test where the system has it (Linux routes all of 127/8 to loopback; macOS does not)."""
    for alt_ip in ("127.0.0.2", None):
        config = ServerConfig(
            host="127.0.0.1",
            port=0,
            stun_port=0,
            stun_alt_port=0,
            stun_alt_ip=alt_ip,
            data_dir=data_dir,
            limits=Limits(registrations_per_ip_per_hour=1000),
        )
        try:
            return await RendezvousServer.start(config)
        except StartupError:
            if alt_ip is None:
                raise
    raise AssertionError("unreachable")
