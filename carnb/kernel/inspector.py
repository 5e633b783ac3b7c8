"""Shift+Tab (the kernel's ``inspect_request``) anywhere in a ``%car`` line.

IPython inspects only the name under the cursor, so ``%car memory query`` would find nothing.
:class:`CarInspector` stands in front of the kernel's own ``do_inspect`` while carnb is loaded:
a request whose cursor is in a ``%car`` line, or on the first line of a ``%%car`` cell, gets the
help of the command written there (:func:`carnb.kernel.helpdoc.help_at`); any other request goes
to the kernel unchanged. JupyterLab's completer asks the same question for the documentation of
an item, with the item inserted. :meth:`remove` puts the kernel's own method back.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from carnb.kernel.helpdoc import help_at


class CarInspector:
    def __init__(
        self, line_parser: argparse.ArgumentParser, cell_parser: argparse.ArgumentParser
    ) -> None:
        self.line_parser = line_parser
        self.cell_parser = cell_parser
        self._kernel: Any = None
        self._installed: Callable[..., Any] | None = None

    def help_for(self, code: str, cursor_pos: int) -> str | None:
        """The help for the ``%car`` command the cursor is in (None when it is in none)."""
        cursor = max(0, min(cursor_pos, len(code)))
        start = code.rfind("\n", 0, cursor) + 1
        end = cursor
        while end < len(code) and not code[end].isspace():  # the rest of the word
            end += 1
        return help_at(self.line_parser, self.cell_parser, code[start:end], start == 0)

    def install(self, kernel: Any) -> None:
        """Answer ``kernel``'s inspect requests on ``%car`` lines (no-op without a kernel)."""
        own = getattr(kernel, "do_inspect", None)
        if own is None or self._installed is not None:
            return

        def do_inspect(
            code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
        ) -> Any:
            text = self.help_for(code, cursor_pos)
            if text is None:
                return own(code, cursor_pos, detail_level, omit_sections)
            return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}

        kernel.do_inspect = do_inspect
        self._kernel, self._installed = kernel, do_inspect

    def remove(self) -> None:
        kernel, installed = self._kernel, self._installed
        self._kernel = self._installed = None
        if kernel is not None and vars(kernel).get("do_inspect") is installed:
            del kernel.do_inspect
