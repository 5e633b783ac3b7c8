"""Tab completion of %car / %%car: derived from the parser tree, dynamic ids from the notebook's
state, registered as an IPython matcher at load and removed at unload; through a real kernel's
complete_request too."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.completer import provisionalcompleter

from carnb.kernel.completer import candidates, split_command
from carnb.kernel.parser import build_cell_parser, build_parser
from tests.kernel.conftest import needs_chromium

COMMANDS = [
    "agent",
    "approvals",
    "auth",
    "browser",
    "cost",
    "memory",
    "model",
    "otel",
    "policy",
    "run",
    "server",
    "status",
    "supervise",
    "tools",
]


def complete(shell: Any, text: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in shell.Completer.completions(text, len(text))]


def no_values(kind: str) -> list[str]:
    return []


def test_the_tree_gives_commands_actions_and_flags() -> None:
    p = build_parser()
    assert candidates(p, [], "", no_values) == COMMANDS
    assert candidates(p, [], "me", no_values) == ["memory"]
    assert candidates(p, ["memory"], "", no_values) == sorted(
        [
            "add",
            "query",
            "count",
            "context",
            "persist",
            "load",
            "delete",
            "explore",
            "history",
            "diff",
        ]  # fmt: skip
    )
    assert candidates(p, ["memory", "add"], "--", no_values) == [
        "--confidence",
        "--help",
        "--id",
        "--kind",
        "--source",
        "--supersedes",
        "--tag",
    ]
    # after a flag that takes a value, that flag's values; a flag without one does not eat a word
    agents = {"agent": ["scout", "sage"]}.get
    assert candidates(p, ["auth", "--agent"], "s", lambda k: agents(k) or []) == ["sage", "scout"]
    assert candidates(p, ["browser", "click", "--quiet"], "", lambda k: ["el_1"]) == ["el_1"]
    assert candidates(p, ["bogus"], "", no_values) == []
    assert candidates(build_cell_parser(), [], "", no_values) == [
        "browser",
        "infer",
        "propose",
        "run",
    ]


def test_the_command_line_is_found_in_the_text_before_the_cursor() -> None:
    assert split_command("%car memory qu") == ("%", ["memory"], "qu")
    assert split_command("info = %car agent add ") == ("%", ["agent", "add"], "")
    assert split_command("%%car r") == ("%%", [], "r")
    assert split_command("print('%car')") is None
    assert split_command("print('x %car me')") is None
    assert split_command("x = 1") is None


def test_completion_in_the_shell_uses_live_ids(loaded: Any) -> None:
    assert complete(loaded, "%car me") == ["memory"]
    assert complete(loaded, "%car ") == COMMANDS  # not the 148 unrelated names
    assert complete(loaded, "%car run ") == [
        "cancel",
        "complete",
        "diff",
        "export",
        "fork",
        "list",
        "replay",
        "start",
        "trace",
    ]
    loaded.run_line_magic("car", "agent add scout")
    assert complete(loaded, "%car auth --agent sc") == ["scout"]
    started = loaded.run_line_magic("car", "run start try completion")
    assert complete(loaded, "%car run trace ") == [started.run_id]
    assert complete(loaded, "t = %car run cancel run-") == [started.run_id]
    assert complete(loaded, f"%car run diff {started.run_id} run-") == [started.run_id]
    loaded.run_line_magic("car", "run complete")
    loaded.run_line_magic("car", 'memory add deploy "staging needs CI" --id fact-ci')
    loaded.run_line_magic("car", 'memory add deploy "prod needs review" --id fact-review')
    loaded.run_line_magic("car", "memory query deploy")
    assert complete(loaded, "%car memory delete fact-") == ["fact-ci", "fact-review"]
    # the cell magic completes only on the first line of a cell
    assert complete(loaded, "%%car r") == ["run"]


def test_namespaces_agents_and_runs_on_disk_complete(loaded: Any) -> None:
    earlier = loaded.run_line_magic("car", "run start before the restart")
    loaded.run_line_magic("car", "run complete")
    loaded.run_line_magic("car", "auth --namespace scratch-notes")
    loaded.run_line_magic("car", "memory add a b")
    loaded.run_line_magic("car", "agent add old-agent")
    loaded.run_line_magic("car", "auth --agent old-agent")
    loaded.run_line_magic("car", "memory add c d")
    loaded.run_line_magic("reload_ext", "carnb")  # nothing registered any more
    assert complete(loaded, "%car auth --namespace scr") == ["scratch-notes"]
    assert complete(loaded, "%car agent add ol") == ["old-agent"]
    assert complete(loaded, "%car run trace ") == [earlier.run_id]


@needs_chromium
def test_element_ids_of_the_last_observation(loaded: Any, site: str) -> None:
    opened = loaded.run_line_magic("car", f"browser open {site}")
    ids = sorted(e.split("]")[0].lstrip("[") for e in opened.elements)
    assert ids and complete(loaded, "%car browser click el_") == ids
    assert complete(loaded, "%car browser type ") == ids


def test_the_completer_is_removed_at_unload_and_added_once_at_reload(loaded: Any) -> None:
    def ours() -> list[Any]:
        return [m for m in loaded.Completer.custom_matchers if type(m).__name__ == "CarCompleter"]

    assert len(ours()) == 1
    loaded.run_line_magic("reload_ext", "carnb")
    assert len(ours()) == 1
    assert complete(loaded, "%car ag") == ["agent"]
    loaded.run_line_magic("unload_ext", "carnb")
    assert ours() == []
    assert "agent" not in complete(loaded, "%car ag")


@pytest.mark.kernel
def test_complete_request_in_a_real_kernel(kernel: Any) -> None:
    kernel.ok("%load_ext carnb")

    def matches(code: str) -> tuple[list[str], int]:
        reply = kernel.kc.complete(code, len(code), reply=True, timeout=30)
        content = reply["content"]
        assert content["status"] == "ok"
        return content["matches"], content["cursor_start"]

    assert matches("%car me") == (["memory"], len("%car "))
    assert matches("%car ")[0] == COMMANDS
    assert matches("%car server --sh") == (["--show-tokens"], len("%car server "))
    kernel.ok("r = %car run start completing in a kernel")
    run_id = kernel.value("r.run_id")
    assert matches("%car run trace run-")[0] == [run_id]
    assert matches("%%car ")[0] == ["browser", "infer", "propose", "run"]


def test_items_are_typed_by_what_they_are() -> None:
    from carnb.kernel.completer import typed_candidates

    p = build_parser()
    assert {c.kind for c in typed_candidates(p, [], "", no_values)} == {"command"}
    assert typed_candidates(p, ["memory", "add"], "--t", no_values)[0].kind == "flag"
    agents = typed_candidates(p, ["auth", "--agent"], "", lambda k: ["scout"])
    assert [(c.text, c.kind) for c in agents] == [("scout", "agent")]
    rules = typed_candidates(p, ["policy", "add", "--rule"], "deny", no_values)
    assert {c.kind for c in rules} == {"choice"}


def test_help_names_every_command_and_explains_the_one_under_the_cursor() -> None:
    from carnb.kernel.helpdoc import full_usage, help_at

    line, cell = build_parser(), build_cell_parser()
    usage = full_usage(line, cell)
    for command in ["%car memory query", "%car run trace", "%car browser click", "%%car run"]:
        assert f"  {command} " in usage, command
    assert "query facts (a table, best first)" in usage and "[-h]" not in usage
    query = help_at(line, cell, "%car memory query dep")
    assert query is not None
    assert query.startswith("query facts") and "usage: %car memory query" in query
    tag = help_at(line, cell, "%car memory add a b --tag")
    assert tag is not None and tag.startswith("--tag TAG: a tag")
    assert help_at(line, cell, "x = %car ru") is not None
    assert help_at(line, cell, "print(1)") is None
    assert help_at(line, cell, "%%car run x", first_line=False) is None


@pytest.mark.kernel
def test_inspect_request_in_a_real_kernel(kernel: Any) -> None:
    def inspect(code: str, pos: int | None = None) -> str | None:
        pos = len(code) if pos is None else pos
        reply = kernel.kc.inspect(code, pos, detail_level=0, reply=True, timeout=30)
        content = reply["content"]
        assert content["status"] == "ok"
        return content["data"]["text/plain"] if content["found"] else None

    kernel.ok("%load_ext carnb")
    magic = inspect("%car", 2)  # `%car?` and Shift+Tab on the magic: the full usage
    assert magic is not None
    assert "%car memory query [-k K] WORDS" in magic and "%%car propose [--run]" in magic
    query = inspect("x = 1\n%car memory query deploy", len("x = 1\n%car memory qu"))
    assert query is not None and "usage: %car memory query" in query
    assert "%car run start" in (inspect("%car run start tidy") or "")
    assert "Return the number of items" in (inspect("len") or "")  # everything else: IPython's
    kernel.ok("%unload_ext carnb")
    assert inspect("%car memory query") is None


@pytest.mark.kernel
def test_complete_reply_types_items(kernel: Any) -> None:
    kernel.ok("%load_ext carnb")
    reply = kernel.kc.complete("%car memory add x y --t", 23, reply=True, timeout=30)
    items = reply["content"]["metadata"]["_jupyter_types_experimental"]
    assert [(i["text"], i["type"]) for i in items] == [("--tag", "flag")]
