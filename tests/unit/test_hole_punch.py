"""Two hole-punching machines over the simulated Internet (tests/helpers/netsim.py): which path, and when."""

from __future__ import annotations

import itertools

import pytest

from app.nat.hole_punch import HolePunchConfig
from app.nat.path_events import (
    PathChanged,
    PathEvent,
    PathInfo,
    PathLost,
    PathRecovered,
    PathSelected,
    PathStats,
    RoleChanged,
)
from rendezvous.wire.stun import StunClass, decode, is_stun
from tests.helpers.netsim import Nat, NatType, Network, Packet, SimPeer

NEW_PORT = "router gives a new port per destination"


def pair(
    net: Network,
    a_nat: NatType | None,
    b_nat: NatType | None,
    *,
    a_config: HolePunchConfig | None = None,
    b_config: HolePunchConfig | None = None,
    same_lan: bool = False,
    exchange: bool = True,
) -> tuple[SimPeer, SimPeer]:
    """Alice (controlling, the caller) and Bob, each behind a NAT of the given kind (None: public)."""
    a_box: Nat | None = net.nat("198.51.100.1", a_nat) if a_nat else None
    b_box: Nat | None = a_box if same_lan else (net.nat("198.51.100.2", b_nat) if b_nat else None)
    a_addr = ("192.168.1.10", 5000) if a_box else ("203.0.113.10", 5000)
    b_addr = (
        ("192.168.1.20", 6000) if same_lan else (("192.168.1.20", 6000) if b_box else ("203.0.113.20", 6000))
    )
    lan_b = "home-a" if same_lan else "home-b"
    alice = net.add_peer("alice", a_addr, nat=a_box, lan="home-a", controlling=True, config=a_config)
    bob = net.add_peer("bob", b_addr, nat=b_box, lan=lan_b, controlling=False, config=b_config)
    if exchange:
        net.exchange(alice, bob)
    return alice, bob


def paths(peer: SimPeer) -> list[tuple[float, PathInfo]]:
    """Every path the peer moved to (selected, changed, recovered), in order."""
    out: list[tuple[float, PathInfo]] = []
    for t, event in peer.events:
        if isinstance(event, PathSelected | PathChanged | PathRecovered):
            out.append((t, event.path))
    return out


def agree(alice: SimPeer, bob: SimPeer) -> None:
    """Both use the same pair: each one's remote address is where the other's packets come from."""
    a, b = alice.machine.selected_path, bob.machine.selected_path
    assert a is not None
    assert b is not None
    assert a.kind == b.kind or {a.kind, b.kind} <= {"relayed"}
    if a.via == "direct" and b.via == "direct":
        assert a.remote_address == b.local_address
        assert b.remote_address == a.local_address


def app_data_flows(net: Network, alice: SimPeer, bob: SimPeer) -> None:
    """An application datagram on each side's selected path reaches the other."""
    before_a, before_b = len(alice.app_received), len(bob.app_received)
    net.send_app(alice, b"hello bob")
    net.send_app(bob, b"hello alice")
    net.run(net.now + 0.2)
    assert [d for _, d, _ in bob.app_received[before_b:]] == [b"hello bob"]
    assert [d for _, d, _ in alice.app_received[before_a:]] == [b"hello alice"]


def first(peer: SimPeer, kind: type[PathEvent]) -> tuple[float, PathEvent]:
    """The first event of a kind, with its time."""
    found = peer.of_type(kind)
    assert found, f"{peer.name} has no {kind.__name__}: {peer.events}"
    return found[0]


# --- where a direct path exists -------------------------------------------------------------------------


def test_cone_to_cone_is_direct_and_fast() -> None:
    net = Network()
    alice, bob = pair(net, "cone", "cone")
    net.run(3)
    for peer in (alice, bob):
        t, event = first(peer, PathSelected)
        assert isinstance(event, PathSelected)
        assert event.path.kind == "direct"
        assert event.path.via == "direct"
        assert event.path.reason_if_relayed is None
        assert t < 0.3
        assert not peer.of_type(PathChanged)
    agree(alice, bob)
    app_data_flows(net, alice, bob)


def test_public_to_cone_is_direct() -> None:
    net = Network()
    alice, bob = pair(net, None, "cone")
    net.run(3)
    assert alice.machine.selected_path is not None
    assert alice.machine.selected_path.kind == "direct"
    assert bob.machine.selected_path is not None
    assert bob.machine.selected_path.kind == "direct"
    assert bob.machine.selected_path.remote_address == ("203.0.113.10", 5000)
    agree(alice, bob)
    app_data_flows(net, alice, bob)


def test_same_lan_is_lan() -> None:
    net = Network()
    alice, bob = pair(net, "cone", "cone", same_lan=True)
    net.run(3)
    for peer, other in ((alice, bob), (bob, alice)):
        path = peer.machine.selected_path
        assert path is not None
        assert path.kind == "lan"
        assert path.remote_address == other.address
    app_data_flows(net, alice, bob)


# --- where only the relay works ---------------------------------------------------------------------------


def test_symmetric_to_symmetric_is_relayed_with_the_reason() -> None:
    net = Network()
    alice, bob = pair(net, "symmetric", "symmetric")
    net.run(6)
    for peer in (alice, bob):
        t, event = first(peer, PathSelected)
        assert isinstance(event, PathSelected)
        assert event.path.kind == "relayed"
        assert event.path.relay_transport == "udp"
        assert event.path.relayed_by in ("us", "peer", "both")
        assert event.path.reason_if_relayed is not None
        assert NEW_PORT in event.path.reason_if_relayed
        assert 0.9 < t < 1.6  # after relay_grace, not before
    alice_path = alice.machine.selected_path
    assert alice_path is not None
    assert alice_path.reason_if_relayed in (f"peer's {NEW_PORT}", f"our {NEW_PORT}")
    app_data_flows(net, alice, bob)


def test_cone_to_symmetric_connects() -> None:
    net = Network()
    alice, bob = pair(net, "cone", "symmetric")
    net.run(6)
    for peer in (alice, bob):
        path = peer.machine.selected_path
        assert path is not None
        if path.kind == "relayed":
            assert path.reason_if_relayed is not None
            assert NEW_PORT in path.reason_if_relayed
    app_data_flows(net, alice, bob)


def test_declared_mapping_explains_the_relay() -> None:
    net = Network()
    a_box, b_box = net.nat("198.51.100.1", "cone"), net.nat("198.51.100.2", "blocked")
    alice = net.add_peer("alice", ("192.168.1.10", 5000), nat=a_box, controlling=True)
    bob = net.add_peer(
        "bob", ("203.0.113.20", 6000), nat=None, controlling=False, mapping="address-and-port-dependent"
    )
    net.drop = lambda packet, now: not packet.relayed  # nothing direct gets through
    net.exchange(alice, bob, declare_mapping=True)
    net.run(3)
    path = alice.machine.selected_path
    assert path is not None
    assert path.reason_if_relayed == f"peer's {NEW_PORT}"
    assert b_box.kind == "blocked"


def test_force_relay_hides_our_address() -> None:
    net = Network()
    alice, bob = pair(net, "cone", "cone", a_config=HolePunchConfig(force_relay=True), exchange=False)
    assert [c.kind for c in alice.machine.local_candidates] == ["relay"]
    net.exchange(alice, bob)
    net.run(4)
    path = alice.machine.selected_path
    assert path is not None
    assert path.kind == "relayed"
    assert path.via == "relay"
    assert path.reason_if_relayed == "relay forced by settings"
    bob_path = bob.machine.selected_path
    assert bob_path is not None
    assert bob_path.reason_if_relayed == "peer has no direct candidates"
    # Alice never sent a datagram from her own socket, so Bob never saw her address.
    assert all(out.via == "relay" for _, name, out in net.sent if name == "alice")
    assert all(c.address[0] != "198.51.100.1" for c in bob.machine.remote_candidates)
    app_data_flows(net, alice, bob)


def test_udp_blocked_reports_the_loss() -> None:
    net = Network()
    alice, bob = pair(net, "cone", "blocked")
    net.run(15)
    for peer in (alice, bob):
        assert peer.machine.selected_path is None
        _, event = first(peer, PathLost)
        assert isinstance(event, PathLost)
        assert event.reason
    assert not alice.of_type(PathSelected)


def test_our_relay_over_tcp_is_used_at_once_and_said_so() -> None:
    """Behind a UDP-blocking router (relay reached over TCP) no direct pair can work: no grace to wait out."""
    net = Network()
    alice, bob = pair(net, "symmetric", "symmetric", a_config=HolePunchConfig(relay_transport="tcp"))
    net.run(6)
    t, event = first(alice, PathSelected)
    assert isinstance(event, PathSelected)
    assert event.path.kind == "relayed"
    assert t < 0.5  # no relay_grace (1 s) on our side
    selected = alice.machine.selected_path
    assert selected is not None
    assert selected.reason_if_relayed == "our network lets no UDP out: the relay is reached over TCP"
    assert selected.relay_transport == ("tcp" if selected.via == "relay" else "udp")
    app_data_flows(net, alice, bob)


# --- upgrade and failover ---------------------------------------------------------------------------------


def test_starts_on_relay_then_upgrades_to_direct() -> None:
    net = Network()
    net.drop = lambda packet, now: not packet.relayed and now < 3.0
    alice, bob = pair(net, "cone", "cone")
    net.run(8)
    for peer in (alice, bob):
        moves = paths(peer)
        assert [p.kind for _, p in moves] == ["relayed", "direct"], moves
        (t_relay, _), (t_direct, _) = moves
        assert 0.9 < t_relay < 1.6
        assert 3.0 < t_direct < 5.0
        changed = peer.of_type(PathChanged)
        assert len(changed) == 1
        event = changed[0][1]
        assert isinstance(event, PathChanged)
        assert event.previous.kind == "relayed"
    agree(alice, bob)
    app_data_flows(net, alice, bob)


def test_dead_direct_path_fails_over_to_relay_within_3s_and_comes_back() -> None:
    net = Network()
    net.drop = lambda packet, now: not packet.relayed and 10.0 <= now < 20.0
    alice, bob = pair(net, "cone", "cone")
    net.run(9.5)
    assert alice.machine.selected_path is not None
    assert alice.machine.selected_path.kind == "direct"
    net.run(13.1)
    for peer in (alice, bob):
        changed = [(t, e) for t, e in peer.of_type(PathChanged) if t >= 10.0]
        assert changed, peer.events
        t, event = changed[0]
        assert isinstance(event, PathChanged)
        assert event.path.kind == "relayed"
        assert event.previous.kind == "direct"
        assert t - 10.0 <= 3.0
        assert "stopped answering" in event.reason or "switched" in event.reason
        assert not peer.of_type(PathLost)
    app_data_flows(net, alice, bob)
    # The direct path comes back at 20 s: reprobing finds it and both move back.
    net.run(50)
    for peer in (alice, bob):
        path = peer.machine.selected_path
        assert path is not None
        assert path.kind == "direct", paths(peer)
    agree(alice, bob)
    app_data_flows(net, alice, bob)


def test_everything_dies_then_recovers() -> None:
    net = Network()
    net.drop = lambda packet, now: 5.0 <= now < 12.0
    alice, bob = pair(net, "cone", "cone")
    net.run(10)
    for peer in (alice, bob):
        assert peer.machine.selected_path is None
        assert peer.of_type(PathLost)
    net.run(60)
    for peer in (alice, bob):
        assert peer.of_type(PathRecovered)
        assert peer.machine.selected_path is not None
    app_data_flows(net, alice, bob)


# --- roles, loss, pacing, stats ---------------------------------------------------------------------------


@pytest.mark.parametrize("controlling", [True, False])
def test_role_conflict_resolves(controlling: bool) -> None:
    net = Network()
    a_box, b_box = net.nat("198.51.100.1", "cone"), net.nat("198.51.100.2", "cone")
    alice = net.add_peer("alice", ("192.168.1.10", 5000), nat=a_box, controlling=controlling, tie_breaker=5)
    bob = net.add_peer("bob", ("10.0.0.20", 6000), nat=b_box, controlling=controlling, tie_breaker=9)
    net.exchange(alice, bob)
    net.run(5)
    # RFC 8445 §7.3.1.1: the larger tie-breaker (Bob's) ends up controlling.
    assert bob.machine.controlling
    assert not alice.machine.controlling
    switched = alice if controlling else bob
    assert [e for _, e in switched.events if isinstance(e, RoleChanged)] == [RoleChanged(not controlling)]
    for peer in (alice, bob):
        assert peer.machine.selected_path is not None
        assert peer.machine.selected_path.kind == "direct"
    agree(alice, bob)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_twenty_percent_loss_and_reordering_still_connects(seed: int) -> None:
    net = Network(seed=seed, loss=0.2, jitter=0.03)
    alice, bob = pair(net, "cone", "cone")
    net.run(10)
    for peer in (alice, bob):
        assert peer.machine.selected_path is not None, peer.events
        assert peer.machine.selected_path.kind == "direct"
    agree(alice, bob)


def test_new_checks_are_paced_by_ta() -> None:
    config = HolePunchConfig()
    net = Network()
    alice, bob = pair(net, "cone", "cone", a_config=config, b_config=config)
    net.run(10)
    for peer in (alice, bob):
        seen: set[bytes] = set()
        starts: list[float] = []
        for t, name, out in net.sent:
            if name != peer.name or not is_stun(out.data):
                continue
            message = decode(out.data)
            if message.message_class == StunClass.REQUEST and message.transaction_id not in seen:
                seen.add(message.transaction_id)
                starts.append(t)
        assert len(starts) > 10
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= config.check_pacing - 1e-9


def test_stats_measure_rtt_and_loss_from_consent_checks() -> None:
    net = Network(delay=0.025)
    alice, _ = pair(net, "cone", "cone")
    net.run(8)
    stats = [e for _, e in alice.of_type(PathStats) if isinstance(e, PathStats)]
    assert len(stats) >= 5
    assert all(s.path.kind == "direct" for s in stats)
    assert stats[-1].rtt_ms == pytest.approx(50, abs=1)
    assert stats[-1].loss == 0.0
    # Drop a tenth of everything direct: the loss figure shows it, and the path stays.
    net.drop = lambda packet, now: not packet.relayed and net.rng.random() < 0.1
    net.run(40)
    stats = [e for _, e in alice.of_type(PathStats) if isinstance(e, PathStats)]
    assert max(s.loss for s in stats) > 0.0
    assert all(s.path.kind == "direct" for s in stats)
    assert stats[-1].samples == HolePunchConfig().stats_window


def test_drop_hook_sees_packets() -> None:
    seen: list[Packet] = []
    net = Network()

    def spy(packet: Packet, now: float) -> bool:
        seen.append(packet)
        return False

    net.drop = spy
    pair(net, "cone", "cone")
    net.run(1)
    assert any(p.relayed for p in seen)
    assert any(not p.relayed for p in seen)
