"""``%car`` in IPython's in-process shell: help, argument errors, server, auth, agents, memory,
runs; every error one line."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import carnb
from carnb.kernel.calls import CarCommandError
from tests.conftest import Client


def run(ip: Any, code: str) -> Any:
    """Run a cell; return the ExecutionResult (errors are shown, not raised)."""
    return ip.run_cell(code)


def test_help_explains_every_command(loaded: Any, capsys: Any) -> None:
    loaded.run_line_magic("car", "--help")
    top = capsys.readouterr().out
    for cmd in ("server", "status", "auth", "agent", "memory", "run", "browser", "tools", "policy"):
        # each command once, with its help line (the issue: the help listed them twice)
        assert len(re.findall(rf"^\s+{cmd}\s+\S", top, re.M)) == 1, top
    for sub in ("server", "auth", "agent add", "memory query", "run start", "browser click"):
        loaded.run_line_magic("car", f"{sub} --help")
        text = capsys.readouterr().out
        assert text.startswith(f"usage: %car {sub}"), text


@pytest.mark.parametrize(
    "line, match",
    [
        ("%car bogus", "unknown command 'bogus'"),
        ("%car agnet list", "unknown command 'agnet'; did you mean 'agent'?"),
        ("%car memory qeury x", "%car memory: unknown action 'qeury'; did you mean 'query'?"),
        (
            "%car server --shw-tokens",
            "%car server: unrecognized argument(s): --shw-tokens; did you mean --show-tokens?",
        ),
        ("%car memory", "required: ACTION"),
        ("%car memory add onlysubject", "required: BODY"),
        ("%car memory query words -k many", "invalid int value"),
        ("%car run start", "required: INTENT"),
        ("%car browser click", "required: EL"),
        ("%car auth --token a --host-token b", "not allowed with"),
        ("%car server 'unbalanced", "cannot split"),
    ],
)
def test_argument_errors_are_one_line_usage_errors(
    loaded: Any, capsys: Any, line: str, match: str
) -> None:
    res = run(loaded, line)
    assert isinstance(res.error_in_exec, UsageError)
    msg = str(res.error_in_exec)
    assert match in msg and "\n" not in msg
    assert "Traceback" not in capsys.readouterr().err
    assert carnb.current().running  # and the runtime is fine
    assert loaded.run_line_magic("car", "memory count").value == 0


def test_runtime_errors_are_one_line(loaded: Any, capsys: Any) -> None:
    res = run(loaded, "%car memory load ../outside.json")
    assert isinstance(res.error_in_exec, CarCommandError)
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.strip()]
    assert lines == [f"carnb: {res.error_in_exec.message}"]
    assert "rejected path" in lines[0]


def test_server_masks_tokens_unless_asked(loaded: Any) -> None:
    rt = carnb.current()
    info = loaded.run_line_magic("car", "server")
    bundle = info._repr_mimebundle_()
    for text in bundle.values():
        assert rt.token not in text and rt.host_token not in text
        assert "export CAR_DAEMON_URL=" + rt.url in text
        assert "CAR_AUTH_TOKEN=********" in text
    assert info.env == {"CAR_DAEMON_URL": rt.url, "CAR_AUTH_TOKEN": rt.token}
    shown = loaded.run_line_magic("car", "server --show-tokens")
    assert f"export CAR_AUTH_TOKEN={rt.token}" in shown._repr_mimebundle_()["text/plain"]
    assert rt.host_token not in shown._repr_mimebundle_()["text/html"]


def test_server_lists_connected_sessions(loaded: Any) -> None:
    rt = carnb.current()
    c = Client(rt.url)
    try:
        c.call("session.auth", {"token": rt.token})
        info = loaded.run_line_magic("car", "server")
        kinds = sorted(s["kind"] for s in info.sessions)
        assert kinds == ["notebook", "socket"]
        assert "socket" in info._repr_mimebundle_()["text/html"]
    finally:
        c.close()


def test_agent_add_gives_env_that_authenticates(loaded: Any) -> None:
    info = loaded.run_line_magic("car", "agent add scout")
    assert set(info.env) == {"CAR_DAEMON_URL", "CAR_AGENT_ID", "CAR_AGENT_TOKEN"}
    assert info.env["CAR_AGENT_TOKEN"] not in info._repr_mimebundle_()["text/html"]
    c = Client(info.env["CAR_DAEMON_URL"])
    try:
        r = c.call("session.auth", {"agent_id": "scout", "token": info.env["CAR_AGENT_TOKEN"]})
        assert r["agent_id"] == "scout"
        table = loaded.run_line_magic("car", "agent list")
        assert table.rows[0][:2] == ["scout", "attached"]
    finally:
        c.close()
    again = loaded.run_line_magic("car", "agent add scout")  # idempotent
    assert again.env == info.env


def test_auth_binds_an_agent_and_goes_back_to_host(loaded: Any) -> None:
    loaded.run_line_magic("car", "agent add scout")
    res = loaded.run_line_magic("car", "auth --agent scout")
    assert res.snapshot["agent_id"] == "scout" and res.snapshot["is_host"] is True
    assert "agent:scout" in res._repr_mimebundle_()["text/plain"]
    res = loaded.run_line_magic("car", "auth --namespace shared")
    assert res.snapshot["graph"] == "namespace:shared" and res.snapshot["agent_id"] is None
    res = loaded.run_line_magic("car", "auth")
    assert res.snapshot["graph"] == "ephemeral" and res.snapshot["is_host"]


def test_auth_with_the_agents_own_token_drops_host(loaded: Any) -> None:
    env = loaded.run_line_magic("car", "agent add scout").env
    res = loaded.run_line_magic("car", f"auth --agent scout --token {env['CAR_AGENT_TOKEN']}")
    assert res.snapshot["is_host"] is False and res.snapshot["role"] == "agent"
    bad = run(loaded, "%car auth --token wrong")
    assert isinstance(bad.error_in_exec, CarCommandError)
    assert "token mismatch" in bad.error_in_exec.message
    assert carnb.current().session.agent_id == "scout"  # a failed auth changes nothing
    loaded.run_line_magic("car", "auth")
    assert carnb.current().session.is_host


def test_auth_unknown_agent_is_one_line(loaded: Any) -> None:
    res = run(loaded, "%car auth --agent ghost")
    assert isinstance(res.error_in_exec, CarCommandError)
    assert "unknown agent 'ghost'" in res.error_in_exec.message


def test_memory_commands_on_the_notebook_session(loaded: Any) -> None:
    car = lambda line: loaded.run_line_magic("car", line)  # noqa: E731
    assert car('memory add deploy "staging deploys need a green CI run" --tag ci').value == 1
    assert car('memory add auth "tokens rotate weekly" --kind constraint --id rule-1').value == 2
    q = car("memory query deploy ci")
    assert [f["fact_id"] for f in q.facts][0] == "ws-1"
    assert "<td>staging deploys need a green CI run</td>" in q._repr_mimebundle_()["text/html"]
    assert car("memory count").value == 2
    ctx = car("memory context deploy --window 8000")
    assert "## Constraints" in ctx.value and "[rule-1]" in ctx.value
    assert car("memory persist proj/facts.json").value == 2
    home = Path(loaded.config.CarMagics.home)
    assert (home / "memory" / "proj" / "facts.json").exists()
    assert "deleted ws-1" in str(car("memory delete ws-1"))
    assert "nothing deleted" in str(car("memory delete ws-1"))
    assert car("memory load proj/facts.json").value == 2
    assert car("memory count").value == 2


def test_html_is_escaped(loaded: Any) -> None:
    loaded.run_line_magic("car", 'memory add "<script>x</script>" "<img src=x onerror=alert(1)>"')
    html = loaded.run_line_magic("car", "memory query script")._repr_mimebundle_()["text/html"]
    assert "<script>x" not in html and "<img src=x" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_explore_searches_as_you_type(loaded: Any) -> None:
    facts = [
        ("deploy", "staging deploys need green CI"),
        ("db", "postgres runs on port 5432"),
        ("deploy", "prod deploys on Monday"),
    ]
    for subject, body in facts:
        loaded.run_line_magic("car", f'memory add {subject} "{body}"')
    ex = loaded.run_line_magic("car", "memory explore deploy")
    assert "carnb-explore" in ex.widget._dom_classes
    assert 'data-facts="3"' in ex.status.value and "2 result(s)" in ex.status.value
    assert "prod deploys on Monday" in ex.results.value
    # Typing: the box changes on the kernel thread, the loop thread writes the table.
    ex.box.value = "postgres"
    deadline = time.monotonic() + 5
    while "5432" not in ex.results.value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "postgres runs on port 5432" in ex.results.value
    assert "deploy" not in ex.results.value
    ex.box.value = ""
    deadline = time.monotonic() + 5
    while "type to search" not in ex.results.value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "type to search" in ex.results.value
    assert ex.search("monday")[0]["body"] == "prod deploys on Monday"


def test_cells_become_turns_while_a_run_is_open(loaded: Any) -> None:
    run(loaded, "started = %car run start tidy the data")
    rid = loaded.user_ns["started"].run_id
    assert carnb.current().session.current_run_id == rid
    run(loaded, "x = 20 + 1")
    run(loaded, "x * 2")
    run(loaded, "1 / 0")
    run(loaded, "%car run complete --summary 'all tidy'")
    assert carnb.current().session.current_run_id is None
    run(loaded, "y = 'not recorded'")
    trace = loaded.run_line_magic("car", f"run trace {rid}")
    turns = trace.turns
    assert [t["prompt"] for t in turns] == ["x = 20 + 1", "x * 2", "1 / 0"]
    assert turns[1].get("output") == "42"
    assert turns[2]["error"] == "ZeroDivisionError: division by zero"
    assert trace.trace["status"] == "completed"
    ended = trace.trace["records"][-1]
    assert ended["record"] == "ended" and ended["outcome"] == {
        "status": "success",
        "summary": "all tidy",
    }
    assert "tidy the data" in trace._repr_mimebundle_()["text/html"]
    runs = loaded.run_line_magic("car", "run list")
    assert runs.runs[0]["run_id"] == rid and runs.runs[0]["turn_count"] == 3


def test_cell_magic_brackets_a_cell(loaded: Any) -> None:
    res = run(loaded, "%%car run compute the answer\nz = 6 * 7\nz")
    assert res.success and res.result == 42
    trace = loaded.run_line_magic("car", "run trace")
    assert trace.trace["status"] == "completed"
    assert trace.turns[0]["prompt"] == "z = 6 * 7\nz" and trace.turns[0]["output"] == "42"
    assert trace.trace["records"][-1]["outcome"]["status"] == "success"
    assert loaded.user_ns["z"] == 42
    assert carnb.current().session.current_run_id is None


def test_cell_magic_failure_raises_and_completes_with_failure(loaded: Any, capsys: Any) -> None:
    res = run(loaded, "%%car run risky\nraise ValueError('boom')")
    assert isinstance(res.error_in_exec, ValueError)
    captured = capsys.readouterr()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", captured.out + captured.err)
    assert "ValueError: boom" in shown
    assert "cmd_runs.py" not in shown and "magics.py" not in shown  # our frames are hidden
    trace = loaded.run_line_magic("car", "run trace")
    assert trace.trace["records"][-1]["outcome"] == {
        "status": "failure",
        "summary": "ValueError: boom",
    }
    assert trace.turns[0]["error"] == "ValueError: boom"


def test_run_errors(loaded: Any) -> None:
    for line, match in [
        ("run complete", "no run is open"),
        ("run cancel", "no run is open"),
        ("run trace", "no run yet"),
        ("run trace run-nope", "no run run-nope"),
    ]:
        res = run(loaded, f"%car {line}")
        assert isinstance(res.error_in_exec, CarCommandError), line
        assert match in res.error_in_exec.message
    loaded.run_line_magic("car", "run start first")
    res = run(loaded, "%car run start second")
    assert "still open" in res.error_in_exec.message
    res = run(loaded, "%%car run nested\n1")
    assert "still open" in res.error_in_exec.message
    cancelled = loaded.run_line_magic("car", "run cancel --reason 'changed my mind'")
    trace = loaded.run_line_magic("car", f"run trace {cancelled.run_id}")
    assert trace.trace["status"] == "cancelled"


def test_runs_of_a_bound_agent(loaded: Any) -> None:
    loaded.run_line_magic("car", "agent add scout")
    loaded.run_line_magic("car", "auth --agent scout")
    started = loaded.run_line_magic("car", "run start scouting")
    assert started.reply["agent_id"] == "scout"
    loaded.run_line_magic("car", "run complete")
    assert loaded.run_line_magic("car", "run list").runs[0]["agent_id"] == "scout"


def test_external_agent_process_with_the_official_client(loaded: Any, tmp_path: Path) -> None:
    car_runtime = pytest.importorskip("car_runtime")
    del car_runtime
    import subprocess
    import sys

    env = loaded.run_line_magic("car", "agent add writer").env
    code = (
        "import car_runtime; rt = car_runtime.CarRuntime(); "
        "print(rt.add_fact('deploy', 'written by the agent', 'pattern')); rt.close()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "CAR_NO_VERSION_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    loaded.run_line_magic("car", "auth --agent writer")
    q = loaded.run_line_magic("car", "memory query deploy")
    assert q.facts[0]["body"] == "written by the agent"


def test_run_list_shows_how_each_run_ended(loaded: Any) -> None:
    run(loaded, "%%car run divide\n1 / 0")
    run(loaded, "%%car run add\n1 + 1")
    loaded.run_line_magic("car", "run start give up")
    loaded.run_line_magic("car", "run cancel")
    listed = loaded.run_line_magic("car", "run list")
    assert [r["outcome"] for r in listed.runs] == [None, "success", "failure"]
    assert [row[1] for row in listed.rows] == ["cancelled", "success", "failure"]
    assert "completed" not in listed.text()


def test_run_messages_name_runs_by_short_ids(loaded: Any) -> None:
    started = loaded.run_line_magic("car", "run start short ids")
    assert started.run_id not in started.text() and started.run_id[:12] in started.text()
    done = loaded.run_line_magic("car", "run complete")
    assert done.run_id == started.run_id and started.run_id not in done.text()


@pytest.mark.kernel
def test_every_car_line_of_a_cell_shows_its_result(kernel: Any) -> None:
    kernel.ok("%load_ext carnb")
    res = kernel.ok("%car memory add a 'first fact'\nx = %car memory count\n%car memory count")
    shown = [o["data"]["text/plain"] for o in res.outputs]
    assert len(shown) == 2 and "1 facts" in shown[1]  # the middle line, then the last
    assert "added" in shown[0] or "fact" in shown[0]


def test_memory_query_explains_an_empty_graph_and_tags_read_as_words(loaded: Any) -> None:
    empty = loaded.run_line_magic("car", "memory query deploy")
    assert "is empty" in empty.text() and "%car memory add" in empty.text()
    loaded.run_line_magic("car", "memory add deploy 'needs CI' --tag ci --tag prod")
    found = loaded.run_line_magic("car", "memory query deploy")
    assert "ci, prod" in found.text() and "[" not in found.text()
    assert "no fact matches" in loaded.run_line_magic("car", "memory query zebra").text()
