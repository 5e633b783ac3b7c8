"""Tab completion for ``%car`` and ``%%car``, derived from the argparse tree in
:mod:`carnb.kernel.parser` (the one table of commands, actions and flags).

:func:`candidates` is pure: it walks the words before the cursor down the parser tree and
offers what may come next there: subcommand names, the current parser's flags, or values of the
argument in that position. Values of a few arguments are dynamic (agent names, run ids, fact
ids, ``el_N`` ids, namespaces); they come from a :data:`Values` callback keyed by the
argument's ``dest``. :class:`CarCompleter` adapts this to IPython's matcher API v2 (a
``custom_matchers`` entry added at load and removed at unload).
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

log = logging.getLogger("carnb.kernel.completer")

Values = Callable[[str], Iterable[str]]
"""``values(kind)``: the known values of one kind (``agent``, ``run``, ``fact``, ``element``,
``namespace``, ``tool``, ``policy``); it must be quick and never raise."""

# argparse ``dest`` -> kind of dynamic value
DEST_KINDS = {
    "agent": "agent",
    "name": "agent",
    "run_id": "run",
    "fact_id": "fact",
    "element_id": "element",
    "namespace": "namespace",
    "tool": "tool",
    "target": "tool",
    "policy": "policy",
}
MAX_COMPLETIONS = 200

# a magic starts a line, or is the right-hand side of an assignment (``info = %car ...``)
_MAGIC = re.compile(r"^\s*(?:[\w.,\s\[\]]+=\s*)?(%%?)car(?=\s)")


def subparsers_of(p: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def options_of(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def _positionals(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in p._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _values_for(action: argparse.Action, values: Values) -> list[Candidate]:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return [Candidate(str(c), "choice") for c in action.choices]
    kind = DEST_KINDS.get(action.dest)
    if kind is None:
        return []
    try:
        return [Candidate(str(v), kind) for v in values(kind)]
    except Exception as exc:  # completion must never break the shell
        log.debug("no %s values for completion: %s", kind, exc)
        return []


class Candidate(NamedTuple):
    """One completion: its text and its kind (``command``, ``flag``, ``choice`` or the kind of
    a dynamic value: ``agent``, ``run``, ...), which the frontend shows beside it."""

    text: str
    kind: str


def typed_candidates(
    parser: argparse.ArgumentParser, words: list[str], prefix: str, values: Values
) -> list[Candidate]:
    """What may follow ``words`` (complete words after ``%car``), starting with ``prefix``."""
    p = parser
    positional = 0
    pending: argparse.Action | None = None
    for word in words:
        if pending is not None:
            pending = None
            continue
        if word.startswith("-"):
            action = options_of(p).get(word.split("=", 1)[0])
            if action is not None and _takes_value(action) and "=" not in word:
                pending = action
            continue
        sub = subparsers_of(p)
        if sub is not None and word in sub.choices:
            p = sub.choices[word]
            positional = 0
            continue
        if sub is not None:
            return []  # an unknown command: nothing sensible follows
        positional += 1
    if pending is not None:
        found = _values_for(pending, values)
    elif prefix.startswith("-"):
        found = [Candidate(s, "flag") for s in options_of(p) if s not in ("-h",)]
    else:
        sub = subparsers_of(p)
        if sub is not None:
            found = [Candidate(name, "command") for name in sub.choices]
        else:
            found = _positional_values(p, positional, values)
    unique = {c.text: c for c in found if c.text.startswith(prefix)}
    return [unique[t] for t in sorted(unique)][:MAX_COMPLETIONS]


def candidates(
    parser: argparse.ArgumentParser, words: list[str], prefix: str, values: Values
) -> list[str]:
    """The texts of :func:`typed_candidates`."""
    return [c.text for c in typed_candidates(parser, words, prefix, values)]


def _positional_values(p: argparse.ArgumentParser, filled: int, values: Values) -> list[Candidate]:
    """Values for the next positional argument (``nargs='+'``/``'*'`` keep taking words)."""
    count = 0
    for action in _positionals(p):
        if action.nargs in ("+", "*"):
            return _values_for(action, values)
        if count == filled:
            return _values_for(action, values)
        count += 1 if action.nargs in (None, "?") else int(action.nargs or 1)
    return []


def split_command(before: str) -> tuple[str, list[str], str] | None:
    """``(magic, words, prefix)`` when the text before the cursor is inside a ``%car`` or
    ``%%car`` command line, else None. ``magic`` is ``"%"`` or ``"%%"``."""
    m = _MAGIC.match(before)
    if m is None:
        return None
    rest = before[m.end() :]
    try:
        lex = shlex.shlex(rest, posix=True, punctuation_chars=False)
        lex.whitespace_split = True
        words = list(lex)
    except ValueError:  # an open quote: complete the bare word
        words = rest.split()
    prefix = words.pop() if rest and not rest[-1].isspace() and words else ""
    return m.group(1), words, prefix


class CarCompleter:
    """IPython matcher (API v2) for ``%car`` lines and the first line of ``%%car`` cells."""

    matcher_api_version = 2
    matcher_priority = 100.0  # before IPython's own, so it can suppress them
    matcher_identifier = "carnb.CarCompleter"

    def __init__(
        self,
        line_parser: argparse.ArgumentParser,
        cell_parser: argparse.ArgumentParser,
        values: Values,
    ) -> None:
        self.line_parser = line_parser
        self.cell_parser = cell_parser
        self.values = values
        self.__qualname__ = "CarCompleter"

    def complete(self, line: str, first_line: bool = True) -> tuple[str, list[Candidate]] | None:
        """``(fragment, completions)`` for the text of one line up to the cursor."""
        found = split_command(line)
        if found is None:
            return None
        magic, words, prefix = found
        if magic == "%%" and not (first_line and line.lstrip().startswith("%%car")):
            return None  # a cell magic only on a cell's first line, first thing
        parser = self.line_parser if magic == "%" else self.cell_parser
        return prefix, typed_candidates(parser, words, prefix, self.values)

    def __call__(self, context: Any) -> dict[str, Any]:
        from IPython.core.completer import SimpleCompletion

        result = self.complete(context.text_until_cursor, context.cursor_line == 0)
        if result is None:
            return {"completions": []}
        fragment, found = result
        return {
            "completions": [SimpleCompletion(c.text, type=c.kind) for c in found],
            "matched_fragment": fragment,
            "suppress": True,
            "ordered": True,
        }
