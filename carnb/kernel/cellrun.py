"""Run bracketing: cells become turns of the notebook session's open run.

:class:`CellRecorder` hangs on IPython's ``post_run_cell`` event: while the notebook's session has
a ``current_run_id``, every executed cell is recorded as one turn ``{tool: "cell", prompt: <source>,
parameters: {execution_count}, output?: <repr of the result>, error?: "<Type>: <message>"}``.
The cell that opened the run and cells run inside ``%%car run`` (which records its own turn) are
skipped. :func:`run_cell_body` executes a cell's source the way IPython would (IPython syntax,
AST transformers, the value of a trailing expression) so ``%%car run`` can bracket it.
"""

from __future__ import annotations

import ast
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("carnb.kernel.cellrun")

MAX_TEXT = 4000
DEFAULT_AGENT_NAME = "notebook"  # owner label of the notebook's runs when no agent is bound
DEFAULT_RUN_OWNER = f"name:{DEFAULT_AGENT_NAME}"  # the owner id runs.start gives such runs


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    msg = str(exc)
    return clip(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__, 1000)


def result_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return clip(repr(value))
    except Exception as exc:  # a broken __repr__ must not lose the turn
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


def make_turn(
    source: str,
    *,
    execution_count: int | None,
    value: Any = None,
    error: BaseException | None = None,
) -> dict[str, Any]:
    turn: dict[str, Any] = {
        "tool": "cell",
        "prompt": clip(source.rstrip()),
        "parameters": {"execution_count": execution_count},
    }
    out = result_text(value)
    if out is not None:
        turn["output"] = out
    err = describe_error(error)
    if err is not None:
        turn["error"] = err
    return turn


@dataclass(frozen=True)
class Cell:
    """The body of a ``%%car`` cell as the engine sees it: its source, how to run it in the
    user namespace (returning the value of a trailing expression) and where to show output."""

    source: str
    execution_count: int | None
    run: Callable[[], Any]
    show: Callable[[Any], None]


class CellRecorder:
    """Records executed cells as turns while a run is open (the engine calls
    :meth:`post_run_cell` after each cell; ``result`` is duck-typed like IPython's
    ``ExecutionResult``, so nothing here imports IPython)."""

    def __init__(
        self, current_run: Callable[[], str | None], record: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self._current_run = current_run
        self._record = record
        self._skip_depth = 0
        self._skip_this_cell = False
        self.running_info: Any = None
        self.recorded = 0

    def pre_run_cell(self, info: Any = None) -> None:
        """A new cell starts: forget a skip request left over from outside any cell."""
        self._skip_this_cell = False
        self.running_info = info

    def skip_current_cell(self) -> None:
        """The running cell opened (or otherwise manages) the run: do not record it."""
        self._skip_this_cell = True

    @contextlib.contextmanager
    def suppressed(self) -> Iterator[None]:
        """Cells executed inside (``%%car run``) are not recorded by the hook."""
        self._skip_depth += 1
        try:
            yield
        finally:
            self._skip_depth -= 1

    def post_run_cell(self, result: Any) -> None:
        skip, self._skip_this_cell = self._skip_this_cell, False
        if skip or self._skip_depth:
            return
        info = getattr(result, "info", None)
        if info is None or getattr(info, "silent", False):
            return
        run_id = self._current_run()
        if run_id is None:
            return
        source = getattr(info, "raw_cell", None) or ""
        if not source.strip():
            return
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        turn = make_turn(
            source,
            execution_count=getattr(result, "execution_count", None),
            value=getattr(result, "result", None),
            error=error,
        )
        try:
            self._record(run_id, turn)
            self.recorded += 1
        except Exception as exc:  # never break the user's cell over a trace
            log.warning(
                "could not record cell %s as a turn of %s: %s",
                getattr(result, "execution_count", "?"),
                run_id,
                exc,
            )


def run_cell_body(shell: Any, cell: str, execution_count: int | None = None) -> Any:
    """Execute ``cell`` in the user namespace; return the value of a trailing expression.
    Its code is named after ``execution_count``, so a traceback says ``Cell In[N]``."""
    __tracebackhide__ = True  # IPython: show the cell's frames, not ours
    source = shell.transform_cell(cell)
    filename = shell.compile.cache(source, execution_count or 0, cell)
    tree = shell.compile.ast_parse(source, filename=filename)
    tree = shell.transform_ast(tree)
    last: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    ns_globals, ns_locals = shell.user_global_ns, shell.user_ns
    if tree.body:
        exec(shell.compile(tree, filename, "exec"), ns_globals, ns_locals)
    if last is not None:
        return eval(shell.compile(last, filename, "eval"), ns_globals, ns_locals)
    return None
