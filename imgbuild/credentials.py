"""Registry credentials, found where the docker CLI finds them, so that ``docker login`` (or a CI's login
action) is all a user does for imgbuild too.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``), for a registry host:

1. ``credHelpers[host]``: the program ``docker-credential-<name>`` (ECR's ``ecr-login``, ``gcloud``...);
2. else ``credsStore``: ``docker-credential-<name>`` for every registry (``desktop``, ``osxkeychain``,
   ``pass``, ``secretservice``...);
3. else ``auths[host]``: ``auth`` (base64 of ``user:password``), or ``username`` and ``password``, and
   ``identitytoken`` (an OAuth2 refresh token, exchanged at the registry's token server).

As in the docker CLI, a helper that has no credentials for the host means anonymous access: ``auths`` is
not consulted then. Docker Hub's key is ``https://index.docker.io/v1/`` (for ``docker.io``,
``index.docker.io`` and ``registry-1.docker.io``); other keys match by host (``https://HOST/...`` too).

A helper speaks the credential-helper protocol: ``docker-credential-<name> get``, the server on stdin,
``{"ServerURL", "Username", "Secret"}`` on stdout (``Username`` ``<token>`` makes ``Secret`` an identity
token); "credentials not found" on stdout with a non-zero exit when it has none. Helpers are asked only
when a registry asks for a login, once per host and run.

Secrets never leave this module's values except as the ``Authorization`` header: they are not in any
``repr``, message, log or record; errors name the user and where the credentials came from.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from imgbuild import proc
from imgbuild.connections import RegistryError

DOCKER_HUB = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_TOKEN_USER = "<token>"  # the helper protocol's username for an identity token

# (program, server) -> (exit status, stdout, stderr): ``program get`` with ``server`` on stdin.
RunHelper = Callable[[str, str], tuple[int, str, str]]


class CredentialsError(RegistryError):
    """Credentials that are configured but cannot be had (a helper that fails, a malformed config)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


@dataclass(frozen=True, kw_only=True)
class Credentials:
    username: str
    secret: str = field(repr=False)  # a password, or an identity token when ``identity_token``
    identity_token: bool = False
    source: str  # where they came from, for messages: "credential helper docker-credential-ecr-login"

    def basic(self) -> str:
        """The ``Authorization`` value for HTTP basic auth."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()


def server_key(host: str) -> str:
    """The key the docker CLI files ``host``'s credentials under."""
    return DOCKER_HUB if host in _HUB_HOSTS else host


def _hostname(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port`` (the docker CLI's ConvertToHostname); Hub keys -> the Hub's."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    host = key.split("/", 1)[0]
    return "index.docker.io" if host in _HUB_HOSTS else host


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker")


def run_helper(program: str, server: str) -> tuple[int, str, str]:
    return proc.run_unchecked([program, "get"], input=server, timeout=60)


class DockerCredentials:
    """The credentials of each registry host, looked up once per host (thread-safe: pushes run in parallel)."""

    def __init__(self, *, environ: Mapping[str, str] | None = None, run: RunHelper = run_helper) -> None:
        self.path = config_dir(environ) / "config.json"
        self._run = run
        self._found: dict[str, Credentials | None] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> Credentials | None:
        """``host``'s credentials, or None for anonymous access; :class:`CredentialsError` when they are
        configured but cannot be read."""
        with self._lock:  # one lookup per host, even with many pushes waiting for it
            if host not in self._found:
                self._found[host] = self._lookup(host)
            return self._found[host]

    def _lookup(self, host: str) -> Credentials | None:
        config = self._config()
        server, name = server_key(host), _hostname(host)
        helpers = config.get("credHelpers")
        helper = None
        if isinstance(helpers, dict):
            helper = helpers.get(server) or next(
                (v for k, v in sorted(helpers.items()) if _hostname(k) == name), None)
        helper = helper or config.get("credsStore")
        if helper:
            return self._from_helper(str(helper), server, host)
        auths = config.get("auths")
        if not isinstance(auths, dict):
            return None
        key = server if server in auths else next((k for k in sorted(auths) if _hostname(k) == name), None)
        entry = auths.get(key) if key is not None else None
        return _from_entry(entry, f"auths[{key!r}] in {self.path}", host) if isinstance(entry, dict) else None

    def _config(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"cannot read the docker CLI's config {self.path}: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"{self.path} is not a JSON object")
        return data

    def _from_helper(self, name: str, server: str, host: str) -> Credentials | None:
        program = f"docker-credential-{name}"
        code, out, err = self._run(program, server)
        if code == 127:
            raise CredentialsError(f"{host}: the credential helper {program} (named in {self.path}) is not on PATH")
        if code != 0:
            said = (out.strip() or err.strip()).splitlines()
            if said and "credentials not found" in said[0].lower():
                return None
            # A failing helper prints its error, not the credentials (those come only with success).
            raise CredentialsError(f"{host}: the credential helper {program} failed (exit {code}): "
                                   f"{said[0][:200] if said else 'no message'}")
        try:
            data = json.loads(out)
            username, secret = str(data["Username"]), str(data["Secret"])
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(f"{host}: the credential helper {program} did not answer "
                                   "{ServerURL, Username, Secret} JSON") from None
        if not secret:
            return None
        return Credentials(username=username, secret=secret, identity_token=username == _TOKEN_USER,
                           source=f"the credential helper {program}")


def _from_entry(entry: dict[str, object], source: str, host: str) -> Credentials | None:
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if ":" not in decoded:
            raise CredentialsError(f"{host}: {source}: `auth` is not base64 of user:password; "
                                   f"log in again with `docker login {host}`")
        username, password = decoded.split(":", 1)
    token = str(entry.get("identitytoken") or "")
    if token:
        return Credentials(username=username or _TOKEN_USER, secret=token, identity_token=True, source=source)
    if not username:
        return None
    return Credentials(username=username, secret=password, source=source)
