"""Tests that need root: real NAT routers in network namespaces (the `nat_lab` fixture, from
tests/helpers/natlab), and the README's "Try it" in a private network namespace (``unshare -n``). They skip,
saying why, where namespaces or nftables are unavailable."""
