"""Method handlers, one module per area; each module's ``AREA`` holds its methods and its
set-up, and :mod:`.catalog` lists the areas. :func:`build_table` runs every area's set-up on a
server's services and returns the methods it offers.

An area whose service the runtime did not provide is not offered, so ``capabilities.list``
only ever lists methods that work.
"""

from __future__ import annotations

from carnb.app.handlers.catalog import AREAS, offered
from carnb.app.methods import MethodTable
from carnb.app.services import Services


def build_table(services: Services) -> MethodTable:
    """Run every area's set-up on ``services`` (listeners, session-close cleanup) and return
    the table of offered methods. Call once per ``Services``."""
    for area in AREAS:
        if area.setup is not None:
            area.setup(services)
    return MethodTable(offered(services))
