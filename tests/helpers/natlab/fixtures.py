"""pytest fixtures for the NAT lab (registered through ``pytest_plugins`` in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from tests.helpers.natlab.topology import (
    Lab,
    LabError,
    LabSpec,
    LinkSpec,
    SiteSpec,
    clean_leftovers,
    missing_capability,
)

#: What stands in front of "left" or "right": a NAT router of that type, or nothing ("public").
HostKind = Literal["cone", "symmetric", "none", "udp_blocked", "hostile_cone", "full_cone", "public"]

_checked: list[str | None] = []


def _why_not_here() -> str | None:
    """Why the lab cannot run on this machine (checked once per session), or None."""
    if not _checked:
        reason = missing_capability()
        if reason is None:
            clean_leftovers()
            probe = subprocess.run(
                ["ip", "netns", "add", "pl-probe-0-x"], capture_output=True, text=True, check=False
            )
            if probe.returncode != 0:
                reason = f"cannot create network namespaces here: {probe.stderr.strip()}"
            subprocess.run(["ip", "netns", "del", "pl-probe-0-x"], capture_output=True, check=False)
        _checked.append(reason)
    return _checked[0]


def skip_unless_lab_can_run() -> None:
    """Skip the calling test, saying why, when this machine cannot run the lab (not root, no nft...)."""
    reason = _why_not_here()
    if reason is not None:
        pytest.skip(reason)


class LabFactory:
    """Builds labs for one test and tears every one of them down afterwards, pass or fail."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.labs: list[Lab] = []

    def __call__(
        self,
        left: HostKind | None = "cone",
        right: HostKind | None = "cone",
        *,
        loss: float = 0.0,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        rate_kbit: int | None = None,
        same_lan: bool = False,
        public_hosts: int = 0,
        udp_timeout: int | None = None,
        server_extra_ips: int = 0,
    ) -> Lab:
        """The usual lab: hosts "left" and "right", each behind its own router of that kind, and "server".

        ``left``/``right``: a NAT type (cone, symmetric, none, udp_blocked, hostile_cone), "public" for a
        host directly on the public segment, or None for no such host. Routers are named "left_nat" and
        "right_nat". ``loss`` (percent per direction), ``delay_ms`` ± ``jitter_ms`` (one way) and
        ``rate_kbit`` apply to every router's WAN link; ``same_lan`` puts both hosts behind the left router;
        ``public_hosts`` adds hosts "pub1", "pub2"... on the public segment.
        """
        link = LinkSpec(rate_kbit=rate_kbit, loss_percent=loss, delay_ms=delay_ms, jitter_ms=jitter_ms)
        sites: list[SiteSpec] = []
        public = [f"pub{i}" for i in range(1, public_hosts + 1)]
        if same_lan:
            assert left is not None, "same_lan needs a router kind for left"
            assert left != "public", "same_lan needs a router kind for left"
            sites.append(SiteSpec("left_nat", left, ("left", "right"), link, udp_timeout=udp_timeout))
        else:
            for name, kind in (("left", left), ("right", right)):
                if kind == "public":
                    public.insert(0, name)
                elif kind is not None:
                    sites.append(SiteSpec(f"{name}_nat", kind, (name,), link, udp_timeout=udp_timeout))
        spec = LabSpec(sites=tuple(sites), public_hosts=tuple(public), public_link=link,
                       server_extra_ips=server_extra_ips)  # fmt: skip
        return self.build(spec)

    def build(self, spec: LabSpec) -> Lab:
        """Any lab described by a `LabSpec` (several clients per site, per-site links, custom LANs)."""
        skip_unless_lab_can_run()
        links = (spec.public_link, spec.server_link, *(s.link for s in spec.sites))
        if any(link.needs_forwarder for link in links) and not Path("/dev/net/tun").exists():
            pytest.skip("link delay needs TAP devices and /dev/net/tun is absent")
        lab = Lab(spec, self.work_dir / f"lab{len(self.labs)}")
        self.labs.append(lab)
        try:
            lab.build()
        except LabError:
            self.labs.remove(lab)
            raise
        return lab

    async def aclose(self) -> None:
        """Tear down every lab this factory built."""
        for lab in self.labs:
            await lab.aclose()


@pytest.fixture
async def nat_lab(tmp_path: Path) -> AsyncIterator[LabFactory]:
    """Factory: ``lab = nat_lab("cone", "symmetric", delay_ms=10)``; all labs are torn down after the test."""
    factory = LabFactory(tmp_path / "natlab")
    try:
        yield factory
    finally:
        await factory.aclose()
