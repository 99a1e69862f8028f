"""A key's IP allowlist: networks in CIDR notation, and the form admission matches them in.

Admission (gateway/lua/admit.lua) matches the client's address in the same Redis call
that checks the key, so a refused address counts against nothing. Lua has no address
types, so both sides are written as 32 hex digits of a 128-bit address (IPv4 as
IPv4-mapped IPv6, ::ffff:a.b.c.d) and a network as its address's digits and a prefix
length (IPv4 prefixes + 96): a match is an equal first prefix/4 digits and equal high
bits of the next one.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

MAX_NETWORKS = 100
_MAPPED = 96  # an IPv4 network's prefix, as an IPv4-mapped IPv6 network


def parse_networks(values: list[str]) -> list[str]:
    """The networks as canonical CIDR strings (a bare address is a /32 or /128). Raises
    ValueError naming the first entry that is not a network, or one with host bits set."""
    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP network in CIDR notation ({exc})") from None
        networks.append(str(network))
    return list(dict.fromkeys(networks))


def _hex(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address("::ffff:" + str(address))
    return f"{int(address):032x}"


def wire_networks(networks: list[str]) -> list[list]:
    """[[hex digits, prefix length], ...] as admit.lua reads them."""
    wired = []
    for value in networks:
        network = ipaddress.ip_network(value)
        extra = _MAPPED if network.version == 4 else 0
        wired.append([_hex(network.network_address), network.prefixlen + extra])
    return wired


@lru_cache(maxsize=4096)  # per request on the hot path; few clients, many requests each
def wire_address(address: str | None) -> str:
    """The client's address as admit.lua matches it; "" when there is none to match."""
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return ""
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return _hex(parsed)


def address_allowed(address: str | None, networks: list[str]) -> bool:
    """The same rule in Python (gateway/degraded.py serves without Redis)."""
    wired = wire_address(address)
    if not wired:
        return False
    value = int(wired, 16)
    for digits, prefix in wire_networks(networks):
        shift = 128 - prefix
        if value >> shift == int(digits, 16) >> shift:
            return True
    return False
