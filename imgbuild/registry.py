"""A minimal Registry v2 API client: what digest a tag points at, whether a manifest exists.

Used to check immutable tags before pushing and to verify pushes by digest. Anonymous bearer-token
challenges and the docker CLI's stored basic credentials (``~/.docker/config.json`` ``auths``) are
supported; plain HTTP is used for ``insecure`` registries and for localhost.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from imgbuild.connections import Connections, Send
from imgbuild.connections import RegistryError as RegistryError  # where the rest of imgbuild imports it from

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


@dataclass(frozen=True)
class Reference:
    """``host[:port]/path/name:tag`` split into the registry host, the repository and the tag."""

    host: str
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    def by_digest(self, digest: str) -> str:
        return f"{self.host}/{self.repository}@{digest}"

    @classmethod
    def parse(cls, ref: str) -> Reference:
        name, _, tag = ref.rpartition(":")
        if "/" in tag or not name:
            name, tag = ref, "latest"
        host, _, repo = name.partition("/")
        if not repo or not ("." in host or ":" in host or host == "localhost"):
            host, repo = "docker.io", name if "/" in name else f"library/{name}"
        return cls(host, repo, tag)


def _is_local(host: str) -> bool:
    return host.split(":")[0] in ("localhost", "127.0.0.1", "::1")


class RegistryClient:
    def __init__(self, *, insecure_hosts: frozenset[str] = frozenset(), timeout: float = 10.0,
                 send: Send | None = None) -> None:
        self.insecure = insecure_hosts
        self._send = send or Connections(timeout).send
        self._tokens: dict[str, str] = {}

    def _base(self, host: str) -> str:
        scheme = "http" if host in self.insecure or _is_local(host) else "https"
        api_host = "registry-1.docker.io" if host == "docker.io" else host
        return f"{scheme}://{api_host}/v2/"

    def tag_digest(self, ref: Reference) -> str | None:
        """The digest ``ref``'s tag points at, or None when the tag (or repository) does not exist."""
        return self._head(ref.host, f"{ref.repository}/manifests/{ref.tag}")

    def has_manifest(self, ref: Reference, digest: str) -> bool:
        return self._head(ref.host, f"{ref.repository}/manifests/{digest}") is not None

    def _head(self, host: str, path: str) -> str | None:
        url = self._base(host) + path
        for attempt in range(2):
            headers = {"Accept": MANIFEST_TYPES}
            auth = self._tokens.get(host) or _stored_auth(host)
            if auth:
                headers["Authorization"] = auth
            resp = self._send("HEAD", url, headers, None)
            resp.close()
            if resp.status == 200:
                return resp.headers.get("docker-content-digest") or None
            if resp.status == 404:
                return None
            if resp.status == 401 and attempt == 0:
                self._tokens[host] = self._token(resp.headers.get("www-authenticate", ""), host)
                continue
            raise RegistryError(f"{host}: HTTP {resp.status} for {path}")
        raise RegistryError(f"{host}: unauthorized")

    def _token(self, challenge: str, host: str) -> str:
        if not challenge.lower().startswith("bearer"):
            raise RegistryError(f"{host}: unauthorized (log in with `docker login {host}`)")
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        basic = _stored_auth(host)
        resp = self._send("GET", realm + "?" + urllib.parse.urlencode(params),
                          {"Authorization": basic} if basic else {}, None)
        try:
            if resp.status != 200:
                raise RegistryError(f"{host}: cannot get a token: HTTP {resp.status} from {realm}")
            data = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{host}: cannot get a token: {exc}") from None
        finally:
            resp.close()
        return f"Bearer {data.get('token') or data.get('access_token')}"


def _stored_auth(host: str) -> str | None:
    """Basic credentials the docker CLI stored for ``host`` (never logged, never recorded)."""
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            return f"Basic {entry['auth']}"
        if isinstance(entry, dict) and entry.get("username"):
            raw = f"{entry['username']}:{entry.get('password', '')}".encode()
            return f"Basic {base64.b64encode(raw).decode()}"
    return None
