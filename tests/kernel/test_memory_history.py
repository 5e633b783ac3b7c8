"""``%car memory add --supersedes``, ``%car memory history`` and the explorer's superseded view
on the IPython-free notebook engine over a real runtime."""

from __future__ import annotations

import pytest

from carnb.kernel.calls import CarCommandError
from carnb.kernel.engine import NotebookEngine
from tests.kernel.conftest import car


def test_supersedes_and_history_magics(nb: NotebookEngine) -> None:
    car(nb, 'memory add deploy_target "Heroku dynos" --id d1')
    car(nb, 'memory add deploy_target "Fly machines" --id d2 --supersedes d1')
    added = car(nb, 'memory add deploy_target "Cloudflare Workers" --supersedes deploy_target')
    assert added.value == 1
    chain = car(nb, "memory history deploy_target")
    assert [f["fact_id"] for f in chain.facts] == ["ws-1", "d2", "d1"]
    text = chain.text()
    assert "history of 'deploy_target', newest first" in text and "(valid)" in text
    assert [f["fact_id"] for f in car(nb, "memory history --id d1").facts] == ["ws-1", "d2", "d1"]
    assert car(nb, "memory history nothing").text().endswith("no such fact or subject")
    with pytest.raises(CarCommandError, match="exactly one"):
        car(nb, "memory history")
    with pytest.raises(CarCommandError, match="names no stored fact id or subject"):
        car(nb, 'memory add x "y" --supersedes ghost')
    assert car(nb, "memory count").value == 1


def test_the_explorer_strikes_through_superseded_facts_on_request(nb: NotebookEngine) -> None:
    car(nb, 'memory add deploy_target "Heroku dynos" --id d1')
    car(nb, 'memory add deploy_target "Cloudflare Workers" --id d2 --supersedes d1')
    plain = car(nb, "memory explore deploy target")
    assert [r["fact_id"] for r in plain.search("deploy target")] == ["d2"]
    assert "Heroku" not in plain.results.value
    history = car(nb, "memory explore deploy target --superseded")
    rows = history.search("deploy target")
    assert [(r["fact_id"], r.get("superseded_by")) for r in rows] == [("d2", None), ("d1", "d2")]
    assert '<tr class="carnb-superseded"><td><s>d1</s></td>' in history.results.value
    assert "<s>Cloudflare Workers</s>" not in history.results.value
