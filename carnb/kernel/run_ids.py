"""A run id as a person types it: the full id, or a unique prefix of a run the notebook knows.

Runs are shown by their short form (``run-3f2a9c01…``, see :func:`carnb.kernel.style.short_id`);
:func:`resolve_run_id` turns such a prefix (with or without the ``run-`` and the ``…``) back into
the full id, from the run ids the notebook has seen or can list (:class:`KnownValues`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from carnb.kernel.calls import CarCommandError

FULL_RUN_ID = re.compile(r"run-[0-9a-f]{32}")
SHOWN_CHOICES = 5


def resolve_run_id(given: str, known: Callable[[], list[str]], what: str) -> str:
    """The full id of the one known run that ``given`` is a prefix of; ``given`` itself when it
    is a full id or no known run matches (the server then says it has no such run).

    Several matches raise :class:`CarCommandError` naming them."""
    if FULL_RUN_ID.fullmatch(given):
        return given
    prefix = given.strip().rstrip("…").rstrip(".")
    if not prefix.startswith("run-"):
        prefix = "run-" + prefix
    if prefix == "run-":
        return given
    matches = [rid for rid in dict.fromkeys(known()) if rid.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        return given
    shown = ", ".join(matches[:SHOWN_CHOICES]) + (", ..." if len(matches) > SHOWN_CHOICES else "")
    raise CarCommandError(
        f"{what}: {given!r} is the start of {len(matches)} runs ({shown}); give more of the id"
    )
