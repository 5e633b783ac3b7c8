"""The memory explorer's edits: add, edit, delete, pin, unpin and undo, each kept in a history.

Every edit is one or two ``memory.*`` calls of the notebook's session on the loop thread, so
it lands in the session's effective graph on either store (and, on PostgreSQL, shows on every
server's panel). Its inverse is remembered beside it, and ``undo`` runs the inverse of the
newest edit not yet undone:

- add: the fact gets an id the explorer mints (``nb-<8 hex>``); undo deletes it;
- edit (``memory.edit``, provenance "edited in the notebook"): undo deletes the edited copy,
  which makes the old fact valid again (memgine's delete rule);
- delete: undo restores it from the deletion log (``memory.restore``): its id, content, tags,
  source, confidence, time, provenance and supersession links, as they were;
- pin and unpin undo each other.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from carnb.errors import NotFound
from carnb.kernel.style import esc, table_html

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass
class Edit:
    action: str  # add, edit, delete, pin, unpin
    fact_id: str  # the fact acted on
    result: str  # what it did, for the history
    undo: tuple[str, dict[str, Any]] | None  # the call that reverses it
    undone: bool = False


@dataclass
class EditLog:
    """The edits made in one explorer, oldest first, and their inverses."""

    call: Call
    edits: list[Edit] = field(default_factory=list)

    async def add(self, subject: str, body: str) -> Edit:
        fact_id = f"nb-{secrets.token_hex(4)}"
        await self.call("memory.add_fact", {"subject": subject, "body": body, "fact_id": fact_id})
        return self._keep(Edit("add", fact_id, f"added {fact_id}", _delete(fact_id)))

    async def edit(self, fact_id: str, body: str) -> Edit:
        out = await self.call("memory.edit", {"id": fact_id, "body": body})
        new_id = str(out["id"])
        return self._keep(Edit("edit", fact_id, f"replaced by {new_id}", _delete(new_id)))

    async def delete(self, fact_id: str) -> Edit:
        out = await self.call("memory.delete", {"id": fact_id})
        if not out.get("deleted"):
            raise NotFound(f"no fact {fact_id!r} to delete")
        return self._keep(Edit("delete", fact_id, "deleted", ("memory.restore", {"id": fact_id})))

    async def pin(self, fact_id: str, pinned: bool = True) -> Edit:
        await self.call("memory.pin", {"id": fact_id, "pinned": pinned})
        inverse = ("memory.pin", {"id": fact_id, "pinned": not pinned})
        action = "pin" if pinned else "unpin"
        return self._keep(Edit(action, fact_id, f"{action}ned", inverse))

    async def undo(self) -> Edit | None:
        """Reverse the newest edit not yet undone (``None``: nothing to undo)."""
        for edit in reversed(self.edits):
            if not edit.undone and edit.undo is not None:
                method, params = edit.undo
                await self.call(method, params)
                edit.undone = True
                return edit
        return None

    def _keep(self, edit: Edit) -> Edit:
        self.edits.append(edit)
        return edit

    def html(self) -> str:
        """The history table, newest first ("" before the first edit)."""
        if not self.edits:
            return ""
        rows = [
            [e.action, e.fact_id, e.result, "undone" if e.undone else ""]
            for e in reversed(self.edits)
        ]
        return table_html(
            ("edit", "fact", "result", "undo"), rows, cls="carnb-edits", width=80, empty=""
        )


def _delete(fact_id: str) -> tuple[str, dict[str, Any]]:
    return ("memory.delete", {"id": fact_id})


def error_html(message: str) -> str:
    return f'<div class="carnb-error">error: {esc(message)}</div>'
