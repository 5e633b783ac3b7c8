"""Protocol core: text in, text out, no event loop."""

from __future__ import annotations

import json

import pytest

from carnb.errors import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, InvalidParams
from carnb.protocol.jsonrpc import (
    Invalid,
    Notification,
    Request,
    Response,
    capped_result_text,
    encoded_size,
    error_text,
    params_object,
    parse_frame,
    result_text,
)


def err(msg: Invalid) -> dict:
    return json.loads(msg.reply)["error"]


def test_request_is_parsed_with_id_method_and_params() -> None:
    msg = parse_frame('{"jsonrpc":"2.0","id":7,"method":"state.get","params":{"key":"a"}}')
    assert msg == Request(7, "state.get", {"key": "a"})


def test_string_ids_and_missing_jsonrpc_field_are_accepted() -> None:
    assert parse_frame('{"id":"abc","method":"x"}') == Request("abc", "x", None)


def test_message_without_id_is_a_notification() -> None:
    assert parse_frame('{"jsonrpc":"2.0","method":"state.keys"}') == Notification(
        "state.keys", None
    )


@pytest.mark.parametrize("text", ["{bad", "", "nul", '{"a":1', "\x00"])
def test_invalid_json_is_a_parse_error_with_null_id(text: str) -> None:
    msg = parse_frame(text)
    assert isinstance(msg, Invalid)
    assert json.loads(msg.reply)["id"] is None
    assert err(msg)["code"] == PARSE_ERROR
    assert err(msg)["message"].startswith("parse error")


@pytest.mark.parametrize(
    "text",
    [
        ' {"id":1,"method":"x"}',
        '{"id":1,"method":"x"}\n',
        '\t{"id":1,"method":"x"} \r\n',
    ],
)
def test_whitespace_around_the_object_is_json_too(text: str) -> None:
    assert parse_frame(text) == Request(1, "x", None)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('{"id":1,"method":"x"}{}', "Extra data"),
        ('{"id":1,"method":"x"} 7', "Extra data"),
        ('{"id":1,"method":"x",}', "Expecting property name"),
        ('{"id":1e400,"method":"x"}', "out of range"),
        ('{"id":NaN,"method":"x"}', "NaN is not a JSON number"),
    ],
)
def test_a_frame_that_starts_as_an_object_and_is_not_json_is_a_parse_error(
    text: str, detail: str
) -> None:
    msg = parse_frame(text)
    assert isinstance(msg, Invalid)
    assert err(msg)["code"] == PARSE_ERROR
    assert detail in err(msg)["message"]


def test_big_integers_and_exact_floats_come_back_as_sent() -> None:
    msg = parse_frame('{"id":1,"method":"x","params":{"n":123456789012345678901234567890}}')
    assert isinstance(msg, Request)
    n = msg.params["n"]
    assert result_text(1, {"n": n, "f": 0.1, "e": 1e16}) == (
        '{"jsonrpc":"2.0","id":1,"result":{"n":123456789012345678901234567890,"f":0.1,"e":1e+16}}'
    )


def test_deeply_nested_json_is_a_parse_error_not_a_crash() -> None:
    msg = parse_frame("[" * 100_000 + "]" * 100_000)
    assert isinstance(msg, Invalid)
    assert err(msg)["code"] == PARSE_ERROR
    assert "nesting too deep" in err(msg)["message"]


def test_batch_is_refused_with_a_clear_message() -> None:
    msg = parse_frame('[{"jsonrpc":"2.0","id":1,"method":"a"}]')
    assert isinstance(msg, Invalid)
    assert err(msg)["code"] == INVALID_REQUEST
    assert "batch" in err(msg)["message"]


@pytest.mark.parametrize("text", ["1", '"s"', "null", "true"])
def test_json_that_is_not_an_object_is_an_invalid_request(text: str) -> None:
    msg = parse_frame(text)
    assert isinstance(msg, Invalid)
    assert err(msg)["code"] == INVALID_REQUEST


def test_response_objects_from_the_client_are_responses() -> None:
    msg = parse_frame('{"jsonrpc":"2.0","id":"cb-4","error":{"code":"oops","message":"x"}}')
    assert msg == Response("cb-4", None, {"code": "oops", "message": "x"})
    assert parse_frame('{"jsonrpc":"2.0","id":4,"result":null}') == Response(4, None, None)
    odd = parse_frame('{"jsonrpc":"2.0","id":4,"error":"boom"}')
    assert isinstance(odd, Response) and odd.error == {"message": "malformed error object: string"}


def test_an_object_with_both_result_and_error_is_an_invalid_request() -> None:
    msg = parse_frame('{"jsonrpc":"2.0","id":4,"result":1,"error":{}}')
    assert isinstance(msg, Invalid) and json.loads(msg.reply)["error"]["code"] == INVALID_REQUEST


@pytest.mark.parametrize(
    "obj",
    [
        {"id": 1, "method": 5},
        {"id": 1, "method": ""},
        {"id": {"x": 1}, "method": "a"},
        {"id": True, "method": "a"},
        {"id": 1, "jsonrpc": "1.0", "method": "a"},
        {"id": 1},
    ],
)
def test_malformed_requests_are_invalid_requests(obj: dict) -> None:
    msg = parse_frame(json.dumps(obj))
    assert isinstance(msg, Invalid)
    assert err(msg)["code"] == INVALID_REQUEST


def test_error_codes_are_json_integers_and_data_is_optional() -> None:
    reply = json.loads(error_text(3, -32601, "unknown method: x"))
    assert reply == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": -32601, "message": "unknown method: x"},
    }
    with_data = json.loads(error_text(3, -32602, "m", {"field": "k"}))
    assert with_data["error"]["data"] == {"field": "k"}


def test_result_that_is_not_json_becomes_an_error_reply() -> None:
    reply = json.loads(result_text(1, {"x": float("nan")}))
    assert reply["error"]["code"] == -32603
    reply = json.loads(result_text(2, {1, 2}))
    assert reply["error"]["code"] == -32603
    loop: list[object] = []
    loop.append(loop)
    reply = json.loads(result_text(3, {"a": loop}))
    assert reply["id"] == 3 and reply["error"]["code"] == -32603
    # the encoder keeps nothing from a failed call: the next reply is whole
    assert json.loads(result_text(4, {"a": [1]})) == {
        "jsonrpc": "2.0",
        "id": 4,
        "result": {"a": [1]},
    }


def test_unicode_survives_a_round_trip() -> None:
    assert json.loads(result_text(1, "héllo ☃"))["result"] == "héllo ☃"


def test_params_object_accepts_null_and_objects_and_refuses_arrays() -> None:
    assert params_object(None) == {}
    assert params_object({"a": 1}) == {"a": 1}
    with pytest.raises(InvalidParams) as info:
        params_object([1, 2])
    assert info.value.code == INVALID_PARAMS
    assert "named fields" in info.value.message


# -- limits on hostile frames -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"jsonrpc":"2.0","id":1,"method":"m","params":{"k":"\\ud800"}}',
        '{"jsonrpc":"2.0","id":1,"method":"m","params":{"\\uDC00":1}}',
        '{"jsonrpc":"2.0","id":1,"method":"m","params":["a\\ud83d"]}',
    ],
)
def test_a_lone_surrogate_is_a_parse_error(text: str) -> None:
    msg = parse_frame(text)
    assert isinstance(msg, Invalid) and msg.error.code == PARSE_ERROR


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine() -> None:
    pair = parse_frame('{"jsonrpc":"2.0","id":1,"method":"m","params":{"e":"\\ud83d\\ude00"}}')
    assert isinstance(pair, Request) and pair.params == {"e": "\U0001f600"}
    literal = parse_frame('{"jsonrpc":"2.0","id":1,"method":"m","params":{"e":"\\\\ud800"}}')
    assert isinstance(literal, Request) and literal.params == {"e": "\\ud800"}


@pytest.mark.parametrize("value", ["abc", 'a"b\\c', "é", "x\n\x01", "", [1, "a", {"b": None}]])
def test_encoded_size_is_the_bytes_of_compact_json(value: object) -> None:
    expected = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    assert encoded_size(value) == expected


def test_a_capped_result_stops_at_the_cap() -> None:
    assert capped_result_text(1, "x" * 100, 50) is None
    text = capped_result_text(1, ["x" * 10], 1000)
    assert text is not None and json.loads(text) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": ["x" * 10],
    }
    assert result_text(1, [1, 2], in_pieces=True) == result_text(1, [1, 2])
