"""Building and tearing down the lab: network namespaces, veth/TAP links, a bridge, nftables NAT rules.

Everything here drives the ordinary tools (`ip`, `nft`, `tc`, `sysctl`) through subprocess, so what a test
proves is what real Linux routers do. Rules and numbers come from /work/shared/NOTES.md (measured here).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.helpers.natlab.process import LabProcess, run_json, spawn
from tests.helpers.paths import REPO_ROOT

NatType = Literal["cone", "symmetric", "none", "udp_blocked", "hostile_cone", "full_cone"]
NAT_TYPES: tuple[NatType, ...] = ("cone", "symmetric", "none", "udp_blocked", "hostile_cone", "full_cone")
#: The public segment (TEST-NET-3, RFC 5737: never routed on the real Internet).
PUBLIC_NET = ipaddress.IPv4Network("203.0.113.0/24")
SERVER_IP = "203.0.113.1"
#: Namespace names are machine-wide: pl-<pid of the test process>-<lab number>-<role>.
NS_PREFIX = "pl-"
_NS_RE = re.compile(r"^pl-(\d+)-(\d+)-")
#: The lab's own programs, run with ``python -m`` inside its namespaces.
AGENTS = "tests.helpers.natlab.agents"
TAPFWD = "tests.helpers.natlab.tapfwd"


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


# --- what to build --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSpec:
    """Impairments of one link to the public segment, applied in both directions."""

    #: Rate limit in kbit/s (tc tbf on each end's egress); None: unlimited.
    rate_kbit: int | None = None
    #: Random loss per direction, in percent (nftables netdev ingress `numgen random` on each end).
    loss_percent: float = 0.0
    #: One-way delay and ± uniform jitter in ms (a userspace TAP forwarder; see tapfwd.py).
    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    @property
    def needs_forwarder(self) -> bool:
        """True when the link must be a TAP pair with a forwarding process instead of a veth pair."""
        return self.delay_ms > 0 or self.jitter_ms > 0


@dataclass(frozen=True)
class SiteSpec:
    """A home: a router of kind ``nat`` with a LAN and the named client hosts behind it."""

    name: str
    nat: NatType = "cone"
    clients: tuple[str, ...] = ()
    link: LinkSpec = LinkSpec()
    #: LAN prefix, e.g. "192.168.1.0/24"; None: 192.168.<site number>.0/24.
    lan: str | None = None
    #: Conntrack UDP timeouts on the router in seconds (unreplied, stream); None: kernel defaults 30/120.
    udp_timeout: int | None = None
    udp_stream_timeout: int | None = None


@dataclass(frozen=True)
class LabSpec:
    """The whole lab: sites behind routers, hosts directly on the public segment, the server's link."""

    sites: tuple[SiteSpec, ...] = ()
    #: Hosts on the public segment without NAT (a server-like peer, a user with a public IP).
    public_hosts: tuple[str, ...] = ()
    public_link: LinkSpec = LinkSpec()
    #: Extra addresses for the server (203.0.113.2, ...) e.g. for RFC 5780 tests.
    server_extra_ips: int = 0
    server_link: LinkSpec = LinkSpec()


# --- what was built -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """A machine in the lab: its logical ``name``, namespace ``ns`` and (first) IPv4 address ``ip``."""

    name: str
    ns: str
    ip: str
    #: The router it sits behind (None: directly on the public segment).
    router: str | None = None
    extra_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Router:
    """A NAT router: namespace, WAN address on the public segment, LAN prefix, behaviour."""

    name: str
    ns: str
    wan_ip: str
    lan: str
    lan_ip: str
    nat: NatType
    #: The bridge port in the public namespace (link_down sets it down).
    public_port: str


@dataclass
class _Uplink:
    """Bookkeeping for one link to the public bridge."""

    ns: str
    dev: str  # the device inside ``ns``
    port: str  # the bridge port in the public namespace
    spec: LinkSpec
    forwarder: subprocess.Popen[bytes] | None = None


# --- running commands -----------------------------------------------------------------------------------


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        shown = " ".join(argv)
        raise LabError(f"`{shown}` failed ({result.returncode}): {result.stderr.strip()}\n{stdin or ''}")
    return result.stdout


def _ip_batch(ns: str | None, commands: list[str]) -> None:
    """Run many `ip` commands in one process (much faster than one process each)."""
    if commands:
        _run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], "\n".join(commands) + "\n")


def _in_ns(ns: str, argv: Sequence[str], stdin: str | None = None) -> str:
    return _run(["ip", "netns", "exec", ns, *argv], stdin)


def missing_capability() -> str | None:
    """Why the lab cannot run here (not root, a tool missing), or None when it can."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces, nftables)"
    for tool in ("ip", "nft", "tc", "sysctl"):
        if shutil.which(tool) is None:
            return f"the NAT lab needs `{tool}` (packaging/dev-setup.sh --test installs it)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    """All named network namespaces on the machine."""
    out = _run(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def clean_leftovers() -> list[str]:
    """Delete lab namespaces left by crashed runs (our name scheme, a pid that no longer exists)."""
    removed = []
    for ns in list_namespaces():
        match = _NS_RE.match(ns)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            _kill_ns_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            removed.append(ns)
    return removed


def _kill_ns_processes(ns: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
    for pid in out.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


# --- nftables rule sets ---------------------------------------------------------------------------------

# Real home routers drop unsolicited packets arriving on the WAN side. Without this, a peer's first
# punch packet to router:port creates a confirmed conntrack entry (peer -> router:port), our client's own
# outbound packet clashes with that tuple and masquerade picks a different external port: punching
# between two Linux routers then fails ~8 times in 10 (NOTES.md). Dropping in the input hook happens
# before conntrack confirms the entry, so no entry is left behind.
_WAN_INPUT_DROP = """
    chain input {
        type filter hook input priority 0; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
"""

# Nothing from the WAN is forwarded into the LAN unless it belongs to a connection started inside.
_WAN_FORWARD_DROP = """
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
"""

# udp_blocked: a strict firewall that forwards no UDP from the LAN at all (so no STUN, no punching, no
# TURN over UDP); TCP (and so TURN over TCP/TLS, the rendezvous WebSocket) passes, NATed as by `cone`.
_UDP_BLOCKED_FORWARD = """
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "lan" oifname "wan" meta l4proto udp drop
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
"""


# full_cone: endpoint-independent filtering too — new inbound UDP on the WAN goes to the one LAN client
# (a prerouting dnat, NOTES.md), at the port it arrived on, which masquerade kept as the client's own.
_FULL_CONE = """table inet natlab {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" meta l4proto udp ct state new dnat ip to {client}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" ct status dnat accept
        iifname "wan" drop
    }}
{input}}}
"""


def router_ruleset(nat: NatType, client: str | None = None) -> str:
    """The nftables rule set for a router of kind ``nat`` (LAN device `lan`, WAN device `wan`).

    ``client``: the LAN host a full-cone router sends new inbound UDP to.
    """
    if nat == "none":
        return ""  # plain routing, no filtering: the LAN is reachable from the public segment
    if nat == "full_cone":
        assert client is not None, "a full-cone router needs its one LAN client"
        return _FULL_CONE.format(client=client, input=_WAN_INPUT_DROP)
    # Plain masquerade keeps the source port when free and reuses one mapping for every destination:
    # endpoint-independent mapping, address+port-dependent filtering ("port-restricted cone").
    # `fully-random` picks a new random port per destination ip:port: symmetric NAT.
    masquerade = "masquerade fully-random" if nat == "symmetric" else "masquerade"
    forward = _UDP_BLOCKED_FORWARD if nat == "udp_blocked" else _WAN_FORWARD_DROP
    # hostile_cone: the same NAT without the WAN input drop (a router that answers or tracks unsolicited
    # packets), which makes plain punching fail most of the time: for retry and relay fallback tests.
    wan_input = "" if nat == "hostile_cone" else _WAN_INPUT_DROP
    return f"""table inet natlab {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" {masquerade}
    }}
{wan_input}{forward}}}
"""


def _loss_ruleset(table: str, device: str, loss_percent: float) -> str:
    """Random loss on ingress of ``device``: a netdev chain dropping when `numgen random mod 10000 < N`.

    Only IPv4 is dropped, never ARP: a lost ARP exchange stalls a whole link for a second (the neighbour
    retry time), which is not the independent packet loss asked for (and real WAN links have no ARP).
    """
    return f"""table netdev {table} {{
    chain ingress {{
        type filter hook ingress device "{device}" priority 0; policy accept;
        meta protocol ip numgen random mod 10000 < {round(loss_percent * 100)} drop
    }}
}}
"""


# --- the lab --------------------------------------------------------------------------------------------

_lab_numbers = itertools.count(1)


class Lab:
    """A running lab: hosts and routers by name, helpers to run code in hosts, link knobs, teardown."""

    def __init__(self, spec: LabSpec, work_dir: Path) -> None:
        self.spec = spec
        self.prefix = f"{NS_PREFIX}{os.getpid()}-{next(_lab_numbers)}-"
        self.work_dir = work_dir
        self.hosts: dict[str, Host] = {}
        self.routers: dict[str, Router] = {}
        self.public_ns = self.prefix + "pub"
        self._namespaces: list[str] = []
        self._uplinks: dict[str, _Uplink] = {}  # by host or router name
        self._processes: list[LabProcess] = []
        self._closed = False
        self.setup_seconds = 0.0
        self.teardown_seconds = 0.0

    # --- convenient names

    @property
    def server(self) -> Host:
        """The rendezvous server's host, 203.0.113.1 on the public segment."""
        return self.hosts["server"]

    @property
    def left(self) -> Host:
        """The host named "left" (the first client in the usual two-site lab)."""
        return self.hosts["left"]

    @property
    def right(self) -> Host:
        """The host named "right"."""
        return self.hosts["right"]

    @property
    def forwarder_pids(self) -> list[int]:
        """Process ids of the TAP forwarders carrying delayed links (for leak checks)."""
        return [u.forwarder.pid for u in self._uplinks.values() if u.forwarder is not None]

    def router_of(self, host: str | Host) -> Router:
        """The router a host sits behind."""
        name = host.router if isinstance(host, Host) else self.hosts[host].router
        if name is None:
            raise LabError(f"{host} is on the public segment, behind no router")
        return self.routers[name]

    # --- building

    def build(self) -> Lab:
        """Create every namespace, link, address, route and rule; raise LabError (after cleaning up)."""
        started = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.close_sync()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def _add_ns(self, role: str) -> str:
        ns = self.prefix + role
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        return ns

    def _build(self) -> None:
        spec = self.spec
        names = [c for s in spec.sites for c in s.clients] + list(spec.public_hosts) + ["server"]
        names += [s.name for s in spec.sites]
        if len(set(names)) != len(names):
            raise LabError(f"host and site names must be unique: {names}")
        pub = self._add_ns("pub")
        pub_cmds = ["link add br0 type bridge", "link set br0 up", "link set lo up"]
        ns_cmds: dict[str, list[str]] = {}
        routed: list[tuple[str, str]] = []  # (LAN prefix, via WAN ip) for `none` routers
        next_public = itertools.count(101)

        # The server and the public hosts: one link each to the bridge.
        server_ns = self._add_ns("server")
        ips = [str(PUBLIC_NET[1 + i]) for i in range(1 + spec.server_extra_ips)]
        self.hosts["server"] = Host("server", server_ns, ips[0], extra_ips=tuple(ips[1:]))
        self._plan_uplink("server", _Uplink(server_ns, "eth0", "p-server", spec.server_link), pub_cmds)
        ns_cmds[server_ns] = [f"addr add {ip}/24 dev eth0" for ip in ips]
        for name in spec.public_hosts:
            ns = self._add_ns(name)
            ip = str(PUBLIC_NET[next(next_public)])
            self.hosts[name] = Host(name, ns, ip)
            self._plan_uplink(name, _Uplink(ns, "eth0", f"p-{name}"[:15], spec.public_link), pub_cmds)
            ns_cmds[ns] = [f"addr add {ip}/24 dev eth0"]

        # Sites: a router with WAN on the bridge and a LAN bridge `lan`, clients on that bridge.
        for number, site in enumerate(spec.sites, start=1):
            if site.nat not in NAT_TYPES:
                raise LabError(f"unknown NAT type {site.nat!r}; one of {NAT_TYPES}")
            lan = ipaddress.IPv4Network(site.lan or f"192.168.{number}.0/24")
            rns = self._add_ns(site.name)
            wan_ip = str(PUBLIC_NET[10 + number])
            port = f"p-{site.name}"[:15]
            self.routers[site.name] = Router(site.name, rns, wan_ip, str(lan), str(lan[1]), site.nat, port)
            self._plan_uplink(site.name, _Uplink(rns, "wan", port, site.link), pub_cmds)
            rcmds = [
                f"addr add {wan_ip}/24 dev wan",
                "link add lan type bridge",
                f"addr add {lan[1]}/{lan.prefixlen} dev lan",
                "link set lan up",
            ]
            ns_cmds[rns] = rcmds
            for index, client in enumerate(site.clients):
                cns = self._add_ns(client)
                ip = str(lan[10 + index])
                self.hosts[client] = Host(client, cns, ip, router=site.name)
                rcmds += [
                    f"link add c{index} type veth peer name eth0 netns {cns}",
                    f"link set c{index} master lan",
                    f"link set c{index} up",
                ]
                ns_cmds[cns] = [
                    f"addr add {ip}/{lan.prefixlen} dev eth0",
                    "link set eth0 up",
                    f"route add default via {lan[1]}",
                ]
            if site.nat == "none":
                routed.append((str(lan), wan_ip))

        # Addresses on public devices exist only once a forwarder created its TAP devices: start those.
        self._start_forwarders()
        _ip_batch(pub, pub_cmds)
        for up in self._uplinks.values():
            ns_cmds[up.ns].append(f"link set {up.dev} up")
        # Without NAT the public side needs routes back to the LAN (as an ISP routes a customer's prefix).
        public_side = [self.hosts["server"].ns, *(self.hosts[h].ns for h in spec.public_hosts)]
        public_side += [r.ns for r in self.routers.values()]
        for prefix, via in routed:
            for ns in public_side:
                if via != self._wan_ip_of(ns):
                    ns_cmds[ns].append(f"route add {prefix} via {via}")
        for ns, cmds in ns_cmds.items():
            _ip_batch(ns, ["link set lo up", *cmds])

        # Kernel settings and rules. New namespaces forward nothing; rp_filter is set explicitly (NOTES).
        sites = {s.name: s for s in spec.sites}
        for ns in self._namespaces:
            sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
            sysctls.append("net.ipv6.conf.all.disable_ipv6=1")  # no router solicitations or DAD chatter
            router = next((r for r in self.routers.values() if r.ns == ns), None)
            rules = ""
            if router is not None:
                sysctls.append("net.ipv4.ip_forward=1")
                clients = [h.ip for h in self.hosts.values() if h.router == router.name]
                rules = router_ruleset(router.nat, clients[0] if clients else None)
            # Loss: each end drops on ingress, so each direction loses loss_percent.
            lossy = [u for u in self._uplinks.values() if u.spec.loss_percent > 0]
            for i, u in enumerate(lossy):
                if u.ns == ns:
                    rules += _loss_ruleset(f"loss_{i}", u.dev, u.spec.loss_percent)
                if ns == pub:
                    rules += _loss_ruleset(f"loss_{i}", u.port, u.spec.loss_percent)
            script = f"sysctl -q -w {' '.join(sysctls)}"
            if rules:
                script += " && nft -f -"
            _in_ns(ns, ["sh", "-c", script], rules or None)
            if router is not None:
                site = sites[router.name]
                if site.udp_timeout or site.udp_stream_timeout:
                    self.set_udp_timeouts(site.name, site.udp_timeout, site.udp_stream_timeout)
        for up in self._uplinks.values():
            if up.spec.rate_kbit:
                for ns, dev in ((up.ns, up.dev), (pub, up.port)):
                    _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                          f"{up.spec.rate_kbit}kbit", "burst", "32kbit", "latency", "400ms"])  # fmt: skip

    def _wan_ip_of(self, ns: str) -> str | None:
        return next((r.wan_ip for r in self.routers.values() if r.ns == ns), None)

    def _plan_uplink(self, owner: str, uplink: _Uplink, pub_cmds: list[str]) -> None:
        """A veth (or, with delay, a TAP pair made later by a forwarder) from a host to the public bridge."""
        self._uplinks[owner] = uplink
        port, dev, ns, spec = uplink.port, uplink.dev, uplink.ns, uplink.spec
        if not spec.needs_forwarder:
            pub_cmds.append(f"link add {port} type veth peer name {dev} netns {ns}")
        pub_cmds += [f"link set {port} master br0", f"link set {port} up"]

    def _start_forwarders(self) -> None:
        started = []
        for up in self._uplinks.values():
            if not up.spec.needs_forwarder:
                continue
            if not os.path.exists("/dev/net/tun"):
                raise LabError("link delay needs /dev/net/tun (TAP devices)")
            argv = [sys.executable, "-m", TAPFWD, up.ns, up.dev, self.public_ns, up.port]
            argv += ["--delay-ms", str(up.spec.delay_ms), "--jitter-ms", str(up.spec.jitter_ms)]
            up.forwarder = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            started.append(up.forwarder)
        for proc in started:  # both TAP devices exist once it says so
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != b"ready":
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise LabError(f"TAP forwarder did not start: {line!r} {err}")

    # --- knobs

    def set_udp_timeouts(self, router: str, unreplied: int | None, stream: int | None = None) -> None:
        """Conntrack UDP timeouts on ``router`` (seconds; ``stream`` defaults to ``unreplied``).

        They apply to conntrack entries created or refreshed afterwards (NOTES.md).
        """
        settings = []
        if unreplied:
            settings.append(f"net.netfilter.nf_conntrack_udp_timeout={unreplied}")
        if stream or unreplied:
            settings.append(f"net.netfilter.nf_conntrack_udp_timeout_stream={stream or unreplied}")
        _in_ns(self.routers[router].ns, ["sysctl", "-q", "-w", *settings])

    def link_down(self, name: str) -> None:
        """Cut the link between router (or public host) ``name`` and the public segment."""
        # The bridge port goes down: the router's side keeps its address and routes (like a dead modem
        # upstream), so packets are silently lost rather than refused.
        _run(["ip", "-n", self.public_ns, "link", "set", self._uplinks[name].port, "down"])

    def link_up(self, name: str, timeout: float = 3.0) -> None:
        """Restore the link cut by `link_down`; return once both ends carry traffic again."""
        up = self._uplinks[name]
        _run(["ip", "-n", self.public_ns, "link", "set", up.port, "up"])
        # Carrier changes reach the far end and the bridge through the kernel's linkwatch, which batches
        # events for up to a second: until then the far end still drops (NO-CARRIER). Wait for both.
        deadline = time.monotonic() + timeout
        while True:
            states = [_run(["ip", "-n", ns, "-o", "link", "show", "dev", dev]) for ns, dev in
                      ((self.public_ns, up.port), (up.ns, up.dev))]  # fmt: skip
            port = _run(["bridge", "-n", self.public_ns, "link", "show", "dev", up.port])
            if all("LOWER_UP" in s and "state UP" in s for s in states) and "state forwarding" in port:
                break
            if time.monotonic() > deadline:
                raise LabError(f"link of {name} still not up after {timeout} s: {states} {port}")
            time.sleep(0.01)
        # ARP sent while the link was down left INCOMPLETE/FAILED neighbour entries whose next retry is up
        # to a second away; forget them on both sides so traffic resumes at once.
        _run(["ip", "-n", up.ns, "neigh", "flush", "dev", up.dev])
        own_ip = self.routers[name].wan_ip if name in self.routers else self.hosts[name].ip
        for other in self._uplinks.values():
            if other is not up:
                _run(["ip", "-n", other.ns, "neigh", "flush", "to", own_ip])

    def flush_conntrack(self, router: str) -> None:
        """Forget every NAT mapping on ``router`` (as a router reboot would)."""
        _in_ns(self.routers[router].ns, ["conntrack", "-F"])

    def nft(self, name: str, script: str) -> None:
        """Load extra nftables rules into the namespace of host or router ``name``."""
        _in_ns(self._ns_of(name), ["nft", "-f", "-"], script)

    def _ns_of(self, name: str) -> str:
        if name in self.hosts:
            return self.hosts[name].ns
        return self.routers[name].ns

    # --- running code in hosts

    async def spawn(self, host: str, *argv: str, stdin: bool = True) -> LabProcess:
        """Start ``argv`` inside ``host`` (killed at teardown); argv[0] "python" means the repo's venv."""
        proc = await spawn(self._ns_of(host), list(argv), self.work_dir, label=host, stdin=stdin)
        self._processes.append(proc)
        return proc

    async def spawn_python(self, host: str, code: str, *args: str) -> LabProcess:
        """Start a Python snippet inside ``host``; read its JSON lines with `LabProcess.read_json`."""
        return await self.spawn(host, "python", "-c", code, *args)

    async def spawn_agent(self, host: str, agent: str, /, **kwargs: object) -> LabProcess:
        """Start a long-running agent from agents.py (next to this file) inside ``host``."""
        import json

        return await self.spawn(host, "python", "-m", AGENTS, agent, json.dumps(kwargs))

    async def run_python(self, host: str, code: str, *args: str, timeout: float = 30) -> object:
        """Run a Python snippet inside ``host`` and return the JSON of the last line it prints."""
        return await run_json(self._ns_of(host), ["python", "-c", code, *args], self.work_dir, timeout)

    async def agent(self, host: str, agent: str, /, *, timeout: float = 30, **kwargs: object) -> object:
        """Run an agent from agents.py (next to this file) inside ``host`` and return its JSON result."""
        import json

        argv = ["python", "-m", AGENTS, agent, json.dumps(kwargs)]
        return await run_json(self._ns_of(host), argv, self.work_dir, timeout)

    # --- teardown

    async def aclose(self) -> None:
        """Kill every process started in the lab, then delete its namespaces (idempotent)."""
        for proc in self._processes:
            await proc.kill()
        self.close_sync()

    def close_sync(self) -> None:
        """Teardown without an event loop (processes from `spawn` are killed, not awaited)."""
        if self._closed:
            return
        self._closed = True
        started = time.monotonic()
        for proc in self._processes:
            proc.kill_nowait()
        for up in self._uplinks.values():
            if up.forwarder is not None:
                up.forwarder.kill()
                up.forwarder.wait()
                for stream in (up.forwarder.stdout, up.forwarder.stderr):
                    if stream is not None:
                        stream.close()
        for ns in reversed(self._namespaces):
            _kill_ns_processes(ns)  # anything a test started some other way
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.teardown_seconds = time.monotonic() - started

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
