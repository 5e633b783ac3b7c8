"""Script validation: bad scripts are rejected with the index and field named, before any run."""

from __future__ import annotations

import json

import pytest

from carnb.browser import validate_script
from carnb.browser.script import validate_viewport
from carnb.errors import INVALID_PARAMS, InvalidParams


def rejects(script: object) -> str:
    with pytest.raises(InvalidParams) as info:
        validate_script(script)
    assert info.value.code == INVALID_PARAMS
    return info.value.message


def test_accepts_object_and_json_string_and_fills_defaults() -> None:
    script = {
        "operations": [
            {"op": "navigate", "url": "http://127.0.0.1:9/"},
            {"op": "observe"},
            {"op": "click", "element_id": "el_3"},
            {"op": "type", "element_id": "el_4", "text": ""},
            {"op": "scroll", "delta_y": -120.5},
            {"op": "keypress", "key": "Enter", "modifiers": ["ctrl", "Shift"]},
            {"op": "wait", "condition": "url_changed", "timeout_ms": 500},
            {"op": "screenshot", "extra": "ignored"},
        ]
    }
    ops = validate_script(script)
    assert ops == validate_script(json.dumps(script))
    assert [o["op"] for o in ops] == [o["op"] for o in script["operations"]]
    assert ops[5]["modifiers"] == ["Control", "Shift"]
    assert ops[6]["timeout_ms"] == 500
    assert ops[7] == {"op": "screenshot", "full_page": False}
    assert validate_script({"operations": []}) == []


def test_missing_field_names_index_field_and_op() -> None:
    msg = rejects({"operations": [{"op": "observe"}, {"op": "observe"}, {"op": "click"}]})
    assert msg == "invalid params: operations[2].element_id is required for click"
    assert "operations[0].text is required for type" in rejects(
        {"operations": [{"op": "type", "element_id": "el_1"}]}
    )
    assert "operations[0].url is required for navigate" in rejects(
        {"operations": [{"op": "navigate"}]}
    )
    assert "operations[0].op is required" in rejects({"operations": [{"url": "x"}]})


def test_not_an_object() -> None:
    assert rejects(None).startswith("invalid params: script is required")
    for bad in (42, ["navigate"], "not json {", '"a string"'):
        msg = rejects(bad)
        assert msg.startswith("invalid params: script"), msg
    assert "script.operations is required" in rejects({"ops": []})
    assert "script.operations must be an array" in rejects({"operations": {"op": "observe"}})
    assert "operations[0] must be an object" in rejects({"operations": ["observe"]})


def test_unknown_op_lists_known_ones() -> None:
    msg = rejects({"operations": [{"op": "observe"}, {"op": "teleport"}]})
    assert "operations[1].op 'teleport' is unknown" in msg
    assert "navigate" in msg and "screenshot" in msg


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        ({"op": "scroll", "delta_y": "100"}, "operations[0].delta_y must be a number, got string"),
        ({"op": "scroll", "delta_y": True}, "operations[0].delta_y must be a number, got boolean"),
        ({"op": "click", "element_id": 7}, "operations[0].element_id must be a string, got number"),
        ({"op": "click", "element_id": "button"}, "operations[0].element_id must be an element id"),
        ({"op": "type", "element_id": "el_1", "text": 5}, "operations[0].text must be a string"),
        ({"op": "navigate", "url": 3}, "operations[0].url must be a string"),
        ({"op": "navigate", "url": "example.com"}, "operations[0].url must be an absolute URL"),
        ({"op": "navigate", "url": "file:///etc/passwd"}, "scheme 'file' is not allowed"),
        ({"op": "keypress", "key": ""}, "operations[0].key must not be empty"),
        ({"op": "keypress", "key": "a", "modifiers": ["Hyper"]}, "operations[0].modifiers[0]"),
        (
            {"op": "keypress", "key": "a", "modifiers": 3},
            "operations[0].modifiers must be an array",
        ),
        ({"op": "wait", "condition": "forever"}, "operations[0].condition must be one of"),
        ({"op": "wait", "condition": "page_loaded", "timeout_ms": -5}, "operations[0].timeout_ms"),
        ({"op": "screenshot", "full_page": "yes"}, "operations[0].full_page must be true or false"),
        ({"op": 5}, "operations[0].op must be a string"),
    ],
)
def test_wrong_types(op: dict[str, object], fragment: str) -> None:
    msg = rejects({"operations": [op]})
    assert msg.startswith("invalid params: ")
    assert fragment in msg


def test_first_bad_op_is_reported_even_after_good_ones() -> None:
    ops = [{"op": "navigate", "url": "http://127.0.0.1:1/"}] * 3 + [{"op": "scroll"}]
    assert "operations[3].delta_y is required for scroll" in rejects({"operations": ops})


def test_viewport_bounds() -> None:
    assert validate_viewport(800, 600) == (800, 600)
    assert validate_viewport(800.0, 600) == (800, 600)
    assert validate_viewport(None, None) == (1280, 720)
    for w, h, frag in [
        (0, 600, "width"),
        (800, 10**6, "height"),
        ("800", 600, "width"),
        (True, 600, "width"),
    ]:
        with pytest.raises(InvalidParams) as info:
            validate_viewport(w, h)
        assert info.value.message.startswith(f"invalid params: {frag}")
