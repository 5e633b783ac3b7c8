"""Handlers for session, server, state, agents and host methods."""

from __future__ import annotations

from typing import Any

from carnb.app.methods import Area, Method, Params
from carnb.app.params import opt_int, opt_str, req_str
from carnb.app.services import Services
from carnb.errors import InvalidParams
from carnb.protocol.auth import authenticate, check_agent_id, negotiate
from carnb.protocol.session import ClientSession


# -- session and server ---------------------------------------------------------------------
def session_auth(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    grant = authenticate(svc.credentials, p)
    svc.sessions.authenticate(
        s,
        is_host=grant.is_host,
        agent_id=grant.agent_id,
        namespace=grant.memory_namespace,
        agent_proven=grant.agent_proven,
    )
    return grant.result


def server_handshake(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    version, negotiated, client_version = negotiate(p, svc.capabilities())
    s.capabilities = negotiated
    s.client_version = client_version
    s.update(protocol_version=version)
    return {
        "protocol_version": version,
        "server_version": svc.server_version,
        "client_protocol_version": p.get("protocol_version"),
        "client_version": client_version,
        "negotiated_capabilities": negotiated,
    }


# -- state.* -----------------------------------------------------------------------------------
def state_set(s: ClientSession, p: Params, svc: Services) -> str:
    key = req_str(p, "key")
    if "value" not in p:
        raise InvalidParams("value is required (use null to store null)")
    s.state_set(key, p["value"], opt_str(p, "tenant_id"))
    return "ok"


def state_get(s: ClientSession, p: Params, svc: Services) -> Any:
    return s.state_get(req_str(p, "key"), opt_str(p, "tenant_id"))


def state_exists(s: ClientSession, p: Params, svc: Services) -> bool:
    return s.state_exists(req_str(p, "key"), opt_str(p, "tenant_id"))


def state_keys(s: ClientSession, p: Params, svc: Services) -> list[str]:
    return s.state_keys(opt_str(p, "tenant_id"))


def state_snapshot(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return s.state_snapshot(opt_str(p, "tenant_id"))


# -- agents --------------------------------------------------------------------------------------
def agents_list(s: ClientSession, p: Params, svc: Services) -> list[dict[str, Any]]:
    out = []
    for agent_id in svc.credentials.agents.ids():
        bound = svc.sessions.sessions_of_agent(agent_id)
        row: dict[str, Any] = {
            "spec": {"id": agent_id, "name": agent_id},
            "status": "attached" if bound else "idle",
            "attached": bool(bound),
            "session_ids": bound,
        }
        if bound:
            row["session_id"] = bound[0]
        out.append(row)
    return out


def agents_register(s: ClientSession, p: Params, svc: Services) -> dict[str, str]:
    name = check_agent_id(req_str(p, "name"), "name")
    token = svc.credentials.agents.register_new(name)
    return {"agent_id": name, "token": token}


def agents_register_basics(s: ClientSession, p: Params, svc: Services) -> None:
    """The daemon adds its built-in file and calculator tools here; carnb has none to add,
    so the call succeeds and changes nothing (the official agent loop sends it first)."""
    return None


# -- host ------------------------------------------------------------------------------------------
def host_subscribe(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    svc.events.subscribe(s)
    return {
        "subscribed": True,
        "agents": agents_list(s, {}, svc),
        "events": svc.events.recent(100),
        "event_sequence": svc.events.sequence,
    }


def host_unsubscribe(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return {"subscribed": False, "removed": svc.events.unsubscribe(s)}


def host_events(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    limit = opt_int(p, "limit", 100, minimum=0, maximum=10_000)
    assert limit is not None
    return {"events": svc.events.recent(limit)}


_STATE_KEY = {"key": "string", "tenant_id": "string?"}
_TENANT = {"tenant_id": "string?"}

AREA = Area(
    "core",
    methods=(
        Method(
            "session.auth",
            session_auth,
            summary="Authenticate: launch token, an agent's own token with agent_id, or host_token",
            params={
                "token": "string?",
                "agent_id": "string?",
                "host_token": "string?",
                "memory_namespace": "string?",
            },
            result="{ok, auth_enabled, agent_id?, role?}",
        ),
        Method(
            "server.handshake",
            server_handshake,
            summary="Negotiate protocol version 3 and capabilities",
            params={
                "protocol_version": "integer (3)",
                "client_version": "string?",
                "required_capabilities": "string[]?",
                "optional_capabilities": "string[]?",
                "capabilities": "string[]? (the same as optional_capabilities)",
            },
            result="{protocol_version, server_version, client_protocol_version, client_version, "
            "negotiated_capabilities}",
        ),
        Method(
            "state.set",
            state_set,
            summary="Set a per-session key",
            params={"key": "string", "value": "any", "tenant_id": "string?"},
            result='"ok"',
        ),
        Method(
            "state.get",
            state_get,
            summary="Get a per-session key (null when absent)",
            params=_STATE_KEY,
            result="value or null",
        ),
        Method(
            "state.exists",
            state_exists,
            summary="Whether a per-session key is set",
            params=_STATE_KEY,
            result="boolean",
        ),
        Method(
            "state.keys",
            state_keys,
            summary="Keys set in this session",
            params=_TENANT,
            result="string[]",
        ),
        Method(
            "state.snapshot",
            state_snapshot,
            large_reply=True,
            summary="Every key and value of this session",
            params=_TENANT,
            result="object",
        ),
        Method(
            "agents.list",
            agents_list,
            summary="Registered agents and the sessions bound to them",
            result="[{spec: {id, name}, status, attached, session_id?, session_ids}]",
        ),
        Method(
            "agents.register",
            agents_register,
            role="host",
            summary="Register a new agent and mint its own token (an existing name is refused)",
            params={"name": "string"},
            result="{agent_id, token}",
        ),
        Method(
            "agents.register_basics",
            agents_register_basics,
            summary="Accepted for the official agent loop; carnb has no built-in tools to add",
            result="null",
        ),
        Method(
            "host.subscribe",
            host_subscribe,
            role="host",
            needs_handshake=True,
            summary="Receive host.event notifications; returns a snapshot",
            result="{subscribed, agents, events, event_sequence}",
        ),
        Method(
            "host.unsubscribe",
            host_unsubscribe,
            role="host",
            summary="Stop host.event notifications",
            result="{subscribed: false, removed}",
        ),
        Method(
            "host.events",
            host_events,
            role="host",
            summary="Recent host events, oldest first",
            params={"limit": "integer? (default 100)"},
            result="{events}",
        ),
    ),
)
