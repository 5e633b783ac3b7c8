"""docs/protocol.md documents every method the server serves, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from carnb.app.handlers.catalog import CATALOG

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
# a method's own row in one of the page's tables: "| `name` ..." (with "(carnb's own)" etc.)
ROW = re.compile(r"^\|\s*`([a-z_]+(?:\.[a-z_]+)*)`", re.MULTILINE)


def test_every_served_method_has_a_row_in_protocol_md() -> None:
    served = {m.name for m in CATALOG}
    documented = set(ROW.findall(DOC.read_text()))
    assert served - documented == set(), "served but not documented in docs/protocol.md"
