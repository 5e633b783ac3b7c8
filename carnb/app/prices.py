"""The price table: what one model call costs, per million input and output tokens (USD).

The user sets it (``carnb.prices({...})``, ``CarMagics.prices``, ``serve --prices FILE``):
``{model: {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}``; the key ``"*"`` prices every
model the table does not name. A model the table does not price costs ``None``: unpriced, not
free (the reference's rule for ``cost``), and the sums say how many calls were unpriced.

Thread-safe: the table is replaced whole, so a reader sees the old table or the new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from carnb.errors import InvalidParams

ANY_MODEL = "*"
RATES = ("input_per_mtok", "output_per_mtok")


def parse_prices(table: object) -> dict[str, dict[str, float]]:
    """A checked copy of a price table; :class:`InvalidParams` names the first bad entry."""
    if not isinstance(table, Mapping):
        raise InvalidParams(
            'prices must be an object like {"model": {"input_per_mtok": 3, "output_per_mtok": 15}}'
        )
    out: dict[str, dict[str, float]] = {}
    for model, rates in table.items():
        if not isinstance(model, str) or not model:
            raise InvalidParams("each price is keyed by a model name (or '*')")
        if not isinstance(rates, Mapping) or set(rates) - set(RATES):
            raise InvalidParams(
                f"prices[{model!r}] must be an object with input_per_mtok and output_per_mtok"
            )
        entry: dict[str, float] = {}
        for rate in RATES:
            value = rates.get(rate, 0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidParams(f"prices[{model!r}].{rate} must be a number >= 0 (USD)")
            entry[rate] = float(value)
        out[model] = entry
    return out


def read_prices(path: Path) -> dict[str, dict[str, float]]:
    """A price table from a JSON file."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidParams(f"price file {path} is not readable JSON: {exc}") from None
    return parse_prices(table)


class PriceTable:
    def __init__(self, table: object = None) -> None:
        self._table: Mapping[str, Mapping[str, float]] = MappingProxyType({})
        if table is not None:
            self.set(table)

    def set(self, table: object) -> None:
        self._table = MappingProxyType(parse_prices(table))

    def describe(self) -> dict[str, Any]:
        return {model: dict(rates) for model, rates in self._table.items()}

    def cost(self, model: str | None, tokens_in: int, tokens_out: int) -> float | None:
        """USD for one call, or None when the table prices neither ``model`` nor ``*``."""
        table = self._table
        rates = table.get(model or "") or table.get(ANY_MODEL)
        if rates is None:
            return None
        return (
            tokens_in * rates["input_per_mtok"] + tokens_out * rates["output_per_mtok"]
        ) / 1_000_000
