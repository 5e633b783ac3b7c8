"""Launch secrets, registered agents and the ``session.auth`` / handshake rules (pure).

Theory of operation: a :class:`Credentials` is minted once per launch (a client token and a
separate host token, ``secrets.token_urlsafe(32)``). Agents registered by name get tokens of
their own. :func:`authenticate` takes ``session.auth`` params and returns an :class:`AuthGrant`
(what the session becomes) or raises a typed :class:`~carnb.errors.CarnbError`; it never
mutates the session, so a failed attempt leaves the session exactly as it was.
:func:`negotiate` does the same for ``server.handshake``.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from carnb.errors import (
    AgentElsewhere,
    AuthFailed,
    CapabilityUnsupported,
    InvalidParams,
    VersionMismatch,
)

PROTOCOL_VERSION = 3
AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def mint_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_equal(given: object, expected: str) -> bool:
    """Constant-time comparison; a non-string never matches."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_agent_id(agent_id: object, field_name: str = "agent_id") -> str:
    if not isinstance(agent_id, str) or not AGENT_ID_RE.match(agent_id):
        raise InvalidParams(
            f"invalid params: {field_name} must be 1-64 characters of letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return agent_id


class AgentDirectory(Protocol):
    """Agents shared by every server of a team store (tokens kept only as salted hashes)."""

    def claim(self, agent_id: str, token: str) -> bool:
        """Record ``agent_id`` with ``token``; False if it was already registered."""
        ...

    def verify(self, agent_id: str, token: str) -> bool: ...
    def known(self, agent_id: str) -> bool: ...
    def ids(self) -> list[str]: ...


@dataclass
class AgentRegistry:
    """Agents registered with this launch, each with its own token. Thread-safe.

    With a ``directory`` (a team store), an agent registered on any server of the store is
    known here too and authenticates with the token it got there; this server keeps in clear
    only the tokens it minted itself (for its connection file and ``%car agent add``).
    """

    _tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    directory: AgentDirectory | None = None

    def register(self, agent_id: str, token: str | None = None) -> str:
        """Register ``agent_id`` (idempotent) and return its token.

        Raises :class:`AgentElsewhere` when another server of the team store registered it:
        its token exists only where it was minted.
        """
        check_agent_id(agent_id, "name")
        with self._lock:
            if agent_id in self._tokens:
                return self._tokens[agent_id]
            new = token or mint_token()
            if self.directory is not None and not self.directory.claim(agent_id, new):
                raise AgentElsewhere(
                    f"agent {agent_id!r} is already registered in the team store by another "
                    "carnb server; authenticate with the token it was given there (the store "
                    "keeps tokens only as salted hashes, so no other server can show it)"
                )
            self._tokens[agent_id] = new
            return new

    def attach(self, directory: AgentDirectory) -> list[str]:
        """Share this registry's agents through ``directory``; returns the ids the store already
        had from another server (their local tokens are dropped: the store's token counts)."""
        with self._lock:
            self.directory = directory
            elsewhere = [a for a, t in self._tokens.items() if not directory.claim(a, t)]
            for agent_id in elsewhere:
                del self._tokens[agent_id]
            return elsewhere

    def register_new(self, agent_id: str) -> str:
        """Register an agent that is not registered yet and return its new token; an existing
        agent is refused, so nobody learns a live token by registering its name again."""
        check_agent_id(agent_id, "name")
        with self._lock:
            if agent_id in self._tokens:
                raise InvalidParams(
                    f"invalid params: name: agent {agent_id!r} is already registered; its token "
                    "was handed out when it was registered (it is not shown again)"
                )
            token = mint_token()
            if self.directory is not None and not self.directory.claim(agent_id, token):
                raise AgentElsewhere(
                    f"agent {agent_id!r} is already registered in the team store by another "
                    "carnb server; authenticate with the token it was given there (the store "
                    "keeps tokens only as salted hashes, so no other server can show it)"
                )
            self._tokens[agent_id] = token
            return token

    def token_for(self, agent_id: str) -> str | None:
        """The token of an agent registered on this server (None for one registered elsewhere)."""
        with self._lock:
            return self._tokens.get(agent_id)

    def verify(self, agent_id: str, token: object) -> bool:
        """Is ``token`` the agent's token (here, or anywhere in the team store)? Constant time
        against this server's tokens."""
        own = self.token_for(agent_id)
        if own is not None:
            return tokens_equal(token, own)
        if self.directory is None or not isinstance(token, str):
            return False
        return self.directory.verify(agent_id, token)

    def ids(self) -> list[str]:
        with self._lock:
            local = set(self._tokens)
        return sorted(local | set(self.directory.ids() if self.directory is not None else ()))

    def as_mapping(self) -> dict[str, str]:
        with self._lock:
            return dict(self._tokens)

    def __contains__(self, agent_id: object) -> bool:
        with self._lock:
            if agent_id in self._tokens:
                return True
        return (
            isinstance(agent_id, str)
            and self.directory is not None
            and self.directory.known(agent_id)
        )


@dataclass
class Credentials:
    """The secrets of one launch."""

    auth_enabled: bool = True
    token: str = field(default_factory=mint_token)
    host_token: str = field(default_factory=mint_token)
    agents: AgentRegistry = field(default_factory=AgentRegistry)


@dataclass(frozen=True)
class AuthGrant:
    """What a successful ``session.auth`` makes of the session."""

    is_host: bool
    agent_id: str | None
    memory_namespace: str | None
    result: dict[str, Any]
    # The agent binding was proven with the agent's own token (or auth is off). The host token
    # binds an agent for reading, not for writing that agent's runs.
    agent_proven: bool = True


def _auth_failed(reason: str = "token mismatch") -> AuthFailed:
    return AuthFailed(f"auth failed: {reason}")


def _namespace(params: dict[str, Any]) -> str | None:
    ns = params.get("memory_namespace")
    if ns is None:
        return None
    if not isinstance(ns, str) or not ns or len(ns) > 200:
        raise InvalidParams(
            "invalid params: memory_namespace must be a non-empty string of at most 200 characters"
        )
    return ns


def authenticate(creds: Credentials, params: dict[str, Any]) -> AuthGrant:
    """Apply the ``session.auth`` rules of docs/protocol.md, "Authentication and handshake"."""
    namespace = _namespace(params)
    agent_id = params.get("agent_id")
    if agent_id is not None:
        check_agent_id(agent_id)
    host_token = params.get("host_token")
    token = params.get("token")

    if not creds.auth_enabled:
        is_host = host_token is not None and tokens_equal(host_token, creds.host_token)
        if agent_id is not None and agent_id not in creds.agents:
            with contextlib.suppress(AgentElsewhere):  # another server registered it meanwhile
                creds.agents.register(agent_id)
        result: dict[str, Any] = {"ok": True, "auth_enabled": False}
        if agent_id is not None:
            result["agent_id"] = agent_id
        if is_host:
            result["role"] = "host"
        return AuthGrant(is_host, agent_id, namespace, result)

    if host_token is not None:
        if not tokens_equal(host_token, creds.host_token):
            raise _auth_failed("host token mismatch")
        result = {"ok": True, "auth_enabled": True, "role": "host"}
        if agent_id is not None:
            if agent_id not in creds.agents:
                raise _auth_failed(
                    f"unknown agent {agent_id!r}; register it first (carnb serve --agent NAME "
                    "or %car agent add NAME)"
                )
            result["agent_id"] = agent_id
        return AuthGrant(True, agent_id, namespace, result, agent_proven=agent_id is None)

    if token is None:
        raise InvalidParams(
            "invalid params: session.auth needs token, token with agent_id, or host_token"
        )
    if agent_id is not None:
        known = agent_id in creds.agents
        # Compare against a dummy when unknown so timing says nothing about which agents exist.
        ok = (
            creds.agents.verify(agent_id, token)
            if known
            else tokens_equal(token, creds.host_token + "x")
        )
        if not known or not ok:
            raise _auth_failed("token mismatch for agent (unknown agent or wrong agent token)")
        return AuthGrant(
            False, agent_id, namespace, {"ok": True, "auth_enabled": True, "agent_id": agent_id}
        )
    if not tokens_equal(token, creds.token):
        raise _auth_failed("token mismatch")
    return AuthGrant(False, None, namespace, {"ok": True, "auth_enabled": True})


def negotiate(
    params: dict[str, Any], server_capabilities: frozenset[str]
) -> tuple[int, list[str], str | None]:
    """``server.handshake``: return (version, negotiated capabilities, client_version)."""
    version = params.get("protocol_version")
    if (
        isinstance(version, bool)
        or not isinstance(version, (int, float))
        or version != PROTOCOL_VERSION
    ):
        raise VersionMismatch(
            f"protocol version mismatch: server speaks {PROTOCOL_VERSION}, client sent "
            f"{version!r}; upgrade the client or server so both speak version {PROTOCOL_VERSION}",
            data={"server_protocol_version": PROTOCOL_VERSION},
        )
    required = params.get("required_capabilities") or []
    optional = params.get("capabilities") or params.get("optional_capabilities") or []
    for name, value in (("required_capabilities", required), ("capabilities", optional)):
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise InvalidParams(f"invalid params: {name} must be a list of strings")
    missing = sorted(set(required) - server_capabilities)
    if missing:
        raise CapabilityUnsupported(
            f"unsupported capability: {', '.join(missing)}; this server offers "
            f"{', '.join(sorted(server_capabilities)) or 'none'}",
            data={"unsupported": missing},
        )
    negotiated = sorted((set(required) | set(optional)) & server_capabilities)
    client_version = params.get("client_version")
    return PROTOCOL_VERSION, negotiated, client_version if isinstance(client_version, str) else None
