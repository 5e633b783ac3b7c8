"""Help for ``%car`` derived from the argparse tree of :mod:`carnb.kernel.parser`.

:func:`full_usage` is the magic's docstring (what ``%car?`` and Shift+Tab on ``%car`` show):
every command of the line and the cell magic, with its arguments and what it does.
:func:`help_at` answers an inspection anywhere in a ``%car`` line: the help of the deepest
command the words before the cursor reach, led by the flag under the cursor when there is one.
The completer's item descriptions are the same text (JupyterLab asks the kernel to inspect the
line with the item inserted).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from carnb.kernel.completer import options_of, split_command, subparsers_of


def _leaves(
    parser: argparse.ArgumentParser, help_text: str = ""
) -> Iterator[tuple[argparse.ArgumentParser, str]]:
    """Every command that runs something, with its one-line help, in the tree's order."""
    sub = subparsers_of(parser)
    if sub is None:
        yield parser, help_text
        return
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    for name, child in sub.choices.items():
        yield from _leaves(child, helps.get(name, ""))


def usage_line(parser: argparse.ArgumentParser) -> str:
    """``%car memory query [-k K] QUERY [QUERY ...]``: the usage without ``-h``."""
    text = " ".join(parser.format_usage().split())
    return text.removeprefix("usage: ").replace(" [-h]", "")


def full_usage(line_parser: argparse.ArgumentParser, cell_parser: argparse.ArgumentParser) -> str:
    """Every ``%car`` line command and ``%%car`` cell form, one per entry."""
    parts = [" ".join((line_parser.description or "").split()), ""]
    for title, parser in (("Line magic", line_parser), ("Cell magic (first line)", cell_parser)):
        parts.append(f"{title}:")
        for leaf, help_text in _leaves(parser):
            parts.append(f"  {usage_line(leaf)}")
            if help_text:
                parts.append(f"      {help_text}")
        parts.append("")
    parts.append(line_parser.epilog or "")
    return "\n".join(parts).rstrip() + "\n"


def help_at(
    line_parser: argparse.ArgumentParser,
    cell_parser: argparse.ArgumentParser,
    line: str,
    first_line: bool = True,
) -> str | None:
    """Help for the ``%car`` / ``%%car`` command on ``line`` (the text of one line up to the
    cursor, the word under the cursor included), or None when the line is not one."""
    found = split_command(line)
    if found is None:
        return None
    magic, words, prefix = found
    if magic == "%%" and not (first_line and line.lstrip().startswith("%%car")):
        return None
    parser = line_parser if magic == "%" else cell_parser
    words = [*words, prefix] if prefix else words
    leaf, summary, flag = _walk(parser, words)
    text = leaf.format_help()
    if summary and not leaf.description:  # the one line the command list shows for it
        text = f"{summary}\n\n{text}"
    if flag is not None:
        return f"{_flag_line(flag)}\n\n{text}"
    return text


def _walk(
    parser: argparse.ArgumentParser, words: list[str]
) -> tuple[argparse.ArgumentParser, str, argparse.Action | None]:
    """The deepest parser ``words`` name, its one-line help, and the flag of the last word if
    it is one."""
    p, summary, flag = parser, "", None
    for word in words:
        if word.startswith("-"):
            flag = options_of(p).get(word.split("=", 1)[0])
            continue
        flag = None
        sub = subparsers_of(p)
        if sub is not None and word in sub.choices:
            p = sub.choices[word]
            summary = next((a.help or "" for a in sub._choices_actions if a.dest == word), "")
    return p, summary, flag


def _flag_line(action: argparse.Action) -> str:
    names = ", ".join(action.option_strings)
    metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else "")
    head = f"{names} {metavar}".rstrip()
    return f"{head}: {action.help}" if action.help else head
