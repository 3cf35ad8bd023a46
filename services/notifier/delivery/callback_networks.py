"""Which callback addresses may be called: DELTAWATCH_CALLBACK_ALLOW/DENY_NETWORKS.

A subscription names any URL, so without a fence the notifier could be told to POST into
the cluster's own control plane (SSRF). The rule, checked on every address a host resolves
to: an address in a denied network is refused; when allowed networks are set, an address
outside all of them is refused. It is applied at command time (reject) and again at
delivery time (the name may resolve elsewhere by then; refuse → DLQ).

:func:`refusal` is pure; :func:`resolve` is the one place that asks DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(
    addresses: Sequence[Address], allow: Sequence[Network], deny: Sequence[Network]
) -> str | None:
    """Why calling these addresses is forbidden, or None when it is allowed."""
    for address in addresses:
        for network in deny:
            if address.version == network.version and address in network:
                return f"address {address} is in denied network {network}"
        if allow and not any(
            address.version == network.version and address in network for network in allow
        ):
            return f"address {address} is outside the allowed networks"
    return None


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int, timeout_s: float) -> list[Address]:
    """Every address ``host`` resolves to (empty when it does not resolve in time)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError):
        return []
    addresses: list[Address] = []
    for info in infos:
        address = literal_address(str(info[4][0]))
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses
