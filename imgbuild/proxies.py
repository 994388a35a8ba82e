"""Which HTTP proxy a registry request goes through: ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY``.

The rules are Go's (``golang.org/x/net/http/httpproxy``), which the engine and the docker CLI follow, so that
imgbuild's own registry calls and ``docker push`` take the same road:

- ``HTTPS_PROXY`` for ``https`` registries, ``HTTP_PROXY`` for plain-HTTP ones; the upper-case name wins
  over the lower-case one. A proxy URL without a scheme is ``http://``; ``user:password@`` in it is sent
  as ``Proxy-Authorization`` (and never shown).
- Never for ``localhost`` or a loopback address, whatever ``NO_PROXY`` says (curl would proxy them).
- ``NO_PROXY``, comma-separated: ``*`` (nothing is proxied), a host name (it and its subdomains), a name
  with a leading dot (subdomains only), an IP address, a CIDR network; each optionally with ``:port``,
  which then has to match too.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping


class ProxyError(ValueError):
    """A proxy variable that cannot be used (the message names the variable, never its credentials)."""


@dataclass(frozen=True, kw_only=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # Proxy-Authorization, from user:password@

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    https: Proxy | None = None
    http: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        env = os.environ if environ is None else environ

        def var(name: str) -> tuple[str, str]:
            for key in (name, name.lower()):
                if env.get(key):
                    return key, env[key]
            return name, ""

        https, http = (_parse_proxy(*var(n)) for n in ("HTTPS_PROXY", "HTTP_PROXY"))
        _, no_proxy = var("NO_PROXY")
        return cls(https=https, http=http,
                   no_proxy=tuple(p.strip().lower() for p in no_proxy.split(",") if p.strip()))

    def for_url(self, scheme: str, netloc: str) -> Proxy | None:
        """The proxy for a request to ``scheme://netloc``, or None to connect directly."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None:
            return None
        host, port = _split(netloc, 443 if scheme == "https" else 80)
        return proxy if _use_proxy(host, port, self.no_proxy) else None


def _parse_proxy(name: str, value: str) -> Proxy | None:
    if not value:
        return None
    parts = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme != "http":
        raise ProxyError(f"{name}: only http:// proxies are supported, not {parts.scheme}://")
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if not parts.hostname or not port:
        raise ProxyError(f"{name} is not a proxy URL (http://HOST:PORT)")
    auth = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return Proxy(host=parts.hostname, port=port, authorization=auth)


def _split(netloc: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(f"//{netloc}")
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return (parts.hostname or netloc).lower(), port


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _use_proxy(host: str, port: int, no_proxy: tuple[str, ...]) -> bool:
    ip = _ip(host)
    if host == "localhost" or (ip is not None and ip.is_loopback):
        return False
    for entry in no_proxy:
        if entry == "*":
            return False
        if "/" in entry:  # a CIDR network
            try:
                if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                    return False
            except ValueError:
                pass
            continue
        want, want_port = (entry, 0) if _ip(entry) is not None else _split(entry, 0)
        if want_port and want_port != port:
            continue
        if _ip(want) is not None:
            if ip is not None and ip == _ip(want):
                return False
        elif want.startswith("."):
            if host.endswith(want):
                return False
        elif host == want or host.endswith("." + want):
            return False
    return True
