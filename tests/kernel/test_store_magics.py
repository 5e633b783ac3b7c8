"""The store setting in a kernel: ``CarMagics.store`` (or ``CARNB_STORE``) picks PostgreSQL,
unset keeps SQLite, and ``%car server`` shows the store in use without its password."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import carnb
from carnb.pgstore.runs import PgRunStore
from carnb.runs import RunStore


@pytest.fixture
def no_store_config(shell: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("CARNB_STORE", raising=False)
    shell.config.CarMagics.store = None
    yield shell
    shell.config.CarMagics.store = None


def _server_text(ip: Any) -> str:
    return str(ip.run_line_magic("car", "server")._repr_mimebundle_()["text/plain"])


def test_unset_store_keeps_sqlite(no_store_config: Any) -> None:
    no_store_config.run_line_magic("load_ext", "carnb")
    rt = carnb.current()
    assert rt.services is not None and type(rt.services.runs) is RunStore
    assert "sqlite (files under the data directory)" in _server_text(no_store_config)


@pytest.mark.postgres
def test_carmagics_store_puts_runs_on_postgresql(no_store_config: Any, pg_url: str) -> None:
    no_store_config.config.CarMagics.store = pg_url.replace("carnb@", "carnb:pw-secret@")
    no_store_config.run_line_magic("load_ext", "carnb")
    rt = carnb.current()
    assert rt.services is not None and isinstance(rt.services.runs, PgRunStore)
    text = _server_text(no_store_config)
    assert "postgresql://carnb@127.0.0.1:" in text and "pw-secret" not in text


@pytest.mark.postgres
def test_carnb_store_environment_variable(
    no_store_config: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARNB_STORE", pg_url)
    no_store_config.run_line_magic("load_ext", "carnb")
    rt = carnb.current()
    assert rt.services is not None and isinstance(rt.services.runs, PgRunStore)
