"""The ``%car`` command line: one argparse tree for the line magic, a small one for the cell magic.

Parsing never exits the process and never prints: a bad command raises :class:`ArgError` with a
one-line message (the magic turns it into IPython's ``UsageError``) and ``--help`` raises
:class:`HelpShown` carrying the help text. Every leaf command names the function that runs it
(``args.func``, a ``cmd_*`` function taking the engine and the parsed arguments, plus the cell
for the cell magic), so the tree is the one table of commands.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
from typing import Any, NoReturn

from carnb.agentir.policy import RULES
from carnb.kernel import (
    cmd_browser,
    cmd_core,
    cmd_memory,
    cmd_model,
    cmd_observe,
    cmd_runs,
    cmd_supervise,
    cmd_tools,
)


class ArgError(Exception):
    """A command line that does not parse; the message is one line."""


class HelpShown(Exception):  # noqa: N818 (control flow, not a failure)
    """``--help`` was asked for; ``.text`` is the help."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("exit_on_error", False)
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message: str) -> NoReturn:
        raise ArgError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ArgError(message or f"{self.prog}: exit {status}")

    def print_help(self, file: Any = None) -> None:
        raise HelpShown(self.format_help())

    def print_usage(self, file: Any = None) -> None:
        raise HelpShown(self.format_usage())


def split(line: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:
        raise ArgError(f"%car: cannot split the command line: {exc}") from None


def parse(parser: Parser, line: str) -> argparse.Namespace:
    argv = split(line)
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise ArgError(_explain(parser.prog, argv, exc)) from None
    if extra:
        raise ArgError(_unrecognized(parser, argv, extra))
    return args


def _unrecognized(root: argparse.ArgumentParser, argv: list[str], extra: list[str]) -> str:
    """Words no parser took; a misspelt flag of the command gets 'did you mean'."""
    leaf = root
    for word in argv:
        sub = next((a for a in leaf._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            continue
        leaf = sub.choices[word]
    text = f"{leaf.prog}: unrecognized argument(s): {' '.join(extra)}"
    flags = [s for a in leaf._actions for s in a.option_strings if s.startswith("--")]
    bad = next((w for w in extra if w.startswith("-")), None)
    close = difflib.get_close_matches(bad.split("=")[0], flags, n=2, cutoff=0.6) if bad else []
    if close:
        text += f"; did you mean {' or '.join(close)}?"
    return f"{text} (see `{leaf.prog} --help`)"


_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>.*)\)")


def _explain(prog: str, argv: list[str], exc: argparse.ArgumentError) -> str:
    """One line for a bad command line; an unknown command or action gets 'did you mean'."""
    m = _INVALID_CHOICE.search(str(exc))
    if m is None:
        return f"{prog}: {exc} (see `{prog} --help`)"
    word = m.group("word")
    choices = re.findall(r"'([^']*)'", m.group("choices")) or m.group("choices").split(", ")
    where = " ".join([prog, *[w for w in argv[: argv.index(word)] if not w.startswith("-")]])
    what = (exc.argument_name or "command").lower()
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{where}: unknown {what} {word!r}; {hint}one of: {', '.join(choices)}"


def _subs(p: Parser, dest: str, title: str) -> Any:
    return p.add_subparsers(dest=dest, metavar=title, required=True, parser_class=Parser)


ROOT_DESCRIPTION = """\
Drive carnb, the CAR session host running in this kernel, as the notebook's own session.
"""

ROOT_EPILOG = """\
`%car COMMAND --help` explains each command; Tab completes commands, actions, flags and ids.
Cell forms: `%%car run INTENT` brackets a cell in a run, `%%car browser` runs a JSON script,
`%%car infer` sends the cell to a model.
Options: `%config CarMagics` (port, auth, allowed_origins, chromium, home, switch_interval;
they apply when the runtime starts: %reload_ext carnb).
"""


def build_parser() -> Parser:
    root = Parser(prog="%car", description=ROOT_DESCRIPTION, epilog=ROOT_EPILOG)
    cmd = _subs(root, "command", "COMMAND")

    p = cmd.add_parser(
        "server",
        help="where the server listens and who is connected",
        description="Show the server URL, the connection file, the `export` "
        "lines a client process needs (CAR_DAEMON_URL, CAR_AUTH_TOKEN) and the "
        "connected sessions. Tokens are masked unless --show-tokens.",
    )
    p.add_argument("--show-tokens", action="store_true", help="show the launch token")
    p.set_defaults(func=cmd_core.server)

    p = cmd.add_parser(
        "status",
        help="the live status panel",
        description="Show the live panel: the notebook session's flags, bound agent, "
        "memory namespace and fact count, current run and its turns, browser slot, "
        "and every connected session. It updates by itself; it never shows a token.",
    )
    p.add_argument(
        "--snapshot", action="store_true", help="a static copy of the panel as it is now"
    )
    p.set_defaults(func=cmd_core.status)

    p = cmd.add_parser(
        "auth",
        help="re-authenticate the notebook's session",
        description="Re-authenticate the notebook's session. Without --token it "
        "uses this launch's host token, so the session stays host; --agent binds "
        "an agent (its memory becomes the session's graph), --namespace binds a "
        "memory namespace (wins over the agent graph). `%car auth` alone goes "
        "back to plain host. Shows the resulting flags.\n\n"
        "  %car auth --agent scout\n  %car auth --namespace shared-notes\n"
        "  %car auth --token T --agent scout   # as the agent itself (not host)",
    )
    p.add_argument("--agent", metavar="ID", help="bind this registered agent")
    p.add_argument("--namespace", metavar="NS", help="bind this memory namespace")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--token",
        metavar="T",
        help="a launch token, or an agent's own token with --agent (the session is then not host)",
    )
    g.add_argument("--host-token", metavar="T", help="a host token (default: this launch's)")
    p.set_defaults(func=cmd_core.auth)

    p = cmd.add_parser(
        "agent",
        help="register and list agents",
        description="Register agents (each gets its own token) and list them.",
    )
    sub = _subs(p, "action", "ACTION")
    a = sub.add_parser(
        "add",
        help="register an agent and show its env lines",
        description="Register agent NAME (idempotent) and show the env lines its "
        "process needs (CAR_DAEMON_URL, CAR_AGENT_ID, CAR_AGENT_TOKEN). The "
        "result's .env dict holds the real values for subprocess: "
        "`info = %car agent add scout` then `env={**os.environ, **info.env}`.",
    )
    a.add_argument("name", metavar="NAME")
    a.add_argument("--show-tokens", action="store_true", help="show the agent's token")
    a.set_defaults(func=cmd_core.agent_add)
    ls = sub.add_parser(
        "list",
        help="agents: registered (attached or idle) and on disk from earlier kernels",
        description="Registered agents (attached or idle) and agents the data directory "
        "knows from earlier kernels (status `on disk`: a memory graph or runs); "
        "`%car agent add NAME` re-attaches one with a new token.",
    )
    ls.set_defaults(func=cmd_core.agent_list)

    _memory(cmd)
    _run(cmd)
    _observe(cmd)
    _browser(cmd)
    _model(cmd)
    _tools(cmd)
    _supervise(cmd)
    return root


RUN_ID_HELP = "a run id, or a unique start of one as the notebook shows it (run-3f2a9c01)"
REVERSIBILITY = ("reversible", "compensable", "irreversible")


def _supervise(cmd: Any) -> None:
    p = cmd.add_parser(
        "supervise",
        help="decide over other sessions' proposals in an approvals widget",
        description="Subscribe the notebook as a supervisor of the admission gate and show "
        "the approvals widget: every matching proposal of another session waits, before "
        "anything runs, for Allow, Deny (with a reason) or Escalate (to the approval "
        "ledger), and is rejected when nobody decides in time (CarMagics.decision_timeout). "
        "The buttons work while a cell is busy.\n"
        "  %car supervise --tools rm shell --min-reversibility compensable",
    )
    p.add_argument("--tools", nargs="+", metavar="T", help="only proposals calling these tools")
    p.add_argument("--sessions", nargs="+", metavar="S", help="only proposals of these session ids")
    p.add_argument(
        "--min-reversibility",
        choices=REVERSIBILITY,
        default=None,
        help="only proposals with an action this risky or worse",
    )
    p.set_defaults(func=cmd_supervise.supervise)

    p = cmd.add_parser(
        "approvals",
        help="the approval ledger: list, approve, deny",
        description="The durable approval ledger (host.approvals): requests of agents "
        "(host.request_approval) and escalated proposals. `%car approvals` lists the pending "
        "ones, --all every one.\n"
        "  %car approvals approve ID\n  %car approvals deny ID --notes 'not on Fridays'",
    )
    p.add_argument("--all", action="store_true", help="also resolved and expired approvals")
    p.set_defaults(func=cmd_supervise.approvals)
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    for action in ("approve", "deny"):
        a = sub.add_parser(action, help=f"{action} one pending approval")
        a.add_argument("approval_id", metavar="ID")
        a.add_argument("--notes", default=None, help="why (required to deny)")
        a.set_defaults(func=cmd_supervise.approval_resolve)


def _memory(cmd: Any) -> None:
    p = cmd.add_parser(
        "memory",
        help="memgine facts (the session's effective graph)",
        description="Memory methods on the notebook's session: they act on its "
        "effective graph (namespace if bound, else agent, else its own).",
    )
    sub = _subs(p, "action", "ACTION")
    a = sub.add_parser(
        "add",
        help="add a fact",
        description="Add a fact; shows the fact count.\n"
        '  %car memory add "deploy" "staging deploys need a green CI run"',
    )
    a.add_argument("subject", metavar="SUBJECT")
    a.add_argument("body", metavar="BODY")
    a.add_argument(
        "--kind", default=None, help='fact kind (default "pattern"; "constraint" marks a hard rule)'
    )
    a.add_argument("--id", dest="fact_id", metavar="FACT_ID", help="explicit fact id")
    a.add_argument("--tag", dest="tags", action="append", metavar="TAG", help="a tag (repeatable)")
    a.add_argument("--source", default=None, help='source (default "user")')
    a.add_argument("--confidence", type=float, default=None, help="confidence in [0, 1]")
    a.add_argument(
        "--supersedes",
        action="append",
        metavar="ID_OR_SUBJECT",
        help="a fact id or subject this fact replaces (repeatable)",
    )
    a.set_defaults(func=cmd_memory.add)
    q = sub.add_parser("query", help="query facts (a table, best first)")
    q.add_argument("query", nargs="+", metavar="WORDS")
    q.add_argument("-k", type=int, default=5, help="at most K results (default 5)")
    q.set_defaults(func=cmd_memory.query)
    n = sub.add_parser("count", help="the number of facts")
    n.set_defaults(func=cmd_memory.count)
    c = sub.add_parser("context", help="build the prompt context for a query")
    c.add_argument("query", nargs="+", metavar="WORDS")
    c.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="TOKENS",
        help="the model's context window (sizes the budget)",
    )
    c.add_argument("--fast", action="store_true", help="use build_context_fast (no ranking)")
    c.set_defaults(func=cmd_memory.context)
    for name, verb, fn in (
        ("persist", "write the graph to", cmd_memory.persist),
        ("load", "replace the graph from", cmd_memory.load),
    ):
        s = sub.add_parser(name, help=f"{verb} a JSON file under <home>/memory/")
        s.add_argument("path", metavar="PATH", help="relative to <home>/memory/")
        s.set_defaults(func=fn)
    h = sub.add_parser("history", help="the supersession chain of a subject or fact, newest first")
    h.add_argument("subject", nargs="?", metavar="SUBJECT")
    h.add_argument("--id", dest="fact_id", metavar="FACT_ID", help="the chain of this fact instead")
    h.set_defaults(func=cmd_memory.history)
    d = sub.add_parser("delete", help="delete a fact by id")
    d.add_argument("fact_id", metavar="FACT_ID")
    d.set_defaults(func=cmd_memory.delete)
    f = sub.add_parser(
        "diff",
        help="the facts added, superseded and deleted since a run or a time",
        description="What changed in the graph since a run started or a time.\n"
        "  %car memory diff --since run-1a2b3c\n"
        "  %car memory diff --since 2026-12-08T09:00",
    )
    f.add_argument(
        "--since",
        required=True,
        metavar="RUN|TIME",
        help="a run id (since it started), an ISO time or seconds since the epoch",
    )
    f.set_defaults(func=cmd_memory.diff)
    e = sub.add_parser("explore", help="a search widget over the facts (updates as you type)")
    e.add_argument("query", nargs="*", metavar="WORDS", help="initial search")
    e.add_argument("-k", type=int, default=10, help="rows shown (default 10)")
    e.add_argument(
        "--superseded", action="store_true", help="also show replaced facts, struck through"
    )
    e.set_defaults(func=cmd_memory.explore)


def _run(cmd: Any) -> None:
    p = cmd.add_parser(
        "run",
        help="agent run tracing",
        description="Runs of the notebook's session. While a run is open, every "
        "executed cell is recorded as a turn (source and result or error).\n"
        "The cell magic `%%car run INTENT` brackets one cell: the cell becomes the "
        "run's turn and the run completes with success or failure.",
    )
    sub = _subs(p, "action", "ACTION")
    s = sub.add_parser("start", help="start a run; later cells become its turns")
    s.add_argument("intent", nargs="+", metavar="INTENT")
    s.add_argument(
        "--agent-name",
        default=None,
        metavar="NAME",
        help='owner label when no agent is bound (default "notebook")',
    )
    s.set_defaults(func=cmd_runs.start)
    c = sub.add_parser("complete", help="complete the open run")
    c.add_argument("--status", default="success", help='outcome status (default "success")')
    c.add_argument("--summary", default="", help="outcome summary")
    c.set_defaults(func=cmd_runs.complete)
    x = sub.add_parser("cancel", help="cancel the open run (or RUN_ID)")
    x.add_argument("run_id", nargs="?", metavar="RUN_ID", help=RUN_ID_HELP)
    x.add_argument("--reason", default="cancelled from the notebook", help="why")
    x.set_defaults(func=cmd_runs.cancel)
    t = sub.add_parser(
        "trace",
        help="a run's timeline (default: the open or last run)",
        description="A run's timeline: one entry per record with its time and duration; "
        "click a turn to see its full source, output and error. --live shows a widget that "
        "grows as records arrive (also those an outside agent records). The result's "
        ".to_dataframe() gives a pandas DataFrame.",
    )
    t.add_argument("run_id", nargs="?", metavar="RUN_ID", help=RUN_ID_HELP)
    t.add_argument("--live", action="store_true", help="a timeline that grows as records arrive")
    t.set_defaults(func=cmd_runs.trace)
    ls = sub.add_parser("list", help="runs of an agent, newest first")
    ls.add_argument(
        "--agent",
        default=None,
        metavar="ID",
        help="agent id (default: the bound agent, else name:notebook)",
    )
    ls.set_defaults(func=cmd_runs.list_runs)
    rp = sub.add_parser(
        "replay",
        help="re-drive a recorded run from its recording and say where it diverges",
        description="Re-drive a recorded run with its recorded model answers and tool results: "
        "no model is called and no tool runs. Reports each step that no longer agrees: a "
        "model turn the agent recorded differently from what carnb served, tools that are not "
        "those the answer asked for, a tool call today's policies deny; with --rerun-tools the "
        "notebook's tools and a still-connected agent's tools run again (retried as often as "
        "the recording shows) and a different answer is reported.",
    )
    rp.add_argument("run_id", nargs="?", metavar="RUN_ID", help=RUN_ID_HELP)
    rp.add_argument(
        "--rerun-tools",
        action="store_true",
        help="run the notebook's and the connected agent's tools again (live) and compare",
    )
    rp.set_defaults(func=cmd_runs.replay)
    fk = sub.add_parser(
        "fork",
        help="a new run from a model turn of a recorded run, with another model or answer",
        description="A new run forked from model turn TURN of RUN_ID (the first is 1, as "
        "`%car run trace` counts them): the turns before it come from the recording; at TURN "
        "the recorded request, with --system applied, goes to --model (default: the recorded "
        "one), or --answer is used; then carnb's loop driver goes on (infer, verify, execute) "
        "in the background. Notebook tools run live, a connected agent's through "
        "tools.execute; any other tool is answered from the recording when a call with the same "
        "parameters was recorded, else the fork stops naming it.",
    )
    fk.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    fk.add_argument("--at", type=int, required=True, metavar="TURN", help="the model turn")
    fk.add_argument("--model", default=None, metavar="NAME", help="a registered model")
    fk.add_argument("--system", default=None, metavar="TEXT", help="replaces the system prompt")
    fk.add_argument(
        "--answer",
        default=None,
        metavar="TEXT|JSON",
        help='the answer at TURN instead of a model call (text, or {"text", "tool_calls"})',
    )
    fk.add_argument(
        "--tool-output",
        action="append",
        default=[],
        metavar="ACTION=VALUE",
        help="answer a tool call (its id or the tool's name) with VALUE, JSON or text (repeatable)",
    )
    fk.add_argument("--max-turns", type=int, default=None, metavar="N", help="model turns")
    fk.add_argument("--live", action="store_true", help="show the fork's live timeline")
    fk.set_defaults(func=cmd_runs.fork)
    df = sub.add_parser(
        "diff",
        help="two runs side by side, model turn by model turn",
        description="Two runs turn by turn: the model's text (word diff), tool calls and "
        "parameters, tool results, the memory facts each turn's context held, tokens and "
        "latency. The result's .to_dataframe() gives a pandas DataFrame.",
    )
    df.add_argument("run_a", metavar="RUN_A", help=RUN_ID_HELP)
    df.add_argument("run_b", metavar="RUN_B", help=RUN_ID_HELP)
    df.set_defaults(func=cmd_runs.diff)
    e = sub.add_parser(
        "export",
        help="write the model turns of runs as a dataset (JSON lines or parquet)",
        description="Write one row per model turn of each RUN (input messages, output, tool "
        "calls, the run's outcome, tokens, cost) to PATH, for evaluation. --format parquet "
        "needs pyarrow; the default follows PATH's suffix (.parquet, else jsonl). "
        "carnb.model_turns(*run_ids) returns the same rows as a pandas DataFrame.",
    )
    e.add_argument("run_ids", nargs="+", metavar="RUN")
    e.add_argument("path", metavar="PATH")
    e.add_argument("--format", choices=("jsonl", "parquet"), default=None)
    e.set_defaults(func=cmd_observe.export)


def _observe(cmd: Any) -> None:
    p = cmd.add_parser(
        "cost",
        help="tokens and cost by agent, run or model (a table)",
        description="Calls, input and output tokens and cost (USD, from the price table: "
        "carnb.prices({...}), CarMagics.prices or serve --prices) summed by agent, run or "
        "model. Calls of a model the table does not price are counted as unpriced, not free. "
        "The result's .to_dataframe() gives a pandas DataFrame.",
    )
    p.add_argument("--by", choices=("agent", "run", "model"), default="agent")
    p.set_defaults(func=cmd_observe.cost)
    p = cmd.add_parser(
        "otel",
        help="the OpenTelemetry export: endpoint, spans sent and dropped, last error",
        description="The status of the OpenTelemetry export of runs (CarMagics.otel_endpoint, "
        "$CARNB_OTEL_ENDPOINT): the endpoint, whether content is exported, spans sent, "
        "dropped and waiting, and the last error.",
    )
    p.set_defaults(func=cmd_observe.otel)


def _browser(cmd: Any) -> None:
    p = cmd.add_parser(
        "browser",
        help="the session's lazy Chromium",
        description="The notebook session's browser slot: the first command "
        "launches Chromium, later cells reuse it, so `el_N` ids from one cell work "
        "in the next. Actions show the page afterwards (observe) unless --quiet.\n"
        "The cell magic `%%car browser` runs a JSON script {operations: [...]}.",
    )
    sub = _subs(p, "action", "ACTION")
    o = sub.add_parser("open", help="navigate to URL and observe")
    o.add_argument("url", metavar="URL")
    o.add_argument("--screenshot", action="store_true", help="also show a screenshot")
    o.set_defaults(func=cmd_browser.open_)
    ob = sub.add_parser("observe", help="the page's text and interactive elements [el_N]")
    ob.add_argument("--screenshot", action="store_true", help="also show a screenshot")
    ob.set_defaults(func=cmd_browser.observe)
    c = sub.add_parser("click", help="click element EL (e.g. el_3)")
    c.add_argument("element_id", metavar="EL")
    t = sub.add_parser("type", help="type TEXT into element EL")
    t.add_argument("element_id", metavar="EL")
    t.add_argument("text", metavar="TEXT")
    k = sub.add_parser("key", help="press KEY (e.g. Enter, Tab, ArrowDown)")
    k.add_argument("key", metavar="KEY")
    k.add_argument(
        "--mod",
        dest="modifiers",
        action="append",
        metavar="MOD",
        help="modifier (Shift, Control, Alt, Meta; repeatable)",
    )
    s = sub.add_parser("scroll", help="scroll by DY pixels (negative: up)")
    s.add_argument("delta_y", metavar="DY", type=float)
    for q, fn in (
        (c, cmd_browser.click),
        (t, cmd_browser.type_),
        (k, cmd_browser.key),
        (s, cmd_browser.scroll),
    ):
        q.add_argument("--quiet", action="store_true", help="do not observe afterwards")
        q.set_defaults(func=fn)
    sh = sub.add_parser("screenshot", help="a PNG of the page, inline")
    sh.add_argument("--full-page", action="store_true", help="the whole page, not the viewport")
    sh.set_defaults(func=cmd_browser.screenshot)
    cl = sub.add_parser("close", help="close the slot (a later command relaunches)")
    cl.set_defaults(func=cmd_browser.close)


def _model(cmd: Any) -> None:
    p = cmd.add_parser(
        "model",
        help="the models infer reaches (carnb.model, runner clients)",
        description="The models of this kernel's server. Register one with carnb.model(fn); "
        "try one with the cell magic `%%car infer [--model M] [--context QUERY]`.",
    )
    sub = _subs(p, "action", "ACTION")
    ml = sub.add_parser("list", help="the registered models and the default")
    ml.set_defaults(func=cmd_model.list_models)
    md = sub.add_parser("default", help="make NAME the model infer uses when none is named")
    md.add_argument("name", metavar="NAME")
    md.set_defaults(func=cmd_model.default)


POLICY_RULES = RULES  # the policy engine's rules, named once


def _tools(cmd: Any) -> None:
    p = cmd.add_parser(
        "tools",
        help="the tools of every session",
        description="Every connected session with the tools it can call: those it "
        "registered (a client's, run by that client) and the notebook's (`@carnb.tool`) "
        "shared with it. TOOL shows only tools of that name.",
    )
    p.add_argument("tool", nargs="?", metavar="TOOL", help="only tools of this name")
    p.add_argument("--session", default=None, metavar="ID", help="only sessions whose id starts so")
    p.set_defaults(func=cmd_tools.tools)

    p = cmd.add_parser(
        "policy",
        help="the notebook session's policies",
        description="Policies of the notebook's session: they apply to the proposals the "
        "notebook verifies and runs (`%%car propose`). Each connection has its own.\n"
        "  %car policy add no-rm --rule deny_tool --target rm\n"
        "  %car policy add no-prod --rule deny_tool_param --target deploy --key env "
        "--pattern prod\n"
        "  %car policy add ready --rule require_state --key ready --value-json true",
    )
    sub = _subs(p, "action", "ACTION")
    a = sub.add_parser("add", help="register a policy")
    a.add_argument("policy_name", metavar="NAME")
    a.add_argument("--rule", required=True, choices=POLICY_RULES, help="what the policy checks")
    a.add_argument("--target", default=None, metavar="TOOL", help="the tool it applies to")
    a.add_argument(
        "--key", default=None, help="the parameter (deny_tool_param, require_approval) or state key"
    )
    a.add_argument(
        "--pattern",
        default=None,
        help="deny_tool_param, require_approval: a value containing this",
    )
    g = a.add_mutually_exclusive_group()
    g.add_argument("--value", default=None, help="require_state: the value, as a string")
    g.add_argument("--value-json", default=None, help="require_state: the value, as JSON")
    a.set_defaults(func=cmd_tools.policy_add)
    ls = sub.add_parser("list", help="the policies, in registration order")
    ls.set_defaults(func=cmd_tools.policy_list)
    r = sub.add_parser("remove", help="remove every policy of that name")
    r.add_argument("policy", metavar="NAME")
    r.set_defaults(func=cmd_tools.policy_remove)


CELL_DESCRIPTION = """\
Cell forms of %car:
  %%car run INTENT      run the cell as one recorded turn of a new run; the run completes
                        with success (or failure if the cell raises, which still raises)
  %%car browser         the cell is a browser script: JSON {"operations": [{"op": ...}, ...]}
  %%car propose [--run] the cell is a JSON proposal {"actions": [...]}: verify it (levels,
                        issues, conflicts) and, only with --run, execute it
  %%car infer           the cell is a prompt for a model of this server (--model M, --context
                        QUERY injects the notebook's memory for QUERY and shows it)
"""


def build_cell_parser() -> Parser:
    root = Parser(prog="%%car", description=CELL_DESCRIPTION)
    cmd = _subs(root, "command", "COMMAND")
    r = cmd.add_parser("run", help="bracket this cell in a run")
    r.add_argument("intent", nargs="+", metavar="INTENT")
    r.add_argument(
        "--agent-name",
        default=None,
        metavar="NAME",
        help='owner label when no agent is bound (default "notebook")',
    )
    r.set_defaults(func=cmd_runs.bracket)
    b = cmd.add_parser("browser", help="run the cell's JSON script in the session's browser")
    b.add_argument("--width", type=int, default=None, help="viewport width")
    b.add_argument("--height", type=int, default=None, help="viewport height")
    b.set_defaults(func=cmd_browser.script)
    i = cmd.add_parser("infer", help="send the cell as a prompt to a model of this server")
    i.add_argument("--model", default=None, metavar="M", help="model name (default: the default)")
    i.add_argument(
        "--context", default=None, metavar="QUERY", help="inject the memory context of QUERY"
    )
    i.add_argument("--system", default=None, metavar="TEXT", help="a system prompt")
    i.set_defaults(func=cmd_model.infer)
    pr = cmd.add_parser(
        "propose",
        help="verify the cell's JSON proposal; execute it with --run",
        description='The cell is a proposal (agent IR): {"actions": [{"id", "type": '
        '"tool_call" | "state_write" | ..., ...}]}. It is verified as the notebook\'s '
        "session (execution levels, issues, write conflicts; nothing runs) and, with --run, "
        "executed: each action's status, output, time and error.",
    )
    pr.add_argument("--run", action="store_true", help="execute it after verifying")
    pr.set_defaults(func=cmd_tools.propose)
    return root
