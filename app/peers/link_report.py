"""How we are connected to a contact, in the words the status panel shows (Qt-free, so it is tested alone)."""

from __future__ import annotations

from app.nat.path_events import PathInfo
from app.peers.events import PeerState
from app.voice.call_media import CallStats

_KINDS = {
    "lan": "LAN (same network)",
    "direct": "Direct (through both routers)",
    "relayed": "Relayed (through the server's relay)",
}
_STATES = {
    "idle": "Not connected (a session starts when you call or send files)",
    "connecting": "Connecting…",
    "connected": "Connected",
    "failed": "Could not connect",
}
_RELAYED_BY = {"us": "your side's relay", "peer": "their side's relay", "both": "relays on both sides"}


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _relay(path: PathInfo) -> str:
    if path.kind != "relayed":
        return "Not used"
    used = _RELAYED_BY.get(path.relayed_by or "", "a relay")
    over = " over TCP (this network lets no UDP out)" if path.relay_transport == "tcp" else ""
    why = path.reason_if_relayed or "no direct path answered"
    return f"Yes: {used}{over}. Why: {why}"


def link_report(state: PeerState, call: CallStats | None = None) -> list[tuple[str, str]]:
    """(label, value) rows: state, path, endpoints, round trip, loss, jitter, relay and why, encryption."""
    path = state.path
    rows = [("Connection", _STATES[state.state])]
    if state.problem:
        rows.append(("Problem", state.problem))
    rows.append(("Path", _KINDS[path.kind] if path else "—"))
    rows.append(("Local endpoint", _address(path.local_address) if path else "—"))
    rows.append(("Remote endpoint", _address(path.remote_address) if path else "—"))
    rtt = call.rtt_ms if call is not None and call.rtt_ms is not None else state.rtt_ms
    rows.append(("Round trip", f"{rtt:.0f} ms" if rtt is not None else "—"))
    if call is not None:
        rows.append(("Loss", f"{100 * call.loss_in:.1f} % in, {100 * call.loss_out:.1f} % out"))
        rows.append(("Jitter", f"{call.jitter_ms:.0f} ms (buffer {call.buffer_ms:.0f} ms)"))
    else:
        rows.append(("Loss", f"{100 * state.loss:.1f} %" if state.loss is not None else "—"))
        rows.append(("Jitter", "— (measured during a call)"))
    rows.append(("Relay", _relay(path) if path else "—"))
    rows.append(("Pair verdict", state.pair_verdict or "— (needs both sides' network checks)"))
    rows.append(("Encryption", state.encryption or "—"))
    rows.append(("Safety number", state.safety_number or "— (shown once connected)"))
    return rows


def quality_words(mos: float) -> str:
    """An estimated MOS as a word for the call window's quality indicator."""
    if mos >= 4.0:
        return "Excellent"
    if mos >= 3.6:
        return "Good"
    if mos >= 3.1:
        return "Fair"
    return "Poor"
