"""Method handlers, one module per area; :func:`build_table` registers what is offered.

An area whose service the runtime did not provide registers nothing, so ``capabilities.list``
only ever lists methods that work.
"""

from __future__ import annotations

from carnb.server.dispatch import MethodTable
from carnb.server.handlers import browser, core, memory, runs
from carnb.server.services import Services


def build_table(services: Services) -> MethodTable:
    table = MethodTable()
    for area in (core, memory, runs, browser):
        area.register(table, services)
    return table
