"""The caller's address behind trusted reverse proxies (`exoprov server --trusted-proxy`).

Only when the TCP peer is in a network the operator named trusted are `Forwarded`
(RFC 7239) or, failing that, `X-Forwarded-For` read at all; the client is then the right-most
address that is not itself a trusted proxy (everything left of it could be forged by the
client). From anyone else the headers are ignored, so a device cannot pick the address its
failed activations are counted against.
"""

import ipaddress

_MAX_HOPS = 32


def parse_networks(cidrs):
    """['10.0.0.0/8', '127.0.0.1', ...] -> ip_network list; ValueError names a bad one."""
    out = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {text!r}") from None
    return out


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(addr, networks):
    ip = _ip(addr)
    return ip is not None and any(ip in net for net in networks)


def _node(value):
    """An RFC 7239 node ('1.2.3.4', '1.2.3.4:80', '[::1]:80') -> (address, port)."""
    value = value.strip()
    port = None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host = value
    if port is not None and not port.isdigit():
        port = None
    return host, (int(port) if port else None)


def hops(request):
    """The hops a request says it came through, left to right: [{'for': (a, p), 'by': (a,
    p)}], from `Forwarded` as aiohttp parses it (RFC 7239, every such header), else from
    X-Forwarded-For; the last _MAX_HOPS only."""
    if request.forwarded:
        return [
            {key: _node(elem[key]) for key in ("for", "by") if key in elem}
            for elem in request.forwarded[-_MAX_HOPS:]
        ]
    xff = request.headers.getall("X-Forwarded-For", ())
    return [{"for": _node(a)} for a in ",".join(xff).split(",")[-_MAX_HOPS:]] if xff else []


def resolve(peer_addr, peer_port, request, networks):
    """-> (client address, client port or None, (address, port) the client reached or None).

    The TCP peer unless it is a trusted proxy that said who it forwards for (the headers of
    `request` are only read then)."""
    if not networks or not _trusted(peer_addr, networks):
        return peer_addr, peer_port, None
    addr, port, reached = peer_addr, peer_port, None
    for hop in reversed(hops(request)):
        node = hop.get("for")
        if node is None or _ip(node[0]) is None:
            break  # 'unknown', an obfuscated name or garbage: stop at the last known hop
        addr, port, reached = node[0], node[1], hop.get("by")
        if not _trusted(addr, networks):
            break
    return addr, port, reached
