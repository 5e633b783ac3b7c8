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
    "auth",
    "browser",
    "memory",
    "model",
    "policy",
    "run",
    "server",
    "status",
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
    assert complete(loaded, "%car run ") == ["cancel", "complete", "list", "start", "trace"]
    loaded.run_line_magic("car", "agent add scout")
    assert complete(loaded, "%car auth --agent sc") == ["scout"]
    started = loaded.run_line_magic("car", "run start try completion")
    assert complete(loaded, "%car run trace ") == [started.run_id]
    assert complete(loaded, "t = %car run cancel run-") == [started.run_id]
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
