"""The one table from error type to JSON-RPC code, and the one serialiser of typed errors."""

from __future__ import annotations

import ast
import json
import pathlib

import pytest

from carnb import errors
from carnb.errors import RPC_CODES, CarnbError, rpc_code
from carnb.protocol.jsonrpc import error_reply

EXPECTED = [
    (errors.ParseError, -32700),
    (errors.InvalidRequest, -32600),
    (errors.MethodNotFound, -32601),
    (errors.InvalidParams, -32602),
    (errors.ReplyTooLarge, -32602),
    (errors.StateFull, -32602),
    (errors.RunnerTooLarge, -32602),
    (errors.NothingToReplay, -32602),
    (errors.AuthRequired, -32001),
    (errors.HandshakeRequired, -32005),
    (errors.VersionMismatch, -32006),
    (errors.ContentRefused, -32007),
    (errors.CapabilityUnsupported, -32008),
    # docs/protocol.md: failed auth and forbidden calls are handler failures (-32603)
    (errors.AuthFailed, -32603),
    (errors.Forbidden, -32603),
    (errors.NotFound, -32603),
    (errors.PathRejected, -32603),
    (errors.BrowserUnavailable, -32603),
    (errors.LoopThreadError, -32603),
    (errors.InternalError, -32603),
    (errors.AgentElsewhere, -32603),
    (errors.SupervisionRefused, -32603),
    (errors.TooManyProposals, -32603),
    (errors.TooManyForks, -32603),
    (errors.ModelNotFound, -32603),
    (errors.IntentGone, -32603),
    (errors.RunTerminal, -32603),
    (errors.PoolClosed, -32603),
    (errors.GraphLimit, -32603),
    (errors.OtelUnavailable, -32603),
    (errors.ToolError, -32603),
    (errors.ToolTimeout, -32603),
    (errors.Unreachable, -32603),
    (errors.ModelFailed, -32603),
    (errors.ModelTimeout, -32603),
    (errors.RunnerGone, -32603),
    (errors.CallFailed, -32603),
    (errors.CallTimeout, -32603),
    (errors.PeerGone, -32603),
    (errors.ChatRefused, -32603),
    (errors.StoreUnavailable, -32603),
    (errors.SchemaError, -32603),
    (errors.GraphBusy, -32603),
    (errors.FactIdTaken, -32603),
    (errors.CallerFault, -32603),
    (errors.ServerFault, -32603),
    (errors.OutsideFault, -32603),
    (CarnbError, -32603),
]
BLAMES = (errors.CallerFault, errors.ServerFault, errors.OutsideFault)


@pytest.mark.parametrize(("cls", "code"), EXPECTED, ids=[c.__name__ for c, _ in EXPECTED])
def test_each_error_type_is_answered_with_its_code(cls: type[CarnbError], code: int) -> None:
    error = cls("invalid params: x") if issubclass(cls, errors.InvalidParams) else cls("boom")
    assert rpc_code(error) == code
    assert error.code == code
    assert json.loads(error_reply(1, error))["error"]["code"] == code


def test_every_error_type_carnb_defines_is_covered() -> None:
    defined = {
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, CarnbError) and v.__module__ == errors.__name__
    }
    assert defined == {cls for cls, _ in EXPECTED}


def test_every_error_type_carnb_raises_has_exactly_one_blame() -> None:
    for cls, _ in EXPECTED:
        if cls is CarnbError or cls in BLAMES:
            continue
        assert [b.__name__ for b in BLAMES if issubclass(cls, b)] in (
            ["CallerFault"],
            ["ServerFault"],
            ["OutsideFault"],
        ), cls


def test_the_caller_is_blamed_for_what_it_sent_and_others_for_their_failures() -> None:
    assert issubclass(errors.InvalidParams, errors.CallerFault)
    assert issubclass(errors.Forbidden, errors.CallerFault)
    assert issubclass(errors.NotFound, errors.CallerFault)
    assert issubclass(errors.ToolError, errors.OutsideFault)
    assert issubclass(errors.ModelFailed, errors.OutsideFault)
    assert issubclass(errors.StoreUnavailable, errors.OutsideFault)
    assert issubclass(errors.InternalError, errors.ServerFault)
    # a model call is never reported as a tool's failure, nor the reverse
    assert not issubclass(errors.ModelFailed, errors.ToolError)
    assert not issubclass(errors.ToolError, errors.ModelFailed)


def test_no_error_type_is_defined_outside_carnb_errors() -> None:
    root = pathlib.Path(errors.__file__).parent
    names = {cls.__name__ for cls, _ in EXPECTED}
    strays = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                bases |= {b.attr for b in node.bases if isinstance(b, ast.Attribute)}
                if bases & names:
                    strays.append(f"{path.relative_to(root)}: {node.name}")
    assert strays == []


def test_carnb_never_raises_the_bare_root_only_a_type_with_a_blame() -> None:
    root = pathlib.Path(errors.__file__).parent
    untyped = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            if name == "CarnbError":
                untyped.append(f"{path.relative_to(root)}:{node.lineno}")
    assert untyped == []


def test_a_subclass_takes_its_nearest_listed_base_code() -> None:
    class RunTerminalLike(CarnbError):
        pass

    class BadScript(errors.InvalidParams):
        pass

    assert RunTerminalLike("ended").code == -32603
    assert BadScript("script").code == -32602
    assert RunTerminalLike not in RPC_CODES


def test_the_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        RPC_CODES[errors.NotFound] = -32601  # type: ignore[index]


def test_error_reply_carries_message_and_data_and_drops_data_that_is_not_json() -> None:
    forbidden = errors.Forbidden("forbidden: no", data={"reason": "forbidden"})
    assert json.loads(error_reply("a", forbidden)) == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32603, "message": "forbidden: no", "data": {"reason": "forbidden"}},
    }
    odd = errors.NotFound("gone", data={1, 2})
    assert json.loads(error_reply(2, odd))["error"] == {"code": -32603, "message": "gone"}


def test_invalid_params_names_the_field_once() -> None:
    assert errors.InvalidParams("k is required").message == "invalid params: k is required"
    assert errors.InvalidParams("invalid params: k").message == "invalid params: k"
