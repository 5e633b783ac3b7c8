"""``carnb.model``, ``%car model list|default`` and ``%%car infer`` in an IPython shell."""

from __future__ import annotations

from typing import Any

import pytest

import carnb
from carnb.kernel.calls import CarMagicError

pytestmark = pytest.mark.kernel


def test_model_list_default_and_infer_with_context(loaded: Any) -> None:
    @carnb.model(name="stand-in")
    def stand_in(request: dict[str, Any]) -> dict[str, Any]:
        return {"text": f"saw {len(request['messages'])} messages", "usage": {"input_tokens": 3}}

    carnb.model(lambda r: "other", name="other")
    listed = loaded.run_line_magic("car", "model list")
    assert [m["name"] for m in listed.models] == ["stand-in", "other"]
    assert listed.default == "stand-in" and "stand-in" in listed.text()
    loaded.run_line_magic("car", "memory add deploy 'never deploy on fridays' --kind constraint")
    result = loaded.run_cell_magic("car", "infer --context deploy", "may I deploy today?\n")
    assert result.reply["text"] == "saw 2 messages"  # the injected system message + the prompt
    assert "never deploy on fridays" in result.context
    assert "context injected" in result.text() and "3 in / 0 out" in result.text()
    loaded.run_line_magic("car", "model default other")
    assert loaded.run_cell_magic("car", "infer", "hi").reply["text"] == "other"
    assert loaded.run_cell_magic("car", "infer --model stand-in", "hi").reply["model_used"] == (
        "stand-in"
    )


def test_infer_errors_are_one_line(loaded: Any) -> None:
    with pytest.raises(CarMagicError, match="no model is registered"):
        loaded.run_cell_magic("car", "infer", "hi")
    carnb.model(lambda r: 1 / 0, name="broken")
    with pytest.raises(CarMagicError, match="model 'broken' raised ZeroDivisionError"):
        loaded.run_cell_magic("car", "infer", "hi")
    with pytest.raises(CarMagicError, match="unknown model 'nope'; registered models: broken"):
        loaded.run_line_magic("car", "model default nope")
    with pytest.raises(CarMagicError, match="the cell is empty"):
        loaded.run_cell_magic("car", "infer", "  \n")
