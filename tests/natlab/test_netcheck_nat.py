"""The network check against real Linux NAT routers (namespaces, nftables): each router behaviour the lab
builds is classified as it is, by `punchline-cli netcheck` run on a host behind it, against our rendezvous
server with a second address (RFC 5780 "change IP")."""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

import pytest

from app.nat.router_behaviour import RouterBehaviour, pair_verdict
from tests.helpers.natlab.cli import Peers, read_until
from tests.helpers.natlab.fixtures import HostKind, LabFactory
from tests.helpers.server import PASSWORD

ALT_IP = "203.0.113.2"  # the lab gives the server this second address (server_extra_ips=1)


async def netcheck(nat_lab: LabFactory, kind: HostKind, *extra: str, udp_timeout: int | None = None) -> Any:
    lab = nat_lab(kind, None, server_extra_ips=1, udp_timeout=udp_timeout)
    peers = Peers(lab)
    await peers.start_server("--stun-alt-ip", ALT_IP)
    argv = ["python", "-m", "app.cli.main", "netcheck", "--stun", f"{lab.server.ip}:3478", "--json", *extra]
    proc = await lab.spawn("left", *argv, stdin=False)
    assert proc.proc.stdout is not None
    out = await proc.proc.stdout.read()
    await proc.wait(60)
    return json.loads(out.decode().splitlines()[-1])


@pytest.mark.parametrize(
    ("kind", "mapping", "filtering", "behind_nat"),
    [
        ("cone", "endpoint-independent", "address-and-port-dependent", True),
        ("symmetric", "address-and-port-dependent", "address-and-port-dependent", True),
        ("full_cone", "endpoint-independent", "endpoint-independent", True),
        ("none", "endpoint-independent", "endpoint-independent", False),
    ],
)
async def test_each_router_is_classified_as_it_behaves(
    nat_lab: LabFactory, kind: HostKind, mapping: str, filtering: str, behind_nat: bool
) -> None:
    report = await netcheck(nat_lab, kind)
    assert report["udp"] is True
    assert (report["mapping"], report["filtering"], report["behind_nat"]) == (mapping, filtering, behind_nat)
    assert report["server_addresses"] == 2
    if kind == "symmetric":
        assert report["port_preserved"] is False  # fully-random masquerade
        assert "new port for every destination" in report["verdict"]
    elif kind == "cone":
        assert report["port_preserved"] is True
        assert report["verdict"].startswith("Your router is peer-friendly")


async def test_a_network_without_udp_is_said_plainly(nat_lab: LabFactory) -> None:
    report = await netcheck(nat_lab, "udp_blocked")
    assert report["udp"] is False
    assert "lets no UDP out" in report["verdict"]


async def test_a_short_mapping_lifetime_is_measured(nat_lab: LabFactory) -> None:
    """A router that forgets idle UDP mappings after 3 s: alive after 2 s idle, not after 4."""
    report = await netcheck(nat_lab, "cone", "--lifetime", "--lifetime-steps", "1,2,4,8", udp_timeout=3)
    assert report["mapping_lifetime"] == 2.0


NATDISCOVERY_TERMS = {
    "Endpoint Independent": "endpoint-independent",
    "Address Dependent": "address-dependent",
    "Address and Port Dependent": "address-and-port-dependent",
}


@pytest.mark.skipif(
    shutil.which("turnutils_natdiscovery") is None, reason="coturn's natdiscovery is not installed"
)
@pytest.mark.parametrize("kind", ["cone", "symmetric", "full_cone"])
async def test_coturns_natdiscovery_agrees_with_our_check(nat_lab: LabFactory, kind: HostKind) -> None:
    """coturn's RFC 5780 client, run behind the same router against our server, finds the same behaviour."""
    lab = nat_lab(kind, None, server_extra_ips=1)
    peers = Peers(lab)
    await peers.start_server("--stun-alt-ip", ALT_IP)
    tool = await lab.spawn(
        "left",
        "timeout",
        "30",
        "turnutils_natdiscovery",
        "-m",
        "-f",
        "-p",
        "3478",
        lab.server.ip,
        stdin=False,
    )
    assert tool.proc.stdout is not None
    output = (await tool.proc.stdout.read()).decode(errors="replace")
    await tool.wait(40)
    found = re.findall(r"NAT with (.+?) (Mapping|Filtering)!", output)
    theirs = {what: NATDISCOVERY_TERMS[term] for term, what in found}
    argv = ["python", "-m", "app.cli.main", "netcheck", "--stun", f"{lab.server.ip}:3478", "--json"]
    proc = await lab.spawn("left", *argv, stdin=False)
    assert proc.proc.stdout is not None
    ours = json.loads((await proc.proc.stdout.read()).decode().splitlines()[-1])
    await proc.wait(60)
    assert theirs == {"Mapping": ours["mapping"], "Filtering": ours["filtering"]}, output


@pytest.mark.parametrize(
    "case",
    [
        ("cone", "cone", "direct likely", "direct"),
        ("full_cone", "symmetric", "direct likely", "direct"),
        ("cone", "symmetric", "will use the relay", "relayed"),
        ("symmetric", "symmetric", "will use the relay", "relayed"),
    ],
)
async def test_pair_verdicts_match_what_the_connection_code_achieves(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, case: tuple[HostKind, HostKind, str, str]
) -> None:
    """Both sides check first (``--netcheck``) and tell each other; the verdict from the two reports is what
    the connection then does — and a hopeless pair goes straight to the relay, saying why."""
    left, right, verdict, kind = case
    monkeypatch.setenv("PUNCHLINE_PASSWORD", PASSWORD)
    lab = nat_lab(left, right, server_extra_ips=1)
    peers = Peers(lab)
    await peers.start_server("--stun-alt-ip", ALT_IP)
    await peers.befriend()
    listener = await lab.spawn("right", *peers.argv("bob", "listen", "--netcheck"), stdin=False)
    theirs = json.loads(await listener.read_line(30))
    assert theirs["event"] == "netcheck"
    assert json.loads(await listener.read_line(15))["event"] == "listening"
    argv = peers.argv("alice", "connect", "bob", "--netcheck", "--count", "3", "--interval", "0.1")
    proc = await lab.spawn("left", *argv, stdin=False)
    lines = await read_until(proc, lambda line: line["event"] == "summary", timeout=60)
    ours = next(line for line in lines if line["event"] == "netcheck")
    expected, _ = pair_verdict(
        RouterBehaviour(udp=True, mapping=ours["mapping"], filtering=ours["filtering"]),
        RouterBehaviour(udp=True, mapping=theirs["mapping"], filtering=theirs["filtering"]),
    )
    assert expected == verdict
    path = next(line for line in lines if line["event"] == "path")
    assert path["kind"] == kind, path
    if kind == "relayed":
        assert path["reason"].startswith("the network checks said so"), path
