"""Every method carnb declares, which of them a server offers, and the two methods that
describe them (``server.schema`` and ``capabilities.list`` are generated from the table)."""

from __future__ import annotations

from functools import cache
from typing import Any

from carnb.app.handlers import (
    browser,
    core,
    inference,
    memory,
    notebook,
    observe,
    proposals,
    runs,
    supervision,
    timetravel,
)
from carnb.app.methods import Area, Method, Params
from carnb.app.services import Services
from carnb.protocol.auth import PROTOCOL_VERSION
from carnb.protocol.session import ClientSession


def offered(svc: Services) -> tuple[Method, ...]:
    """The methods whose services ``svc`` provides, by name (what a server dispatches on)."""
    return _offered(svc.capabilities())


@cache
def _offered(capabilities: frozenset[str]) -> tuple[Method, ...]:
    methods = (m for m in CATALOG if m.needs is None or m.needs in capabilities)
    return tuple(sorted(methods, key=lambda m: m.name))


def server_schema(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return {
        "protocol_version": PROTOCOL_VERSION,
        "server": "carnb",
        "server_version": svc.server_version,
        "capabilities": sorted(svc.capabilities()),
        "methods": [m.describe() for m in offered(svc) if m.visible_to(s)],
    }


def capabilities_list(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    methods = [{"method": m.name, "role": m.role} for m in offered(svc) if m.visible_to(s)]
    return {"caller_role": s.role, "count": len(methods), "methods": methods}


INTROSPECTION = Area(
    "introspection",
    methods=(
        Method(
            "server.schema",
            server_schema,
            summary="Describe every method this server offers you",
            result="{protocol_version, server, server_version, methods}",
        ),
        Method(
            "capabilities.list",
            capabilities_list,
            summary="The methods you may call, with the role each needs",
            result="{caller_role, count, methods: [{method, role}]}",
        ),
    ),
)

# Every area, in the order their set-ups run.
AREAS: tuple[Area, ...] = (
    core.AREA,
    INTROSPECTION,
    memory.AREA,
    runs.AREA,
    timetravel.AREA,
    browser.AREA,
    proposals.AREA,
    inference.AREA,
    observe.AREA,
    supervision.AREA,
    notebook.AREA,
)
CATALOG: tuple[Method, ...] = tuple(m for area in AREAS for m in area.methods)
