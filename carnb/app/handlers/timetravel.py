"""``runs.replay`` and ``runs.fork``: time travel over recorded runs (carnb's own methods; the
real daemon has neither). What is recorded is :mod:`carnb.app.recording`; the trace as steps
:mod:`carnb.app.steps`; the replay :mod:`carnb.app.replay`; the fork's loop driver
:mod:`carnb.app.handlers.forks`."""

from __future__ import annotations

import json
from typing import Any

from carnb.app.handlers.forks import (
    ForkPlan,
    agent_session,
    drive,
    parse_answer,
    prepare_request,
)
from carnb.app.handlers.inference import context_source
from carnb.app.methods import Method, Params
from carnb.app.params import opt_int, opt_str, req_str
from carnb.app.ports import Record, RunLog
from carnb.app.replay import LiveTool, replay
from carnb.app.schedule import in_thread
from carnb.app.services import Services
from carnb.app.steps import model_steps, require_steps
from carnb.app.toolhub import SessionRunner
from carnb.config import FORK_MAX_TURNS, FORK_TURN_LIMIT, MAX_RUNNING_FORKS
from carnb.errors import CarnbError, InvalidParams, NotFound, TooManyForks
from carnb.protocol.session import ClientSession


def _store(svc: Services) -> RunLog:
    assert svc.runs is not None  # the table offers runs.* only with a run store
    return svc.runs


async def _trace(svc: Services, s: ClientSession, run_id: str) -> Record:
    """The whole trace of a run ``s`` may read, read in a worker thread."""
    trace = await in_thread(_store(svc).get_trace, s, run_id)
    if trace.get("not_found"):
        raise NotFound(f"run not found: {run_id} (unknown, or not yours to read)")
    return trace


async def runs_replay(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    rerun = p.get("rerun_tools", False)
    if not isinstance(rerun, bool):
        raise InvalidParams("rerun_tools must be a boolean")
    trace = await _trace(svc, s, run_id)
    steps = await in_thread(model_steps, trace["records"])
    require_steps(run_id, steps)
    agent = next(
        (
            t
            for t in svc.sessions
            if t.agent_id == trace["agent_id"] and t is not s and not t.closed
        ),
        None,
    )
    policies = svc.tools.of(agent if agent is not None else s).policies.copy()
    live = _live_tools(svc, s, trace["agent_id"]) if rerun else {}
    return await replay(run_id, steps, policies, live)


def _live_tools(svc: Services, s: ClientSession, agent_id: Any) -> dict[str, LiveTool]:
    """The tools a replay may run again, by name: a still-connected session of the run's agent
    registered (called with ``tools.execute``), then the caller's notebook tools over them, in
    the order a fork reaches them."""
    live: dict[str, LiveTool] = {}
    agent = agent_session(svc, agent_id, s)
    if agent is not None:
        runner = SessionRunner(svc.tools, agent, {})

        async def remote(
            tool: str, parameters: dict[str, Any], action_id: str, attempt: int
        ) -> Any:
            return await runner.call(
                tool, parameters, action_id=action_id, attempt=attempt, timeout_ms=None
            )

        for name in svc.tools.of(agent).schemas.names():
            live[name] = remote
    _, local = svc.tools.toolset(s)
    for name, tool in local.items():

        async def call(
            _: str, parameters: dict[str, Any], _id: str, _attempt: int, tool: Any = tool
        ) -> Any:
            return await svc.tools.run_local(tool, parameters, None)

        live[name] = call
    return live


def _tool_outputs(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParams("tool_outputs must be an object {call id or tool name: output}")
    return dict(raw)


def _answer(raw: object) -> dict[str, Any] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = raw
        raw = decoded if isinstance(decoded, dict) else raw
    try:
        return parse_answer(raw)
    except CarnbError as exc:
        raise InvalidParams(f"answer: {exc.message}") from None


async def runs_fork(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    at = opt_int(p, "at", None, minimum=1)
    if at is None:
        raise InvalidParams("at is required: the model turn to fork at (the first is 1)")
    max_turns = opt_int(p, "max_turns", FORK_MAX_TURNS, minimum=1, maximum=FORK_TURN_LIMIT)
    assert max_turns is not None
    model = opt_str(p, "model", None)
    system = opt_str(p, "system", None)
    answer = _answer(p.get("answer"))
    if model is not None and answer is not None:
        raise InvalidParams("give model or answer, not both: an answer needs no model")
    if svc.forks.running.get(s.client_id, 0) >= MAX_RUNNING_FORKS:
        raise TooManyForks(f"this session already drives {MAX_RUNNING_FORKS} forks")
    trace = await _trace(svc, s, run_id)
    steps = await in_thread(model_steps, trace["records"])
    require_steps(run_id, steps)
    if at > len(steps):
        raise InvalidParams(f"at is {at}, but run {run_id} has {len(steps)} model turns")
    plan = ForkPlan(
        parent=trace,
        steps=steps,
        at=at,
        model=model,
        system=system,
        answer=answer,
        tool_outputs=_tool_outputs(p.get("tool_outputs")),
        max_turns=max_turns,
    )
    prepare_request(plan)
    if answer is None:
        svc.models.resolve(plan.request.get("model"))  # an unknown model fails now
    forked_from = {"run_id": run_id, "turn": at}
    started = await in_thread(
        lambda: _store(svc).start(
            s,
            intent=trace["intent"],
            agent_id=trace["agent_id"],
            forked_from=forked_from,
        )
    )
    svc.forks.start(s.client_id, drive(svc, s, plan, started["run_id"], context_source(svc, s)))
    return {
        "run_id": started["run_id"],
        "agent_id": started["agent_id"],
        "forked_from": forked_from,
        "model": None if answer is not None else plan.request.get("model"),
        "rebuilt_request": plan.rebuilt,
        "copied_turns": at - 1,
    }


METHODS = (
    Method(
        "runs.replay",
        runs_replay,
        mode="task",
        role="owner",
        needs="runs",
        summary="(carnb) Re-drive a recorded run from its recording (no model call, no tool "
        "unless rerun_tools) and report where it diverges",
        params={
            "run_id": "string",
            "rerun_tools": "boolean? (run the caller's notebook tools and the connected "
            "agent's tools again and compare)",
        },
        result="{run_id, model_turns, tool_steps, recorded_requests, model_calls: 0, "
        "tools_rerun, tool_retries, tool_ms, reproduced, divergences: [{turn, kind, message}], "
        "replay_ms}",
    ),
    Method(
        "runs.fork",
        runs_fork,
        mode="task",
        role="owner",
        needs="runs",
        summary="(carnb) A new run forked from a model turn of a recorded run, with another "
        "model, system prompt, answer or tool outputs; driven by carnb in the background",
        params={
            "run_id": "string",
            "at": "integer (the model turn, the first is 1)",
            "model": "string? (a registered model; default: the recorded one)",
            "system": "string? (replaces the system prompt)",
            "answer": "string | {text?, tool_calls?}? (used instead of a model call at `at`)",
            "tool_outputs": "{call id or tool name: output}?",
            "max_turns": f"integer? (model turns from `at`, default {FORK_MAX_TURNS}, "
            f"at most {FORK_TURN_LIMIT})",
        },
        result="{run_id, agent_id, forked_from: {run_id, turn}, model, rebuilt_request, "
        "copied_turns}",
    ),
)
