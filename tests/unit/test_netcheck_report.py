"""The network check's words (no network): pair verdicts for every pairing, NAT-PMP answers, double NAT."""

from __future__ import annotations

import pytest

from app.nat.router_behaviour import Behaviour, pair_verdict
from app.netcheck.port_mapping import PortMapping, parse_nat_pmp
from app.netcheck.report import NetworkReport


def router(mapping: Behaviour, filtering: Behaviour, udp: bool = True) -> NetworkReport:
    return NetworkReport(udp=udp, mapping=mapping, filtering=filtering)


EI: Behaviour = "endpoint-independent"
AD: Behaviour = "address-dependent"
APD: Behaviour = "address-and-port-dependent"
EI_OR_AD: Behaviour = "endpoint-independent or address-dependent"


@pytest.mark.parametrize(
    ("ours", "theirs", "verdict"),
    [
        (router(EI, APD), router(EI, APD), "direct likely"),
        (router(EI, EI), router(APD, APD), "direct likely"),
        (router(EI, AD), router(APD, APD), "direct likely"),
        (router(EI, APD), router(APD, APD), "will use the relay"),
        (router(APD, APD), router(AD, APD), "will use the relay"),
        (router(EI, APD), router(EI, APD, udp=False), "will use the relay"),
        (
            router(EI, "endpoint-independent or address-dependent"),
            router(APD, APD),
            "direct after extra probing",
        ),
        (router("unknown", "unknown"), router(EI, APD), "direct after extra probing"),
    ],
)
def test_pair_verdicts_are_the_same_from_both_sides(
    ours: NetworkReport, theirs: NetworkReport, verdict: str
) -> None:
    assert pair_verdict(ours.behaviour, theirs.behaviour)[0] == verdict
    assert pair_verdict(theirs.behaviour, ours.behaviour) == pair_verdict(ours.behaviour, theirs.behaviour)


def test_a_nat_pmp_answer_names_the_gateways_own_address_and_reveals_a_double_nat() -> None:
    answer = bytes([0, 128, 0, 0, 0, 0, 1, 0]) + bytes([100, 64, 3, 7])  # RFC 6886 §3.2, result 0
    assert parse_nat_pmp(answer) == PortMapping("NAT-PMP", "100.64.3.7")
    assert parse_nat_pmp(bytes([2, 128, 0, 1])) == PortMapping("PCP")  # a PCP server's version error
    report = NetworkReport(
        udp=True,
        local=("192.168.1.20", 5000),
        public=("198.51.100.7", 61000),
        mapping="endpoint-independent",
        filtering="address-and-port-dependent",
        gateway_external_ip="100.64.3.7",
    )
    assert report.double_nat
    assert "second NAT beyond your router" in report.verdict()
