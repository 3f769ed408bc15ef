"""The composition root: builds the store, the signalling service, the WebSocket and STUN/TURN listeners.

With TURN enabled (the default) the TURN relay takes the STUN port and answers Binding there too, as coturn
does; with ``--no-turn`` the plain STUN server does.

`RendezvousServer.start` is what tests and the desktop app's embedded server call; `run` adds signal
handling for the ``punchline-rendezvous`` command.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import ssl
from pathlib import Path
from types import TracebackType

from websockets.asyncio.server import Server, serve

from rendezvous.behaviour_discovery import BehaviourDiscovery, start_behaviour_discovery
from rendezvous.config import TURN_SECRET_FILE, ServerConfig, TurnConfig
from rendezvous.log import log_event, monotonic
from rendezvous.service import SignallingService
from rendezvous.store import DATABASE_NAME, Store
from rendezvous.stun_server import StunServer, start_stun_server
from rendezvous.turn_relay import TurnRelay, start_turn_relay
from rendezvous.websocket import ConnectionHandler

log = logging.getLogger("punchline.rendezvous")


class StartupError(Exception):
    """The server could not start (a port in use, a bad certificate...); the message says what to do."""


class RendezvousServer:
    """A running rendezvous server: signalling on WebSocket, STUN or TURN on UDP, sharing one store."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        websocket: Server,
        stun: StunServer | None,
        tls: bool,
        *,
        turn: TurnRelay | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._websocket = websocket
        self.stun = stun
        self.turn = turn
        #: RFC 5780 behaviour discovery around the STUN port, when configured.
        self.discovery: BehaviourDiscovery | None = None
        self._tls = tls
        sockets = list(websocket.sockets)
        self.port: int = sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The address clients connect to, such as ``ws://127.0.0.1:8765``."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'wss' if self._tls else 'ws'}://{host}:{self.port}"

    @property
    def stun_port(self) -> int | None:
        """The UDP port STUN (and TURN, when enabled) answers on, or None without either."""
        if self.turn:
            return self.turn.address[1]
        return self.stun.address[1] if self.stun else None

    @classmethod
    async def start(cls, config: ServerConfig) -> RendezvousServer:
        """Open the database and both listeners; raise `StartupError` with advice when one cannot open."""
        tls = _tls_context(config.tls_cert, config.tls_key)
        store = Store(config.data_dir / DATABASE_NAME if config.data_dir else None)
        stun: StunServer | None = None
        turn: TurnRelay | None = None
        discovery: BehaviourDiscovery | None = None
        run_turn = config.stun_port is not None and config.turn.enabled
        # External TURN servers (a coturn with --static-auth-secret) need the secret even without our relay.
        needs_secret = run_turn or bool(config.turn.external_servers)
        try:
            turn_secret = load_turn_secret(config.turn, config.data_dir) if needs_secret else None
            if run_turn and config.stun_port is not None and turn_secret is not None:
                try:
                    turn = await start_turn_relay(
                        config.turn, host=config.host, port=config.stun_port, secret=turn_secret
                    )
                except OSError as exc:
                    raise StartupError(
                        f"Cannot open the STUN/TURN port {config.host}:{config.stun_port} ({exc.strerror}; "
                        "TURN needs it on UDP and on TCP). "
                        "Choose another with --stun-port, or --no-turn-tcp, or --stun-port off."
                    ) from exc
                except ValueError as exc:
                    raise StartupError(f"Cannot start the TURN relay: {exc}. See --relay-ip.") from exc
            elif config.stun_port is not None:
                try:
                    stun = await start_stun_server(config.host, config.stun_port)
                except OSError as exc:
                    raise StartupError(
                        f"Cannot open the STUN port {config.host}:{config.stun_port} ({exc.strerror}). "
                        "Choose another with --stun-port, or --stun-port off."
                    ) from exc
            discovery = await _start_discovery(config, turn, stun)
            stun_port = turn.address[1] if turn else stun.address[1] if stun else None
            service = SignallingService(
                store,
                config.limits,
                stun_port=stun_port,
                turn=config.turn,
                turn_secret=turn_secret,
                turn_port=turn.address[1] if turn else None,
            )
            handler = ConnectionHandler(service, config.limits, monotonic)
            try:
                websocket = await serve(
                    handler,
                    config.host,
                    config.port,
                    ssl=tls,
                    max_size=config.limits.max_message_bytes,
                    ping_interval=config.limits.ping_interval,
                    ping_timeout=config.limits.ping_timeout,
                    compression=None,  # messages are small; per-connection zlib state costs ~300 KB each
                    server_header="punchline-rendezvous",
                    logger=logging.getLogger("punchline.rendezvous.websockets"),
                )
            except OSError as exc:
                raise StartupError(
                    f"Cannot listen on {config.host}:{config.port} ({exc.strerror}). "
                    "Is another server running? Choose another port with --port."
                ) from exc
        except BaseException:
            if discovery:
                discovery.close()
            if stun:
                stun.close()
            if turn:
                turn.close()
            store.close()
            raise
        server = cls(config, store, websocket, stun, tls is not None, turn=turn)
        server.discovery = discovery
        log_event(
            log,
            "listening",
            url=server.url,
            stun_port=server.stun_port,
            turn=server.turn is not None,
            data=str(config.data_dir) if config.data_dir else "memory",
        )
        return server

    async def close(self) -> None:
        """Stop listening, tell every client the server is going away (1001), and close the database."""
        self._websocket.close(close_connections=True)
        await self._websocket.wait_closed()
        if self.discovery:
            self.discovery.close()
        if self.stun:
            self.stun.close()
        if self.turn:
            self.turn.close()
        if self.stun or self.turn:
            await asyncio.sleep(0)  # a datagram transport releases its socket on the next loop iteration
        self._store.close()
        log_event(log, "stopped")

    async def __aenter__(self) -> RendezvousServer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def run(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await RendezvousServer.start(config)
    try:
        await stop.wait()
        log_event(log, "shutting_down")
    finally:
        await server.close()


def _tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise StartupError("TLS needs both a certificate (--tls-cert) and a private key (--tls-key).")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"Cannot load the TLS certificate {cert} and key {key}: {exc}") from exc
    return context


def load_turn_secret(config: TurnConfig, data_dir: Path | None) -> str:
    """The TURN REST shared secret: from the config, else from its file (created 0600 when missing).

    Kept on disk so a restart leaves the credentials already handed out valid. Without a data directory
    (tests) a fresh random secret serves this run only.
    """
    if config.secret:
        return config.secret
    path = config.secret_file or (data_dir / TURN_SECRET_FILE if data_dir else None)
    if path is None:
        return secrets.token_urlsafe(32)
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    except OSError as exc:
        raise StartupError(f"Cannot read the TURN secret file {path} ({exc.strerror}).") from exc
    if existing:
        return existing
    secret = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secret + "\n")
    except OSError as exc:
        raise StartupError(f"Cannot write the TURN secret file {path} ({exc.strerror}).") from exc
    return secret


async def _start_discovery(
    config: ServerConfig, turn: TurnRelay | None, stun: StunServer | None
) -> BehaviourDiscovery | None:
    """RFC 5780 behaviour discovery around the STUN port, when ``stun_alt_port`` asks for it."""
    primary = turn or stun
    if config.stun_alt_port is None or primary is None:
        return None
    send = turn.send_from_listener if turn else stun.send if stun else None
    assert send is not None
    try:
        discovery = await start_behaviour_discovery(
            primary.address,
            alt_port=config.stun_alt_port,
            alt_ip=config.stun_alt_ip,
            send_primary=send,
            advertised_ip=config.turn.external_ip,
        )
    except OSError as exc:
        if config.stun_alt_port_is_default:
            log_event(
                log,
                "behaviour_discovery_off",
                level=logging.WARNING,
                reason=f"port {config.stun_alt_port} is taken ({exc.strerror}); see --stun-alt-port",
            )
            return None
        raise StartupError(
            f"Cannot open the alternate STUN port {config.stun_alt_port} ({exc.strerror}) for behaviour "
            "discovery. Choose another with --stun-alt-port, or --stun-alt-port off."
        ) from exc
    except ValueError as exc:  # listening on 0.0.0.0 without --external-ip: run without it, and say so
        log_event(log, "behaviour_discovery_off", level=logging.WARNING, reason=str(exc))
        return None
    primary.discovery = discovery
    return discovery
