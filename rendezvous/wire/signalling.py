"""The signalling protocol: JSON messages over WebSocket, one message per text frame.

Both the server and the client import this module, so the schema lives in exactly one place.

Every message is a JSON object ``{"v": 1, "type": "<name>", ...fields}``. Requests from the client carry an
``id`` (an integer the client chooses); the server answers each request with exactly one reply whose ``re``
is that id: ``ok``, ``error``, or a typed reply (``welcome``, ``contact_list``, ``ice_servers``). The server
also pushes messages on its own (``contact_update``, ``presence``, ``signal``); pushes have no ``re``.

Client → server (requests; all but ``register`` and ``sign_in`` need a signed-in connection)

==================  ===========================================================  ==================
type                fields                                                       reply
==================  ===========================================================  ==================
register            username, password                                           ok
sign_in             username, password | token, device_id, identity_key, status  welcome
sign_out            —  (revokes this connection's token, then the server closes)  ok
change_password     old_password, new_password  (other devices are signed out)  ok
set_status          status: "online" | "away"                                    ok
list_contacts       —                                                            contact_list
contact_request     username  (to an offline user it waits until they sign in)  ok
contact_accept      username                                                     ok
contact_decline     username  (the request disappears on both sides)            ok
contact_remove      username  (also cancels an outgoing request)                 ok
contact_block       username  (the blocked user sees a removal, nothing more)    ok
contact_unblock     username                                                     ok
send_signal         to, payload (JSON object), device_id (optional)              ok, or error
                    — forwarded to the contact's signed-in devices                 offline / not_contact
get_ice_servers     —  (STUN/TURN servers and fresh TURN credentials)            ice_servers
==================  ===========================================================  ==================

``ice_servers`` carries ``servers``: a list of ``{urls, username, credential, expires}`` shaped like
WebRTC's RTCIceServer. ``urls`` are ``stun:host:port`` and ``turn:host:port?transport=udp`` (RFC 7064,
RFC 7065) with a host the client can reach (the server's public name, or the host the client connected to);
``username``/``credential`` are TURN REST credentials (``"<unix expiry>:<user>"`` and
base64(HMAC-SHA1(shared secret, username)), as coturn's ``use-auth-secret`` checks them), valid until
``expires`` (unix seconds); they are null for a STUN-only entry. Ask again before they expire.

Server → client pushes

==================  ===========================================================
contact_update      contact: a contact record (below) whose relation or presence changed
presence            username, status, devices — a mutual contact's presence changed
signal              sender, sender_device, payload — forwarded from a mutual contact
==================  ===========================================================

A contact record is ``{username, relation, status, devices}``; ``relation`` is ``mutual``, ``incoming``
(they asked you), ``outgoing`` (you asked them), ``blocked`` (you blocked them) or ``none`` (the relation
ended); ``status`` and ``devices`` are only filled for mutual contacts. A device is
``{device_id, identity_key}`` where the key is a base64 Ed25519 public key the peer session authenticates.

Errors are ``{"type": "error", "re": id | null, "code", "message"}``: ``code`` is one of `ErrorCode` for
programs, ``message`` a sentence for people. A message that cannot be parsed gets an error with ``re: null``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeAlias, Union, get_args

from rendezvous.wire.typed_json import FieldError, from_json, to_json

PROTOCOL_VERSION = 1
#: Largest message either side accepts, in bytes of UTF-8 JSON (the WebSocket layer enforces it too).
MAX_MESSAGE_BYTES = 64 * 1024

Status = Literal["online", "away", "offline"]
Relation = Literal["mutual", "incoming", "outgoing", "blocked", "none"]

_USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IDENTITY_KEY_BYTES = 32  # a raw Ed25519 public key


class ErrorCode(StrEnum):
    """Machine-readable error codes carried in ``error`` messages."""

    BAD_MESSAGE = "bad_message"  # not JSON, not an object, wrong field types, unknown type
    UNSUPPORTED_VERSION = "unsupported_version"
    RATE_LIMITED = "rate_limited"
    NOT_SIGNED_IN = "not_signed_in"
    ALREADY_SIGNED_IN = "already_signed_in"
    INVALID_USERNAME = "invalid_username"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 - an error code, not a password
    USERNAME_TAKEN = "username_taken"
    AUTH_FAILED = "auth_failed"
    THROTTLED = "throttled"
    NO_SUCH_USER = "no_such_user"
    NOT_CONTACT = "not_contact"
    NO_REQUEST = "no_request"
    ALREADY_CONTACTS = "already_contacts"
    BLOCKED = "blocked"
    OFFLINE = "offline"
    INVALID_ARGUMENT = "invalid_argument"
    SESSION_ENDED = "session_ended"
    BUSY = "busy"
    INTERNAL = "internal"


class MessageError(Exception):
    """A message that does not follow this schema: the only exception the decoders raise."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class IceServer:
    """STUN/TURN server URLs and the TURN credentials for them (null for STUN only), as in RTCIceServer."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)
    expires: int | None = None  # unix seconds after which the credentials are refused


@dataclass(frozen=True)
class Device:
    """One signed-in installation of a user, with the public identity key its peers will verify."""

    device_id: str
    identity_key: str


@dataclass(frozen=True)
class Contact:
    """How another user relates to the receiving user, with presence when they are mutual contacts."""

    username: str
    relation: Relation
    status: Status = "offline"
    devices: tuple[Device, ...] = ()


# ------------------------------------------------------------------------------ client → server


@dataclass(frozen=True)
class Register:
    """Create an account. Reply: ``ok``."""

    TYPE: ClassVar[str] = "register"
    id: int
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SignIn:
    """Sign this connection in with a password or a token from an earlier sign-in. Reply: ``welcome``."""

    TYPE: ClassVar[str] = "sign_in"
    id: int
    username: str
    device_id: str
    identity_key: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    status: Literal["online", "away"] = "online"


@dataclass(frozen=True)
class SignOut:
    """End this session and revoke its token. Reply: ``ok``; then the server closes the connection."""

    TYPE: ClassVar[str] = "sign_out"
    id: int


@dataclass(frozen=True)
class ChangePassword:
    """Replace the password; every other session of the account is signed out. Reply: ``ok``."""

    TYPE: ClassVar[str] = "change_password"
    id: int
    old_password: str = field(repr=False)
    new_password: str = field(repr=False)


@dataclass(frozen=True)
class SetStatus:
    """Announce online or away. Reply: ``ok``."""

    TYPE: ClassVar[str] = "set_status"
    id: int
    status: Literal["online", "away"]


@dataclass(frozen=True)
class ListContacts:
    """Ask for every contact record. Reply: ``contact_list``."""

    TYPE: ClassVar[str] = "list_contacts"
    id: int


@dataclass(frozen=True)
class ContactRequest:
    """Ask another user to become a mutual contact. Reply: ``ok``."""

    TYPE: ClassVar[str] = "contact_request"
    id: int
    username: str


@dataclass(frozen=True)
class ContactAccept:
    """Accept a request from ``username``. Reply: ``ok``."""

    TYPE: ClassVar[str] = "contact_accept"
    id: int
    username: str


@dataclass(frozen=True)
class ContactDecline:
    """Decline a request from ``username``. Reply: ``ok``."""

    TYPE: ClassVar[str] = "contact_decline"
    id: int
    username: str


@dataclass(frozen=True)
class ContactRemove:
    """End a mutual contact or cancel an outgoing request. Reply: ``ok``."""

    TYPE: ClassVar[str] = "contact_remove"
    id: int
    username: str


@dataclass(frozen=True)
class ContactBlock:
    """Block ``username``: no requests, signals or presence from them. Reply: ``ok``."""

    TYPE: ClassVar[str] = "contact_block"
    id: int
    username: str


@dataclass(frozen=True)
class ContactUnblock:
    """Lift a block. Reply: ``ok``."""

    TYPE: ClassVar[str] = "contact_unblock"
    id: int
    username: str


@dataclass(frozen=True)
class SendSignal:
    """Forward an opaque payload to a mutual contact (all their devices, or one). Reply: ``ok``."""

    TYPE: ClassVar[str] = "send_signal"
    id: int
    to: str
    payload: dict[str, Any]
    device_id: str | None = None


@dataclass(frozen=True)
class GetIceServers:
    """Ask for the STUN/TURN servers to use and fresh TURN credentials. Reply: ``ice_servers``."""

    TYPE: ClassVar[str] = "get_ice_servers"
    id: int


# ------------------------------------------------------------------------------ server → client


@dataclass(frozen=True)
class Ok:
    """The request ``re`` succeeded."""

    TYPE: ClassVar[str] = "ok"
    re: int


@dataclass(frozen=True)
class Error:
    """The request ``re`` failed (``re`` is None when the message could not be read at all)."""

    TYPE: ClassVar[str] = "error"
    re: int | None
    code: str
    message: str


@dataclass(frozen=True)
class Welcome:
    """Reply to ``sign_in``: the account, a token for the next sign-in, the contacts, and server facts."""

    TYPE: ClassVar[str] = "welcome"
    re: int
    username: str
    device_id: str
    token: str = field(repr=False)
    contacts: tuple[Contact, ...]
    stun_port: int | None = None  # the server's STUN port on the same host, when it runs one
    server_version: str = ""


@dataclass(frozen=True)
class ContactList:
    """Reply to ``list_contacts``."""

    TYPE: ClassVar[str] = "contact_list"
    re: int
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class IceServers:
    """Reply to ``get_ice_servers``: the servers, each with its URLs and credentials."""

    TYPE: ClassVar[str] = "ice_servers"
    re: int
    servers: tuple[IceServer, ...]


@dataclass(frozen=True)
class ContactUpdate:
    """Push: one contact record changed (a request arrived, was accepted, a contact was removed...)."""

    TYPE: ClassVar[str] = "contact_update"
    contact: Contact


@dataclass(frozen=True)
class Presence:
    """Push: a mutual contact's presence or set of devices changed."""

    TYPE: ClassVar[str] = "presence"
    username: str
    status: Status
    devices: tuple[Device, ...] = ()


@dataclass(frozen=True)
class Signal:
    """Push: a payload a mutual contact sent with ``send_signal``."""

    TYPE: ClassVar[str] = "signal"
    sender: str
    sender_device: str
    payload: dict[str, Any]


ClientMessage: TypeAlias = Union[  # noqa: UP007 - a runtime value, iterated below
    Register,
    SignIn,
    SignOut,
    ChangePassword,
    SetStatus,
    ListContacts,
    ContactRequest,
    ContactAccept,
    ContactDecline,
    ContactRemove,
    ContactBlock,
    ContactUnblock,
    SendSignal,
    GetIceServers,
]
ServerMessage: TypeAlias = Union[  # noqa: UP007
    Ok, Error, Welcome, ContactList, IceServers, ContactUpdate, Presence, Signal
]
ClientRequest: TypeAlias = ClientMessage  # every client message is a request with an ``id``

CLIENT_TYPES: dict[str, type[Any]] = {cls.TYPE: cls for cls in get_args(ClientMessage)}
SERVER_TYPES: dict[str, type[Any]] = {cls.TYPE: cls for cls in get_args(ServerMessage)}


# ---------------------------------------------------------------------------------------------- validation


def valid_username(name: str) -> bool:
    """Usernames: 3-32 characters, lowercase letters, digits and ``_ . -``, starting with a letter."""
    return bool(_USERNAME_RE.match(name))


def valid_device_id(device_id: str) -> bool:
    """Device ids: 1-64 characters of ``A-Z a-z 0-9 _ -``."""
    return bool(_DEVICE_ID_RE.match(device_id))


def valid_identity_key(key: str) -> bool:
    """An identity key is the standard base64 of a 32-byte Ed25519 public key."""
    try:
        return len(base64.b64decode(key, validate=True)) == IDENTITY_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- codec


def encode(message: ClientMessage | ServerMessage) -> str:
    """Serialise a message to its JSON text (compact, version field first)."""
    body = {"v": PROTOCOL_VERSION, "type": message.TYPE}
    body.update(to_json(message))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def decode_client_message(data: str | bytes) -> ClientMessage:
    """Parse a message the client sent; raise `MessageError` for anything that is not one."""
    message: ClientMessage = _decode(data, CLIENT_TYPES)
    return message


def decode_server_message(data: str | bytes) -> ServerMessage:
    """Parse a message the server sent; raise `MessageError` for anything that is not one."""
    message: ServerMessage = _decode(data, SERVER_TYPES)
    return message


def request_id_of(data: str | bytes) -> int | None:
    """Best-effort ``id`` of a raw message, so that even a malformed request gets a reply it can match."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if type(request_id) is int else None


def _decode(data: str | bytes, types_by_name: dict[str, type[Any]]) -> Any:
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(ErrorCode.BAD_MESSAGE, f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MessageError(ErrorCode.BAD_MESSAGE, "message is not valid JSON") from exc
    if not isinstance(body, dict):
        raise MessageError(ErrorCode.BAD_MESSAGE, "message must be a JSON object")
    version = body.get("v")
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise MessageError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})",
        )
    name = body.get("type")
    cls = types_by_name.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(name, str):
        raise MessageError(ErrorCode.BAD_MESSAGE, f"unknown message type {name!r}")
    return _from_json(cls, body, name)


def _from_json(cls: type[Any], body: dict[str, Any], where: str) -> Any:
    """Build message ``cls`` from a JSON object, every field checked (`rendezvous.wire.typed_json`)."""
    try:
        return from_json(cls, body, where)
    except FieldError as exc:
        raise MessageError(ErrorCode.BAD_MESSAGE, str(exc)) from None
