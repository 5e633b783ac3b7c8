"""A model for ``serve --model`` in the reliability tests: it stands for the notebook's own."""

from __future__ import annotations

from typing import Any


def notebook_model(request: dict[str, Any]) -> str:
    return "notebook model"
