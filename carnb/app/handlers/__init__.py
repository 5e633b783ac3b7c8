"""Method handlers, one module per area, declared in :mod:`.catalog`; :func:`build_table`
wires the areas into a server's services and returns the methods it offers.

An area whose service the runtime did not provide is not offered, so ``capabilities.list``
only ever lists methods that work.
"""

from __future__ import annotations

from carnb.app.handlers import browser, inference, observe, proposals, runs, supervision
from carnb.app.handlers.catalog import offered
from carnb.app.methods import MethodTable
from carnb.app.services import Services


def build_table(services: Services) -> MethodTable:
    """Hook the runs, browser, proposal, inference and observe areas into ``services`` (listeners,
    session-close cleanup) and return the table of offered methods. Call once per ``Services``."""
    runs.attach(services)
    browser.attach(services)
    proposals.attach(services)
    inference.attach(services)
    observe.attach(services)
    supervision.attach(services)
    return MethodTable(offered(services))
