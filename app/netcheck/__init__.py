"""The network check: how this network's router maps and filters UDP (RFC 5780), in plain words."""
