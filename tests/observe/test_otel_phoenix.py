"""Runs exported live to a real Phoenix server over OTLP/HTTP, read back with Phoenix's own
client: one trace per run, the model calls and tools as its children with the GenAI and
OpenInference attributes and token counts, no content unless asked for; an endpoint that is
down drops spans with a count and does not slow a run."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.conftest import agent_auth

pytest.importorskip("opentelemetry.sdk", reason="install the otel extra: pip install -e .[otel]")
phoenix_client = pytest.importorskip("phoenix.client", reason="pip install -e .[test]")

SECRET_PROMPT = "the launch code is 0000"
ANSWER = "forty-two"


def usage_model(request: dict[str, Any]) -> dict[str, Any]:
    return {"text": ANSWER, "usage": {"input_tokens": 120, "output_tokens": 30}}


def one_run(rt, connect_client) -> str:
    alice = connect_client(agent_auth(rt, "alice"))
    rid: str = alice.call("runs.start", {"intent": "answer a question"})["run_id"]
    alice.call("infer", {"prompt": SECRET_PROMPT})
    alice.call(
        "runs.record_model_turn",
        {
            "run_id": rid,
            "model_id": "planner",
            "assistant_text": "calling add",
            "token_usage": {"input_tokens": 40, "output_tokens": 8},
            "duration_ms": 12,
        },
    )
    turns = [
        {"action_id": "a1", "tool": "add", "parameters": {"a": 1}, "status": "succeeded"},
        {"action_id": "a2", "tool": "rm", "status": "failed", "policy_rejected": True},
    ]
    alice.call("runs.record_turns", {"run_id": rid, "turns": turns})
    alice.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    return rid


def spans_of(phoenix, rid: str, want: int) -> list[dict[str, Any]]:
    """The spans of run ``rid`` in Phoenix, once ``want`` of them have arrived."""
    client = phoenix_client.Client(base_url=phoenix.url)
    deadline = time.monotonic() + 30
    while True:
        every = client.spans.get_spans(project_identifier="default", limit=1000)
        mine = [s for s in every if s["attributes"].get("carnb.run_id") == rid]
        if len(mine) >= want or time.monotonic() > deadline:
            return mine
        time.sleep(0.3)


@pytest.fixture
def runtime(make_runtime, phoenix):
    rt = make_runtime(agents=("alice",), browser=False, otel_endpoint=phoenix.traces)
    rt.register_model(usage_model, name="m1")
    return rt


def test_a_run_reaches_phoenix_as_one_trace_with_gen_ai_attributes(
    runtime, connect_client, phoenix
) -> None:
    rid = one_run(runtime, connect_client)
    assert runtime.services.spans.flush()
    spans = spans_of(phoenix, rid, 5)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_kind.setdefault(s["span_kind"], []).append(s)
    (root,) = by_kind["AGENT"]
    assert root["parent_id"] is None and root["attributes"]["gen_ai.agent.name"] == "alice"
    assert root["attributes"]["carnb.run.status"] == "completed"
    assert {s["context"]["trace_id"] for s in spans} == {root["context"]["trace_id"]}
    children = [s for s in spans if s is not root]
    assert len(children) == 4
    assert all(s["parent_id"] == root["context"]["span_id"] for s in children)
    llm = {s["attributes"]["gen_ai.request.model"]: s["attributes"] for s in by_kind["LLM"]}
    assert set(llm) == {"m1", "planner"}
    assert llm["m1"]["gen_ai.usage.input_tokens"] == 120
    assert llm["m1"]["gen_ai.usage.output_tokens"] == 30
    assert llm["m1"]["llm.token_count.total"] == 150
    assert llm["m1"]["gen_ai.operation.name"] == "chat"
    assert llm["planner"]["llm.token_count.prompt"] == 40
    tools = {s["attributes"]["gen_ai.tool.name"]: s for s in by_kind["TOOL"]}
    assert set(tools) == {"add", "rm"}
    assert tools["add"]["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert tools["rm"]["status_code"] == "ERROR"
    assert tools["rm"]["attributes"]["error.type"] == "rejected_by_policy"
    # content is off by default: neither the prompt, the answer nor tool parameters left
    exported = repr(spans)
    for content in (SECRET_PROMPT, ANSWER, "calling add", "answer a question", "'a': 1"):
        assert content not in exported
    assert runtime.token not in exported and runtime.host_token not in exported
    status = runtime.call("otel.status")
    assert status["spans_sent"] >= 5 and status["spans_dropped"] == 0
    assert status["last_error"] is None


def test_content_is_exported_only_when_asked_for(make_runtime, connect_client, phoenix) -> None:
    rt = make_runtime(
        agents=("alice",), browser=False, otel_endpoint=phoenix.traces, otel_content=True
    )
    rt.register_model(usage_model, name="m1")
    c = connect_client(agent_auth(rt, "alice"), url=rt.url)
    rid = c.call("runs.start", {"intent": "say it"})["run_id"]
    c.call("infer", {"prompt": SECRET_PROMPT})
    c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    assert rt.services.spans.flush()
    spans = spans_of(phoenix, rid, 2)
    (llm,) = [s for s in spans if s["span_kind"] == "LLM"]
    assert SECRET_PROMPT in llm["attributes"]["input.value"]
    assert llm["attributes"]["output.value"] == ANSWER
    assert rt.token not in repr(spans)


def test_an_endpoint_that_is_down_drops_spans_and_never_slows_a_run(
    make_runtime, connect_client
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plain = make_runtime(agents=("alice",), browser=False)
    down = make_runtime(
        agents=("alice",), browser=False, otel_endpoint=f"http://127.0.0.1:{port}/v1/traces"
    )

    def timed(rt) -> float:
        c = connect_client(agent_auth(rt, "alice"), url=rt.url)
        rid = c.call("runs.start", {"intent": "busy"})["run_id"]
        started = time.perf_counter()
        for i in range(20):
            c.call("runs.record_turns", {"run_id": rid, "turns": [{"tool": "t", "n": i}] * 10})
        c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
        return time.perf_counter() - started

    baseline, exporting = timed(plain), timed(down)
    assert exporting < baseline * 3 + 0.5, (baseline, exporting)
    assert down.services.spans.flush(timeout=30)
    status = down.call("otel.status")
    assert status["spans_sent"] == 0 and status["spans_dropped"] >= 200
    assert status["last_error"] and f"127.0.0.1:{port}" in status["last_error"]
