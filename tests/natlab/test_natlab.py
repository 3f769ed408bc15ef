"""The NAT lab does what it claims: mappings, filtering, punching, impairments, link cuts and teardown.

Only plain UDP/TCP sockets, our STUN server and our STUN client are used, so a failure here is the lab's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from typing import Any

import pytest

from tests.helpers.natlab import Lab, LabFactory, LabProcess
from tests.helpers.natlab.fixtures import skip_unless_lab_can_run
from tests.helpers.natlab.topology import NS_PREFIX, clean_leftovers, list_namespaces

STUN_PORTS = [3478, 3479]
ECHO_PORT = 7000


async def start_stun(lab: Lab) -> LabProcess:
    """Our STUN server on two ports of the server host."""
    proc = await lab.spawn_agent("server", "stun_server", host=lab.server.ip, ports=STUN_PORTS)
    await proc.read_json()
    return proc


async def start_echo(lab: Lab, host: str = "server") -> tuple[str, int]:
    """A UDP echo server (tests/helpers/natlab/agents.py) in ``host``; its address."""
    proc = await lab.spawn_agent(host, "udp_echo", host="0.0.0.0", port=ECHO_PORT)
    await proc.read_json()
    return (lab.hosts[host].ip, ECHO_PORT)


async def discover(lab: Lab, host: str, local_port: int = 40000) -> list[dict[str, Any]]:
    """The public addresses ``host`` gets from both STUN ports, asked from one local port."""
    return await discover_from(lab, host, [[lab.server.ip, p] for p in STUN_PORTS], local_port=local_port)


async def discover_from(lab: Lab, host: str, servers: list[list[Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """The results of asking each of ``servers`` (see agents.stun_discover)."""
    result = await lab.agent(host, "stun_discover", servers=servers, **kwargs)
    assert isinstance(result, list)
    return result


async def punch(lab: Lab, a: str, b: str, pings: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain simultaneous UDP punching between hosts ``a`` and ``b`` (addresses swapped via STUN)."""
    stun = [lab.server.ip, STUN_PORTS[0]]
    pa = await lab.spawn_agent(a, "punch", local_port=40000, stun=stun, pings=pings)
    pb = await lab.spawn_agent(b, "punch", local_port=40000, stun=stun)
    public_a, public_b = await pa.read_json(), await pb.read_json()
    assert isinstance(public_a, dict)
    assert isinstance(public_b, dict)
    await pa.send_json(public_b["public"])
    await pb.send_json(public_a["public"])
    result_a, result_b = await pa.read_json(), await pb.read_json()
    assert isinstance(result_a, dict)
    assert isinstance(result_b, dict)
    return result_a, result_b


async def probe(lab: Lab, host: str, target: tuple[str, int], **kwargs: Any) -> dict[str, Any]:
    """Send datagrams from ``host`` to a UDP echo and count what comes back (see agents.udp_probe)."""
    result = await lab.agent(host, "udp_probe", target=list(target), **kwargs)
    assert isinstance(result, dict)
    return result


# --- NAT behaviours -------------------------------------------------------------------------------------


async def test_cone_mapping_is_port_preserving_and_endpoint_independent(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", None)
    await start_stun(lab)
    first, second = await discover(lab, "left")
    wan = lab.router_of("left").wan_ip
    assert first["public"] == second["public"] == [wan, 40000]


async def test_symmetric_mapping_changes_with_the_destination(nat_lab: LabFactory) -> None:
    lab = nat_lab("symmetric", None)
    await start_stun(lab)
    first, second = await discover(lab, "left")
    wan = lab.router_of("left").wan_ip
    assert first["public"][0] == second["public"][0] == wan
    assert first["public"][1] != second["public"][1]


async def test_public_host_and_router_without_nat_are_seen_as_they_are(nat_lab: LabFactory) -> None:
    lab = nat_lab("none", "public")
    await start_stun(lab)
    assert lab.right.router is None
    for host in (lab.left, lab.right):
        first, _ = await discover(lab, host.name)
        assert first["public"] == [host.ip, 40000]


async def test_two_hosts_on_one_lan_share_the_router_and_reach_each_other(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", same_lan=True)
    await start_stun(lab)
    assert lab.router_of("left") == lab.router_of("right")
    left, right = (await discover(lab, "left", 41000))[0], (await discover(lab, "right", 41001))[0]
    assert left["public"][0] == right["public"][0] == lab.router_of("left").wan_ip
    result = await probe(lab, "left", await start_echo(lab, "right"), count=5)
    assert result["echoed"] == 5


async def test_cone_clients_punch_a_hole_with_plain_udp(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", "cone")
    await start_stun(lab)
    left, right = await punch(lab, "left", "right")
    for side in (left, right):
        assert side["received"], side
        assert side["acked"], side
    assert left["from"] == [lab.router_of("right").wan_ip, 40000]


@pytest.mark.parametrize(("left", "right"), [("symmetric", "symmetric"), ("cone", "symmetric")])
async def test_plain_punching_fails_against_symmetric_nat(nat_lab: LabFactory, left: Any, right: Any) -> None:
    lab = nat_lab(left, right)
    await start_stun(lab)
    result_left, result_right = await punch(lab, "left", "right")
    # Neither side's punches reach the other: the symmetric side's port toward the peer is not the one
    # the STUN server saw, and a port-restricted cone drops what comes from an unknown port.
    assert not (result_left["acked"] and result_right["acked"]), (result_left, result_right)
    assert not result_left["received"], result_left


async def test_udp_blocked_router_lets_only_tcp_out(nat_lab: LabFactory) -> None:
    lab = nat_lab("udp_blocked", None)
    await start_stun(lab)
    await lab.spawn_agent("server", "tcp_echo", host="0.0.0.0", port=8443)
    servers = [[lab.server.ip, STUN_PORTS[0]]]
    [udp] = await discover_from(lab, "left", servers, wait=0.5)
    assert "No answer" in udp["error"]
    tcp = await lab.agent("left", "tcp_connect", target=[lab.server.ip, 8443])
    assert tcp == {"ok": True}


async def test_hostile_cone_answers_unsolicited_wan_packets_cone_drops_them(
    nat_lab: LabFactory,
) -> None:
    lab = nat_lab("cone", "hostile_cone")
    # An unsolicited datagram to each router's WAN at a port nobody uses: the hostile router lets it in
    # (port unreachable comes back, and conntrack keeps an entry); the cone router drops it silently.
    code = """
import json, socket, sys
answers = {}
for ip in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    s.connect((ip, 40000))
    s.send(b"hello?")
    try:
        s.recv(100)
        answers[ip] = "answer"
    except ConnectionRefusedError:
        answers[ip] = "refused"
    except TimeoutError:
        answers[ip] = "silence"
print(json.dumps(answers))
"""
    cone, hostile = lab.routers["left_nat"].wan_ip, lab.routers["right_nat"].wan_ip
    answers = await lab.run_python("server", code, cone, hostile)
    assert answers == {cone: "silence", hostile: "refused"}


async def test_conntrack_udp_timeout_knob_expires_mappings(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", None, udp_timeout=1)
    echo = await start_echo(lab)
    # The echo server answers after a pause: within the 1 s timeout the mapping still lets it in,
    # after it the router has forgotten the mapping and drops the answer (what keepalives prevent).
    code = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.5)
results = {}
for pause in ("0.3", "1.6"):
    s.sendto(f"later:{pause}:x".encode(), (sys.argv[1], int(sys.argv[2])))
    try:
        s.recv(100)
        results[pause] = True
    except TimeoutError:
        results[pause] = False
print(json.dumps(results))
"""
    assert await lab.run_python("left", code, echo[0], str(echo[1])) == {"0.3": True, "1.6": False}


# --- impairments and link control -----------------------------------------------------------------------


async def test_loss_setting_drops_that_fraction_each_way(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", None, loss=20)
    echo = await start_echo(lab)
    n = 1000
    result = await probe(lab, "left", echo, count=n, interval=0.0005)
    one_way = result["server_count"] / n
    round_trip = result["echoed"] / n
    # Binomial, n = 1000: the standard deviation is ~1.3 % one way, ~1.5 % round trip; allow ~4.5 sigma.
    assert 0.74 <= one_way <= 0.86, result["server_count"]
    assert 0.57 <= round_trip <= 0.71, result["echoed"]


async def test_delay_setting_gives_the_round_trip_time(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", "cone", delay_ms=10)
    await start_stun(lab)
    echo = await start_echo(lab)
    to_server = await probe(lab, "left", echo, count=20, interval=0.01)
    assert to_server["echoed"] == 20
    assert 19.5 <= to_server["median_ms"] <= 24, to_server  # 10 ms each way on left's WAN link
    left, _ = await punch(lab, "left", "right", pings=10)
    peer_rtt = statistics.median(left["rtt_ms"])
    assert 39.5 <= peer_rtt <= 46, left  # 10 ms each way on both WAN links: the benchmark's 40 ms


async def test_jitter_spreads_the_round_trip_time(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", None, delay_ms=10, jitter_ms=4)
    echo = await start_echo(lab)
    result = await probe(lab, "left", echo, count=40, interval=0.01)
    rtts = result["rtt_ms"]
    assert result["echoed"] == 40
    assert min(rtts) >= 12  # two passes of 10 ± 4 ms
    assert max(rtts) - min(rtts) >= 4, rtts
    assert 17 <= statistics.median(rtts) <= 24, rtts


async def test_link_down_stops_traffic_and_link_up_restores_it(nat_lab: LabFactory) -> None:
    lab = nat_lab("cone", None)
    echo = await start_echo(lab)
    assert (await probe(lab, "left", echo, count=3, ask_count=False))["echoed"] == 3
    lab.link_down("left_nat")
    assert (await probe(lab, "left", echo, count=3, ask_count=False))["echoed"] == 0
    lab.link_up("left_nat")
    assert (await probe(lab, "left", echo, count=3, ask_count=False))["echoed"] == 3


# --- teardown -------------------------------------------------------------------------------------------


def _links() -> int:
    return len(
        subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_teardown_leaves_no_namespaces_processes_or_links(nat_lab: LabFactory) -> None:
    before_links = _links()
    lab = nat_lab("cone", "symmetric", delay_ms=1, public_hosts=1)
    echo = await lab.spawn_agent("server", "udp_echo", host="0.0.0.0", port=ECHO_PORT)
    await echo.read_json()
    forwarders = lab.forwarder_pids
    assert len(forwarders) == 3  # pub1 and both routers (the server's link is not impaired)
    assert any(ns.startswith(lab.prefix) for ns in list_namespaces())
    await lab.aclose()
    assert not [ns for ns in list_namespaces() if ns.startswith(lab.prefix)]
    assert not [pid for pid in [echo.pid, *forwarders] if _alive(pid)]
    assert _links() == before_links


def test_leftovers_of_a_crashed_run_are_removed() -> None:
    skip_unless_lab_can_run()
    dead_pid = 4_194_000  # no such pid: above pid_max here, and the kernel's largest possible
    assert not _alive(dead_pid)
    name = f"{NS_PREFIX}{dead_pid}-1-pub"
    subprocess.run(["ip", "netns", "add", name], check=True)
    assert name in clean_leftovers()
    assert name not in list_namespaces()
