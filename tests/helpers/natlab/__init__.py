"""The NAT lab: real Linux NAT routers in network namespaces, for proving hole punching end to end.

Topology of ``nat_lab("cone", "symmetric")`` (every box is a network namespace named pl-<pid>-<n>-<role>)::

                          public segment 203.0.113.0/24 (TEST-NET-3)
        +--------+        +------------------ pub: bridge br0 ------------------+
        | server |--eth0--+ p-server            p-left_nat            p-right_nat|
        | .1     |        +-----------------------|-----------------------|-----+
        +--------+                     wan 203.0.113.11           wan 203.0.113.12
                                       +-----------+              +-----------+
                                       | left_nat  | cone         | right_nat | symmetric
                                       +-----------+              +-----------+
                                       lan 192.168.1.1            lan 192.168.2.1
                                             |                          |
                                       +-----------+              +-----------+
                                       | left      |              | right     |
                                       | .1.10     |              | .2.10     |
                                       +-----------+              +-----------+

Routers (nftables, see `topology.router_ruleset`): ``cone`` = masquerade (port-preserving,
endpoint-independent mapping, port-restricted filtering) with unsolicited WAN input dropped; ``symmetric``
= ``masquerade fully-random``; ``none`` = plain routing (public hosts get routes to its LAN);
``udp_blocked`` = cone that drops all UDP forwarded from the LAN (only TCP leaves); ``hostile_cone`` = cone
without the WAN input drop (punching then mostly fails, see NOTES.md). Hosts "public" sit on the bridge
directly (203.0.113.101...). Each link to the bridge can have a rate (tbf), random loss (nft netdev
ingress, per direction) and one-way delay ± jitter (a userspace TAP forwarder, tapfwd.py).

Use in a test (the fixture lives in fixtures.py here, registered by tests/conftest.py; the tests that
use it live in tests/natlab)::

    async def test_something(nat_lab: LabFactory) -> None:
        lab = nat_lab("cone", "cone", delay_ms=10)          # or nat_lab.build(LabSpec(...))
        stun = await lab.spawn_agent("server", "stun_server", host=lab.server.ip, ports=[3478])
        await stun.read_json()                               # {"ready": ...}
        result = await lab.agent("left", "stun_discover", servers=[[lab.server.ip, 3478]])
        proc = await lab.spawn("left", "python", "-m", "app.cli.main", ...)   # runs in left's namespace
        lab.link_down("left_nat"); lab.link_up("left_nat")

Everything started through the lab is killed and every namespace deleted when the test ends, pass or
fail; namespaces of crashed earlier runs (dead pid in the name) are removed at the first use.
"""

from tests.helpers.natlab.fixtures import LabFactory
from tests.helpers.natlab.process import LabProcess
from tests.helpers.natlab.topology import Host, Lab, LabError, LabSpec, LinkSpec, Router, SiteSpec

__all__ = ["Host", "Lab", "LabError", "LabFactory", "LabProcess", "LabSpec", "LinkSpec", "Router", "SiteSpec"]
