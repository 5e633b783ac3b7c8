"""How browser results read in a notebook: an observation as tables, and plain words for what
went wrong (a URL without a scheme, a page that did not load, Chromium's own error page).

The wire errors stay as they are (agents parse them); only the notebook's wording changes here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from carnb.kernel.render import Renderable
from carnb.kernel.style import Cell, cell, esc, kv_html, table_html

ERROR_PAGE = "chrome-error:"

# Chromium's net error names (net/base/net_error_list.h) for pages that did not load.
NET_ERRORS = {
    "ERR_CONNECTION_REFUSED": "nothing is listening at that address (connection refused)",
    "ERR_NAME_NOT_RESOLVED": "the host name does not resolve",
    "ERR_ADDRESS_UNREACHABLE": "the address is unreachable",
    "ERR_INTERNET_DISCONNECTED": "this machine has no network connection",
    "ERR_CONNECTION_TIMED_OUT": "the connection timed out",
    "ERR_TIMED_OUT": "the connection timed out",
    "ERR_CONNECTION_RESET": "the server reset the connection",
    "ERR_CONNECTION_CLOSED": "the server closed the connection without an answer",
    "ERR_EMPTY_RESPONSE": "the server closed the connection without an answer",
    "ERR_UNSAFE_PORT": "Chromium refuses to open that port (it is on its list of unsafe ports)",
    "ERR_SSL_PROTOCOL_ERROR": "the TLS handshake failed",
    "ERR_TOO_MANY_REDIRECTS": "the page redirects in a loop",
    "ERR_FILE_NOT_FOUND": "there is no such file",
    "ERR_BLOCKED_BY_CLIENT": "the browser blocked the request",
    "ERR_ABORTED": "the navigation was cancelled",
}

_NET_ERROR = re.compile(r"net::(ERR_[A-Z_]+)")
_NAVIGATE = re.compile(r"navigate to (\S+) failed")
_OP_FIELD = re.compile(r"invalid params: operations\[(\d+)\]\.(\w+) (.*)", re.S)
_ELEMENT = re.compile(r"^\[(el_\d+)\]\s+(\S+)\s*(.*)$")
_TEXT = re.compile(r"^\((\w+)\)\s?(.*)$")


def plural(n: Any, noun: str) -> str:
    """``1 element``, ``3 elements``, ``? elements`` for a missing count."""
    if not isinstance(n, int):
        return f"? {noun}s"
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def page_url(url: Any) -> str:
    """A page URL as a person reads it: Chromium's error page named as such."""
    text = "" if url is None else str(url)
    if text.startswith(ERROR_PAGE):
        return "(error page: the last navigation failed)"
    return text


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be opened as typed (with a suggestion), or None if it looks fine."""
    scheme, sep, rest = url.partition(":")
    if (
        sep
        and scheme.isalpha()
        and len(scheme) > 1
        and (rest.startswith("//") or scheme in ("data", "about"))
    ):
        return None
    guess = "http://" + url if url.startswith(("127.", "localhost", "[::1]")) else "https://" + url
    return f"{url!r} is not a full URL: it needs a scheme, e.g. {guess}"


def friendly_error(message: str) -> str:
    """An error in plain words: a parameter named as the step a person wrote, a failed
    navigation as its reason. What comes before the protocol words is kept; others pass as is."""
    m = _OP_FIELD.search(message)
    if m:
        step = f"step {int(m.group(1)) + 1}: the {m.group(2)} {m.group(3)}"
        return message[: m.start()] + step
    net = _NET_ERROR.search(message)
    if net:
        target = _NAVIGATE.search(message)
        start = target.start() if target else net.start()
        where = f"could not load {target.group(1)}" if target else "the page did not load"
        reason = NET_ERRORS.get(net.group(1), "the page did not load")
        return f"{message[:start]}{where}: {reason} ({net.group(1)})"
    return message


def _element_row(line: str) -> list[Any] | None:
    m = _ELEMENT.match(line)
    if m is None:
        return None
    eid, role, rest = m.groups()
    name, state = "", rest
    if rest.startswith('"'):
        try:
            name, end = json.JSONDecoder().raw_decode(rest)
            state = rest[end:].strip()
        except ValueError:
            name, state = rest, ""
    return [cell(eid, cls="carnb-id"), role, name, state]


class Observation(Renderable):
    """What ``observe`` saw: the page (url, title, element count), its visible text and its
    interactive elements as tables. The text form is the summary the agent reads, unchanged."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.summary = str(data.get("summary") or "")

    def text(self) -> str:
        head = (
            f"url       {page_url(self.data.get('url'))}\n"
            f"title     {self.data.get('title') or ''}\n"
            f"elements  {self.data.get('element_count')}"
        )
        return f"page\n{head}\n\n{self.summary}".rstrip()

    def sections(self) -> tuple[list[list[Any]], list[list[Any]], list[str]]:
        """(visible text rows, element rows, notes such as '... 3 more elements not listed')."""
        texts: list[list[Any]] = []
        elements: list[list[Any]] = []
        notes: list[str] = []
        for raw in self.summary.splitlines():
            line = raw.strip()
            if not line or line.startswith("## "):
                continue
            row = _element_row(line)
            if row is not None:
                elements.append(row)
            elif (t := _TEXT.match(line)) is not None:
                texts.append([t.group(1), t.group(2)])
            else:
                notes.append(line)
        return texts, elements, notes

    def html(self) -> str:
        texts, elements, notes = self.sections()
        url = str(self.data.get("url") or "")
        shown: Cell | str = page_url(url)
        if url.startswith(("http://", "https://")):
            shown = Cell(url, f'<a href="{esc(url)}" target="_blank" rel="noopener">{esc(url)}</a>')
        page = kv_html(
            [
                ("url", shown),
                ("title", self.data.get("title") or ""),
                ("elements", self.data.get("element_count")),
            ],
            title="page",
        )
        text = table_html(["role", "text"], texts, title="visible text", empty="no visible text")
        els = table_html(
            ["id", "role", "name", "state"],
            elements,
            title=f"interactive elements ({plural(self.data.get('element_count'), 'element')})",
            empty="no interactive element",
            cls="carnb-elements",
        )
        more = "".join(f'<div class="carnb-note">{esc(n)}</div>' for n in notes)
        return f'{page}<div class="carnb-part">{text}</div>{els}{more}'
