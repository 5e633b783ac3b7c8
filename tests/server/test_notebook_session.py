"""The notebook's session API goes through the dispatcher like a socket's calls: its ``infer``
is the ``infer`` method (metered, gated), and the methods that carry Python objects are the
notebook's own (a socket never sees them)."""

from __future__ import annotations

import json

import pytest

from tests.compat import loopmodels
from tests.conftest import RpcFailed

NOTEBOOK_METHODS = {
    "notebook.tools.add",
    "notebook.models.add",
    "notebook.models.remove",
    "notebook.supervisors.add",
    "notebook.supervisors.remove",
    "notebook.chat.events",
}


def test_the_notebooks_infer_is_the_infer_method_and_is_metered(runtime, connect_client) -> None:
    runtime.register_model(loopmodels.echo)
    runtime.call("memory.add_fact", {"subject": "deploy", "body": "never on fridays"})
    out = runtime.infer({"prompt": "when?", "context_query": "deploy"})
    # the request the model was given comes back beside the reply, context included
    assert "never on fridays" in out["request"]["context"]
    assert json.loads(out["reply"]["text"])["context"] == out["request"]["context"]
    host = connect_client("host")
    found = host.call("events.query", {"kinds": ["inference_metered"]})
    (event,) = found["events"]
    assert event["data"]["session_id"] == runtime.session.client_id
    assert event["data"]["source"] == "infer"


def test_the_notebooks_infer_fails_as_the_method_does(runtime) -> None:
    runtime.register_model(loopmodels.echo, name="only")
    with pytest.raises(Exception, match="unknown model 'gpt-9'; registered models: only"):
        runtime.infer({"prompt": "x", "model": "gpt-9"})


def test_a_socket_never_sees_nor_calls_the_notebooks_own_methods(runtime, connect_client) -> None:
    host = connect_client("host")
    listed = {m["method"] for m in host.call("capabilities.list")["methods"]}
    schema = {m["method"] for m in host.call("server.schema")["methods"]}
    assert not listed & NOTEBOOK_METHODS and not schema & NOTEBOOK_METHODS
    for name in sorted(NOTEBOOK_METHODS):
        with pytest.raises(RpcFailed) as err:
            host.call(name, {"key": "x", "name": "x", "tool": "x"})
        assert err.value.code == -32601, name
    mine = {m["method"] for m in runtime.call("capabilities.list")["methods"]}
    assert mine >= NOTEBOOK_METHODS


def test_a_notebook_method_refuses_what_is_not_a_python_object_it_takes(runtime) -> None:
    with pytest.raises(Exception, match="invalid params: tool must be a LocalTool"):
        runtime.call("notebook.tools.add", {"tool": {"name": "rm"}})
    with pytest.raises(Exception, match="invalid params: a model needs a name and a callable"):
        runtime.call("notebook.models.add", {"name": "m", "fn": "not callable"})
    assert runtime.models()["models"] == []
