"""Handlers for session, server, capabilities, state, agents and host methods."""

from __future__ import annotations

from typing import Any

from carnb.errors import InvalidParams
from carnb.protocol.auth import authenticate, check_agent_id, negotiate
from carnb.protocol.session import ClientSession
from carnb.server.dispatch import MethodTable, visible_to
from carnb.server.params import opt_int, opt_str, req_str
from carnb.server.services import Services

MAX_STATE_KEYS = 10_000


def register(table: MethodTable, services: Services) -> None:
    m = table.method

    # -- session and server ---------------------------------------------------------------
    @m(
        "session.auth",
        summary="Authenticate: launch token, an agent's own token with agent_id, or host_token",
        params={
            "token": "string?",
            "agent_id": "string?",
            "host_token": "string?",
            "memory_namespace": "string?",
        },
        result="{ok, auth_enabled, agent_id?, role?}",
    )
    def session_auth(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        grant = authenticate(svc.credentials, p)
        s.update(authenticated=True, is_host=grant.is_host)
        svc.sessions.bind(s, agent_id=grant.agent_id, namespace=grant.memory_namespace)
        return grant.result

    @m(
        "server.handshake",
        summary="Negotiate protocol version 3 and capabilities",
        params={
            "protocol_version": "integer (3)",
            "client_version": "string?",
            "required_capabilities": "string[]?",
        },
        result="{protocol_version, server_version, client_protocol_version, client_version, "
        "negotiated_capabilities}",
    )
    def server_handshake(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
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

    @m(
        "server.schema",
        summary="Describe every method this server offers you",
        result="{protocol_version, server, server_version, methods}",
    )
    def server_schema(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        methods = [mt.describe() for mt in table if visible_to(mt, s)]
        return {
            "protocol_version": 3,
            "server": "carnb",
            "server_version": svc.server_version,
            "capabilities": sorted(svc.capabilities()),
            "methods": methods,
        }

    @m(
        "capabilities.list",
        summary="The methods you may call, with the role each needs",
        result="{caller_role, count, methods: [{method, role}]}",
    )
    def capabilities_list(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        methods = [{"method": mt.name, "role": mt.role} for mt in table if visible_to(mt, s)]
        return {"caller_role": s.role, "count": len(methods), "methods": methods}

    # -- state.* ---------------------------------------------------------------------------
    @m(
        "state.set",
        summary="Set a per-session key",
        params={"key": "string", "value": "any", "tenant_id": "string?"},
        result='"ok"',
    )
    def state_set(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        key = req_str(p, "key")
        if "value" not in p:
            raise InvalidParams("value is required (use null to store null)")
        tenant = opt_str(p, "tenant_id")
        if not s.state_exists(key, tenant) and len(s.state) >= MAX_STATE_KEYS:
            raise InvalidParams(
                f"key: this session already holds {MAX_STATE_KEYS} keys; reuse keys or "
                "open a new session"
            )
        s.state_set(key, p["value"], tenant)
        return "ok"

    @m(
        "state.get",
        summary="Get a per-session key (null when absent)",
        params={"key": "string", "tenant_id": "string?"},
        result="value or null",
    )
    def state_get(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return s.state_get(req_str(p, "key"), opt_str(p, "tenant_id"))

    @m(
        "state.exists",
        summary="Whether a per-session key is set",
        params={"key": "string", "tenant_id": "string?"},
        result="boolean",
    )
    def state_exists(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return s.state_exists(req_str(p, "key"), opt_str(p, "tenant_id"))

    @m(
        "state.keys",
        summary="Keys set in this session",
        params={"tenant_id": "string?"},
        result="string[]",
    )
    def state_keys(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return s.state_keys(opt_str(p, "tenant_id"))

    @m(
        "state.snapshot",
        summary="Every key and value of this session",
        params={"tenant_id": "string?"},
        result="object",
    )
    def state_snapshot(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return s.state_snapshot(opt_str(p, "tenant_id"))

    # -- agents ------------------------------------------------------------------------------
    @m(
        "agents.list",
        summary="Registered agents and the sessions bound to them",
        result="[{spec: {id, name}, status, attached, session_id?, session_ids}]",
    )
    def agents_list(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
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

    @m(
        "agents.register",
        role="host",
        summary="Register an agent and mint its own token",
        params={"name": "string"},
        result="{agent_id, token}",
    )
    def agents_register(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        name = check_agent_id(req_str(p, "name"), "name")
        token = svc.credentials.agents.register(name)
        return {"agent_id": name, "token": token}

    # -- host ------------------------------------------------------------------------------
    @m(
        "host.subscribe",
        role="host",
        needs_handshake=True,
        summary="Receive host.event notifications; returns a snapshot",
        result="{subscribed, agents, events, event_sequence}",
    )
    def host_subscribe(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        svc.events.subscribe(s)
        return {
            "subscribed": True,
            "agents": agents_list(s, {}, svc),
            "events": svc.events.recent(100),
            "event_sequence": svc.events.sequence,
        }

    @m(
        "host.unsubscribe",
        role="host",
        summary="Stop host.event notifications",
        result="{subscribed: false, removed}",
    )
    def host_unsubscribe(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return {"subscribed": False, "removed": svc.events.unsubscribe(s)}

    @m(
        "host.events",
        role="host",
        summary="Recent host events, oldest first",
        params={"limit": "integer? (default 100)"},
        result="{events}",
    )
    def host_events(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        limit = opt_int(p, "limit", 100, minimum=0, maximum=10_000)
        assert limit is not None
        return {"events": svc.events.recent(limit)}
