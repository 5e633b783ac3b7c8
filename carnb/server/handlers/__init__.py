"""Method handlers, one module per area; :func:`build_table` registers what is offered."""

from __future__ import annotations

from carnb.server.dispatch import MethodTable
from carnb.server.handlers import core
from carnb.server.services import Services


def build_table(services: Services) -> MethodTable:
    table = MethodTable()
    core.register(table, services)
    return table
