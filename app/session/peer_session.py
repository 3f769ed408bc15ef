"""The peer session: QUIC (qh3, the sans-IO API of aioquic) driven over a `PeerLink`, both ends authenticated.

QUIC never sees an address. Every datagram goes out through `PeerLink.send` on whatever path the hole
punch selected and comes in through `PeerLink.set_receiver`, and QUIC is told it always talks to one fixed
address. So when the path manager moves from the relay to a direct path (or back), QUIC sees nothing but a
change in round trip time: no migration, no restart, no lost stream.

What travels on the session:

* stream 0 (bidirectional, opened by the dialler): control messages (`app.session.control`): first the
  dialler's identity proof (`app.session.auth`), then whatever upper layers send (file offers, call control);
* unidirectional streams: bulk data, one per file (`app.transfer`);
* DATAGRAM frames (RFC 9221): audio (which must never wait behind file data) and round-trip probes, routed
  by their first byte (`app.session.datagram_kinds`).

The dialler is the QUIC client. It checks the answerer's certificate key against the pinned key before it
sends anything (`app.session.trust`); the answerer checks the dialler's proof the same way. A refusal
closes the session with an application error code and a reason both sides can show.

This module is the thin asyncio adapter; QUIC's decisions are the library's, trust decisions `trust`'s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from qh3._hazmat import Buffer
from qh3.quic import events as quic_events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection, QuicConnectionError
from qh3.quic.packet import pull_quic_header

from app.account.identity import DeviceIdentity
from app.errors import FinalError, PunchlineError, TryAgainLater
from app.nat.connect import Connection
from app.session.auth import AuthFailed, auth_message, verify_auth
from app.session.bulk_pacer import BulkPacer
from app.session.control import ControlProtocolError, MessageDecoder, encode_message
from app.session.credentials import ED25519_SCHEME, certificate_identity_key, tls_credentials
from app.session.loss_repair import LossRepair, RepairConfig, RepairStats
from app.session.trust import KeyChanged, TrustOutcome, TrustStore

log = logging.getLogger("punchline.session")
T = TypeVar("T")

ALPN = "punchline/1"
CONTROL_STREAM = 0
#: QUIC believes it always talks to this address (TEST-NET-1): the path manager owns real addresses.
_PEER_ADDRESS = ("192.0.2.1", 1)

# Application close codes (QUIC CONNECTION_CLOSE, frame type 0x1d).
CLOSE_NORMAL = 0
CLOSE_AUTH_FAILED = 0x100
CLOSE_KEY_CHANGED = 0x101
CLOSE_PROTOCOL = 0x102
#: While a call is on, stream data goes to QUIC in pieces this big, and at most this much waits in it.
_PACED_PIECE = 8 * 1024
_PACED_BUFFER = 16 * 1024


class SessionError(PunchlineError):
    """The session could not start or has ended; the message says why, for people (one of the two below)."""


class SessionLost(SessionError, TryAgainLater):
    """The session did not start in time, or ended (closed, idle, path lost): a new one may work."""


class SessionRefused(SessionError, FinalError):
    """The peer (or we) refused the session: a wrong or changed identity key, or a bad proof."""


class StreamAborted(SessionLost):
    """The peer reset a stream, or the session ended while it was open."""


@dataclass(frozen=True)
class SessionConfig:
    """QUIC and buffering choices (the numbers are measured in ``tests/bench/transfer_speed.py``)."""

    #: Seconds without any packet from the peer before the session is declared dead (RFC 9000 §10.1). As
    #: long as both apps are up, keepalives (below) keep an idle session open; only a peer that vanished
    #: (or a path that stays dead) lets it expire. 30 s matches the path manager's consent expiry
    #: (`app.nat.hole_punch`, RFC 7675 §5.1).
    idle_timeout: float = 30.0
    #: Send a QUIC PING when we have sent nothing for a third of `idle_timeout` (RFC 9000 §10.1.2), so that
    #: the peer's idle timer, and ours through its acknowledgement, restart while nobody has anything to say
    #: (a ringing call, an open contact). The path manager's consent checks keep the path alive, but QUIC
    #: never sees them. Sending does not restart our own idle timer: a peer that stopped answering still
    #: ends the session after `idle_timeout`.
    keepalive: bool = True
    #: Seconds the QUIC handshake and identity proof may take.
    handshake_timeout: float = 10.0
    #: QUIC packet size. 1280 fits every path, including the relay's ChannelData header and IPv6 tunnels;
    #: the library probes upwards from here (DPLPMTUD, RFC 8899).
    max_datagram_size: int = 1280
    #: Bytes a writer may queue in one stream before `PeerSession.write` waits (bounds memory per file).
    stream_buffer: int = 1024 * 1024
    #: Connection and stream receive windows (bytes): at least the bandwidth-delay product of a fast path.
    max_data: int = 32 * 1024 * 1024
    max_stream_data: int = 16 * 1024 * 1024
    #: Repair of random loss under QUIC (`app.session.loss_repair`; `RepairConfig.OFF` sends none).
    repair: RepairConfig = field(default_factory=RepairConfig)


@dataclass(frozen=True)
class PeerIdentity:
    """Who is on the other end: the contact's name, device and the key it proved, and our trust in it."""

    name: str
    device: str
    key: bytes
    trust: TrustOutcome

    @property
    def key_b64(self) -> str:
        """The key as signalling and the UI show it."""
        return base64.b64encode(self.key).decode("ascii")


class IncomingStream:
    """Bytes of one stream the peer opened, in order; `read` returns b"" at its end."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._error: SessionError | None = None
        self._ready = asyncio.Event()

    async def read(self) -> bytes:
        """The next bytes (as much as has arrived), or b"" once the peer finished the stream."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._ready.clear()
            await self._ready.wait()
        if len(self._chunks) == 1:
            return self._chunks.popleft()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def _feed(self, data: bytes, end: bool) -> None:
        if data:
            self._chunks.append(data)
        self._ended = self._ended or end
        self._ready.set()

    def _abort(self, error: SessionError) -> None:
        self._error = error
        self._ready.set()


class PeerSession:
    """One encrypted, authenticated session with a contact over a `Connection`'s link.

    Start it with `PeerSession.start`; then exchange control messages (`send_message`; the peer's come to
    `set_message_receiver`), open data streams (`open_stream`, `write`; the peer sees them in
    `accept_stream`), send datagrams, and `close` at the end. `wait_closed` returns the reason the session
    ended.
    """

    def __init__(
        self,
        connection: Connection,
        identity: DeviceIdentity,
        trust: TrustStore,
        *,
        expected_key: bytes | None,
        config: SessionConfig,
    ) -> None:
        self.connection = connection
        self._loop = asyncio.get_running_loop()
        self._identity = identity
        self._trust = trust
        self._expected_key = expected_key
        self._config = config
        self._client = connection.controlling
        self._quic: QuicConnection | None = None
        self._certificate, self._private_key = tls_credentials(identity)
        self._decoder = MessageDecoder()
        self._incoming: asyncio.Queue[IncomingStream] = asyncio.Queue()
        self._streams: dict[int, IncomingStream] = {}
        self._datagram_receivers: dict[int, Callable[[bytes], None]] = {}
        self._message_types: dict[str, Callable[[dict[str, Any]], None]] = {}  # control messages' routes
        self._message_prefixes: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._authenticated: asyncio.Future[PeerIdentity] = self._loop.create_future()
        self._closed: asyncio.Future[str] = self._loop.create_future()
        self._progress = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._pump_scheduled = False
        self._handshake_done = False
        self._last_sent = self._loop.time()  # when QUIC last sent a packet (keepalives count from it)
        self._pings = 0
        self._repair = LossRepair(config.repair)
        self._pacer = BulkPacer()
        self._repair_timer: tuple[float, asyncio.TimerHandle] | None = None
        self.peer: PeerIdentity | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        connection: Connection,
        identity: DeviceIdentity,
        trust: TrustStore,
        *,
        expected_key: bytes | None = None,
        config: SessionConfig | None = None,
    ) -> PeerSession:
        """Run the handshake and identity checks on ``connection``; raise `SessionError` if they fail.

        ``expected_key`` is the key the rendezvous lists for the peer's device, when known: a peer that
        presents another one is refused even before pinning (the pinned key is always checked too).
        """
        config = config or SessionConfig()
        session = cls(connection, identity, trust, expected_key=expected_key, config=config)
        connection.link.set_receiver(session._datagram_received)
        if session._client:
            session._quic = QuicConnection(configuration=session._quic_configuration())
            session._quic.connect(_PEER_ADDRESS, session._loop.time())
            session._pump()
        try:
            async with asyncio.timeout(session._config.handshake_timeout):
                session.peer = await asyncio.shield(session._authenticated)
        except TimeoutError:
            session._close_quietly()
            raise SessionLost(
                f"the encrypted session with {connection.peer} did not start within "
                f"{session._config.handshake_timeout:g} s"
            ) from None
        except BaseException:
            session._close_quietly()
            raise
        return session

    async def close(self, reason: str = "closed", *, code: int = CLOSE_NORMAL, linger: float = 0.5) -> None:
        """Close the session (the peer learns ``reason``), wait ``linger`` s at most, then drop the link.

        What was sent before (a last control message: a hang-up, a cancel) is given the same ``linger`` to
        be acknowledged first, so the close cannot overtake it on a lossy path.
        """
        if self._quic is not None and not self._closed.done():
            # A last control message (a hang-up, a cancel) must leave before the close: once QUIC is
            # closing it sends nothing else, and its pacing may hold the message back for a while (on a
            # path with a real round trip), so wait until it is sent and acknowledged.
            self._pump()
            quic = self._quic
            with contextlib.suppress(TimeoutError, SessionError):
                async with asyncio.timeout(linger):
                    while self._bytes_in_flight() or quic.get_send_buffer_size(CONTROL_STREAM):
                        self._progress.clear()
                        await self.unless_closed(self._progress.wait())
        if self._quic is not None and not self._closed.done():
            self._quic.close(error_code=code, reason_phrase=reason)
            self._pump()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await asyncio.shield(self._closed)
        self._finish(reason)
        self.connection.close()

    def _latest_rtt(self) -> float | None:
        core = getattr(self._quic, "_core", None)
        rtt = getattr(core, "latest_rtt", None)
        return float(rtt) if rtt else None

    def _bytes_in_flight(self) -> int:
        # qh3 keeps its recovery state in its native core; 0 when it cannot tell.
        core = getattr(self._quic, "_core", None)
        return int(getattr(core, "bytes_in_flight", 0) or 0)

    async def wait_closed(self) -> str:
        """Wait until the session ends; the reason, for people."""
        return await asyncio.shield(self._closed)

    @property
    def is_closed(self) -> bool:
        """True once the session has ended."""
        return self._closed.done()

    @property
    def repair_stats(self) -> RepairStats:
        """Loss repair counters: the loss the peer reports, datagrams repaired or given up (status panel)."""
        return self._repair.stats

    # --- control messages -----------------------------------------------------------------------------

    def send_message(self, message: dict[str, Any]) -> None:
        """Queue a control message for the peer (control messages are small: no waiting)."""
        self._check_open()
        assert self._quic is not None
        with self._lost_if_closing():
            self._quic.send_stream_data(CONTROL_STREAM, encode_message(message))
        self._schedule_pump()

    def set_message_receiver(
        self, route: str | frozenset[str], receiver: Callable[[dict[str, Any]], None] | None
    ) -> None:
        """Hand the peer's control messages to ``receiver`` as they arrive (None: stop): those whose type is
        in ``route`` (a set of types), or starts with it (a str: a prefix).

        This is the one way control messages come out of the session: layers share stream 0 by type
        (calls take ``call-*``, file transfer its `app.transfer.messages` types). Types are looked up
        before prefixes; a message nobody registered for is logged and dropped.
        """
        routes, keys = (
            (self._message_prefixes, [route])
            if isinstance(route, str)
            else (self._message_types, list(route))
        )
        for key in keys:
            if receiver is None:
                routes.pop(key, None)
            else:
                routes[key] = receiver

    # --- data streams ---------------------------------------------------------------------------------

    def open_stream(self) -> int:
        """A new unidirectional stream to the peer."""
        self._check_open()
        assert self._quic is not None
        with self._lost_if_closing():
            return self._quic.get_next_available_stream_id(is_unidirectional=True)

    async def write(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` on a stream, waiting while more than `SessionConfig.stream_buffer` is queued."""
        quic = self._quic
        assert quic is not None
        view = memoryview(data)
        while True:
            paced = self._pacer.active(self._loop.time())
            # While a call is on, keep little in QUIC's buffer too: it would go out at CUBIC's pace.
            limit = _PACED_BUFFER if paced else self._config.stream_buffer
            while True:
                self._check_open()
                if quic.get_send_buffer_size(stream_id) < limit:
                    break
                self._progress.clear()
                await self.unless_closed(self._progress.wait())
            if not paced:  # the whole rest at once (no copy unless a call paced part of it)
                with self._lost_if_closing():
                    quic.send_stream_data(stream_id, data if len(view) == len(data) else bytes(view), end)
                self._schedule_pump()
                return
            wait = self._pacer.delay_for(self._loop.time())
            if wait > 0:
                await self.unless_closed(asyncio.sleep(wait))
                continue
            piece, view = view[:_PACED_PIECE], view[_PACED_PIECE:]
            self._pacer.sent(len(piece), self._loop.time())
            with self._lost_if_closing():
                quic.send_stream_data(stream_id, bytes(piece), end and not view)
            self._schedule_pump()
            if not view:
                return

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Abandon a stream we opened (the peer's `IncomingStream.read` raises `StreamAborted`)."""
        if self._quic is not None and not self._closed.done():
            with contextlib.suppress(SessionLost), self._lost_if_closing():
                self._quic.reset_stream(stream_id, code)
            self._schedule_pump()

    async def accept_stream(self) -> IncomingStream:
        """The next stream the peer opened."""
        return await self.unless_closed(self._incoming.get())

    # --- datagrams --------------------------------------------------------------------------------------

    def send_datagram(self, data: bytes) -> None:
        """Send one unreliable DATAGRAM frame (it goes out ahead of queued stream data)."""
        self._check_open()
        assert self._quic is not None
        with self._lost_if_closing():
            self._quic.send_datagram_frame(data)
        self._pacer.realtime_sent(self._loop.time())
        self._pump()
        # Audio is late if its repair waits for a group to fill: send the repair right behind it.
        self._send_raw(self._repair.flush())

    def set_datagram_receiver(self, kind: int, receiver: Callable[[bytes], None] | None) -> None:
        """Hand DATAGRAM frames whose first byte is ``kind`` to ``receiver`` as they arrive (None: stop).

        This is the one route for datagrams (kinds: `app.session.datagram_kinds`): a call's audio goes
        straight to its jitter buffer, without waiting in a queue; frames of a kind nobody reads are dropped.
        """
        if receiver is None:
            self._datagram_receivers.pop(kind, None)
        else:
            self._datagram_receivers[kind] = receiver

    # --- internals: I/O -----------------------------------------------------------------------------------

    def _quic_configuration(self) -> QuicConfiguration:
        config = self._config
        common: dict[str, Any] = {
            "alpn_protocols": [ALPN],
            "idle_timeout": config.idle_timeout,
            "max_datagram_size": config.max_datagram_size,
            "max_datagram_frame_size": 65536,
            "max_data": config.max_data,
            "max_stream_data": config.max_stream_data,
            "signature_algorithms": [ED25519_SCHEME],
        }
        if self._client:
            # No certificate authority, no name: the key is checked against the pin after the handshake.
            return QuicConfiguration(
                is_client=True, verify_mode=ssl.CERT_NONE, server_name="punchline", **common
            )
        return QuicConfiguration(
            is_client=False, certificate=self._certificate, private_key=self._private_key, **common
        )

    def _datagram_received(self, data: bytes) -> None:
        repair = self._repair
        packet = repair.in_order(data)
        if packet is not None:
            self._quic_datagram(packet)
            return
        self._repair_output(*repair.receive(data, self._loop.time()))
        if repair.wake:
            self._schedule_repair_timer()

    def _repair_output(self, deliver: list[bytes], send: list[bytes]) -> None:
        """Act on what the repair layer returned: its own datagrams out, QUIC's datagrams in."""
        self._send_raw(send)
        for packet in deliver:
            self._quic_datagram(packet)

    def _quic_datagram(self, data: bytes) -> None:
        now = self._loop.time()
        if self._quic is None:
            if self._client or self._closed.done():
                return
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            except Exception:
                return
            self._quic = QuicConnection(
                configuration=self._quic_configuration(),
                original_destination_connection_id=header.destination_cid,
            )
        self._quic.receive_datagram(data, _PEER_ADDRESS, now)
        self._schedule_pump()

    def _send(self, packet: bytes, now: float) -> None:
        """Send one QUIC datagram on the link, through the repair layer."""
        self._last_sent = now
        repair = self._repair
        if repair.protecting:
            self._send_raw(repair.protect(packet, now))
        else:
            self.connection.link.send(repair.wrap(packet))

    def _send_raw(self, datagrams: list[bytes]) -> None:
        link = self.connection.link
        for datagram in datagrams:
            link.send(datagram)

    def _schedule_repair_timer(self) -> None:
        self._repair.wake = False
        deadline = self._repair.next_deadline()
        booked = self._repair_timer
        if booked is not None:
            if deadline is not None and booked[0] <= deadline:
                return  # an earlier wake-up is booked; it reschedules
            booked[1].cancel()
            self._repair_timer = None
        if deadline is not None and not self._closed.done():
            # The deadline is kept beside the handle: Qt's loop (qasync) returns handles without when().
            self._repair_timer = (deadline, self._loop.call_at(deadline, self._on_repair_timer))

    def _on_repair_timer(self) -> None:
        self._repair_timer = None
        self._repair_output(*self._repair.poll(self._loop.time()))
        self._schedule_repair_timer()

    def _schedule_pump(self) -> None:
        # Coalesce: many datagrams arriving in one loop turn are answered by one pump (fewer ACK packets),
        # and the pump never runs inside the link's own machinery.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        quic = self._quic
        if quic is None:
            return
        now = self._loop.time()
        for data, _ in quic.datagrams_to_send(now):
            self._send(data, now)
        while (event := quic.next_event()) is not None:
            self._handle(event)
        rtt = self._latest_rtt()
        if rtt:
            self._pacer.rtt_sample(rtt, now)
        if self._quic is not None:  # sending the auth answer may have queued more
            for data, _ in quic.datagrams_to_send(now):
                self._send(data, now)
        if self._repair.wake:
            self._schedule_repair_timer()
        self._progress.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = quic.get_timer()
        keepalive = self._keepalive_at()
        if keepalive is not None and (deadline is None or keepalive < deadline):
            deadline = keepalive
        if deadline is not None and not self._closed.done():
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _keepalive_at(self) -> float | None:
        """When a keepalive PING is due (nothing sent for a third of the idle timeout), once connected."""
        if not self._config.keepalive or not self._handshake_done or self._closed.done():
            return None
        return self._last_sent + self._config.idle_timeout / 3

    def _on_timer(self) -> None:
        self._timer = None
        quic = self._quic
        if quic is None:
            return
        now = self._loop.time()
        keepalive = self._keepalive_at()
        if keepalive is not None and now >= keepalive:
            self._pings += 1
            # A connection the peer has just closed refuses it; the pump below handles that close.
            with contextlib.suppress(QuicConnectionError):
                quic.send_ping(self._pings)
        # QUIC's own deadlines (loss detection, idle, pacing): a call before one is due does nothing.
        quic.handle_timer(now)
        self._pump()

    # --- internals: events --------------------------------------------------------------------------------

    def _handle(self, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.StreamDataReceived):
            if event.stream_id == CONTROL_STREAM:
                self._control_data(event.data)
            else:
                self._stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, quic_events.DatagramFrameReceived):
            data = event.data
            receiver = self._datagram_receivers.get(data[0]) if data else None
            if receiver is not None:  # else a kind nobody reads now (a call's late audio): dropped
                receiver(data)
        elif isinstance(event, quic_events.HandshakeCompleted):
            self._handshake_done = True
            if self._client:
                self._client_handshake_done()
        elif isinstance(event, quic_events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream._abort(StreamAborted(f"the peer abandoned stream {event.stream_id}"))
        elif isinstance(event, quic_events.ConnectionTerminated):
            self._terminated(event)

    def _stream_data(self, stream_id: int, data: bytes, end: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._authenticated.done() or self._authenticated.exception() is not None:
                return  # nothing but the proof is accepted from a peer we do not know yet
            stream = self._streams[stream_id] = IncomingStream(stream_id)
            self._incoming.put_nowait(stream)
        stream._feed(data, end)
        if end:
            del self._streams[stream_id]

    def _control_data(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except ControlProtocolError as exc:
            self._refuse(CLOSE_PROTOCOL, f"protocol error: {exc}", SessionLost(str(exc)))
            return
        for message in messages:
            if self._authenticated.done():
                kind = message["type"]
                receiver = self._message_types.get(kind) or next(
                    (r for p, r in self._message_prefixes.items() if kind.startswith(p)), None
                )
                if receiver is not None:
                    receiver(message)
                else:
                    log.info(
                        "control message %r from %s: nothing here reads it", kind[:40], self.connection.peer
                    )
            elif self._client:
                if message.get("type") == "welcome" and self.peer_key is not None:
                    self._authenticated.set_result(self._identify(self.peer_key, self._trust_outcome))
                else:
                    self._refuse(CLOSE_PROTOCOL, "expected a welcome", SessionLost("bad session start"))
            else:
                self._server_check_proof(message)

    def _client_handshake_done(self) -> None:
        """Check the answerer's key (from its certificate) before sending anything of ours."""
        assert self._quic is not None
        certificate = self._quic.get_peercert()
        key = certificate_identity_key(certificate) if certificate is not None else None
        if certificate is None or key is None:
            self._refuse(CLOSE_AUTH_FAILED, "no identity key", SessionRefused("the peer presented no key"))
            return
        if not self._key_acceptable(key):
            return
        self.peer_key = key
        self._quic.send_stream_data(
            CONTROL_STREAM, encode_message(auth_message(self._identity, bytes(certificate.public_bytes())))
        )

    def _server_check_proof(self, message: dict[str, Any]) -> None:
        assert self._quic is not None
        try:
            key = verify_auth(message, bytes(self._certificate.public_bytes()))
        except AuthFailed as exc:
            self._refuse(CLOSE_AUTH_FAILED, str(exc), SessionRefused(f"{self.connection.peer}: {exc}"))
            return
        if not self._key_acceptable(key):
            return
        self._quic.send_stream_data(CONTROL_STREAM, encode_message({"type": "welcome"}))
        self._authenticated.set_result(self._identify(key, self._trust_outcome))

    peer_key: bytes | None = None
    _trust_outcome: TrustOutcome = "pinned"

    def _key_acceptable(self, key: bytes) -> bool:
        """Check ``key`` against the server's listing and the pin; refuse the session if it fails."""
        peer = self.connection.peer
        if self._expected_key is not None and key != self._expected_key:
            self._refuse(
                CLOSE_KEY_CHANGED,
                "identity key does not match the one registered",
                SessionRefused(
                    f"{peer}'s app presented a key other than the one the server lists for their device: "
                    "the session was refused."
                ),
            )
            return False
        try:
            self._trust_outcome = self._trust.check(peer, key, self._identity.public_key_bytes)
        except KeyChanged as exc:
            refusal = SessionRefused(str(exc))
            refusal.__cause__ = exc
            self._refuse(CLOSE_KEY_CHANGED, "your identity key is not the one I know for you", refusal)
            return False
        except OSError as exc:
            self._refuse(CLOSE_AUTH_FAILED, "cannot check keys", SessionRefused(str(exc)))
            return False
        return True

    def _identify(self, key: bytes, trust: TrustOutcome) -> PeerIdentity:
        return PeerIdentity(self.connection.peer, self.connection.peer_device, key, trust)

    def _refuse(self, code: int, reason: str, error: SessionError) -> None:
        """End the session with ``code`` (the peer sees ``reason``); our waiter gets ``error``."""
        log.warning("session with %s refused: %s", self.connection.peer, error)
        if not self._authenticated.done():
            self._authenticated.set_exception(error)
        if self._quic is not None:
            self._quic.close(error_code=code, reason_phrase=reason)
        self._finish(str(error))

    def _terminated(self, event: quic_events.ConnectionTerminated) -> None:
        peer = self.connection.peer
        if event.error_code in (CLOSE_KEY_CHANGED, CLOSE_AUTH_FAILED):
            error: SessionError = SessionRefused(
                f"{peer} refused the session: {event.reason_phrase or 'identity not accepted'}"
            )
        elif event.error_code == CLOSE_NORMAL and event.reason_phrase:
            error = SessionLost(f"{peer} closed the session: {event.reason_phrase}")
        elif event.reason_phrase.lower().startswith("idle"):
            error = SessionLost(f"no packets from {peer} for {self._config.idle_timeout:g} s")
        else:
            error = SessionLost(f"the session with {peer} ended: {event.reason_phrase or event.error_code}")
        if not self._authenticated.done():
            self._authenticated.set_exception(error)
        self._finish(str(error))

    def _finish(self, reason: str) -> None:
        if self._closed.done():
            return
        self._closed.set_result(reason)
        for stream in self._streams.values():
            stream._abort(StreamAborted(f"the session ended: {reason}"))
        self._streams.clear()
        self._progress.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._repair_timer is not None:
            self._repair_timer[1].cancel()
        self._timer = self._repair_timer = None

    def _close_quietly(self) -> None:
        if self._quic is not None and not self._closed.done():
            self._quic.close(error_code=CLOSE_NORMAL, reason_phrase="")
            self._pump()
        self._finish("closed")
        self.connection.close()

    def _check_open(self) -> None:
        if self._closed.done():
            raise SessionLost(self._closed.result())

    @contextlib.contextmanager
    def _lost_if_closing(self) -> Iterator[None]:
        """QUIC refuses new data once its connection is closing (the peer quit, the idle timer fired)
        before our close event has been handled: that is the session ending, not a bug."""
        try:
            yield
        except QuicConnectionError as exc:
            self._pump()  # the connection's own close event says best why it ended
            self._finish(f"the session with {self.connection.peer} ended: {exc.reason_phrase or exc}")
            raise SessionLost(self._closed.result()) from exc

    async def unless_closed(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, or raise `SessionError` if the session ends first (for upper layers too)."""
        task = asyncio.ensure_future(awaitable)
        closed = asyncio.shield(self._closed)
        waiters: set[asyncio.Future[Any]] = {task, closed}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        raise SessionLost(self._closed.result())
