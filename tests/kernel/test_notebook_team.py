"""notebooks/07-team.ipynb executed headless like the other notebooks: two carnb servers on one
throw-away PostgreSQL; an agent writes through the second, the notebook's panel follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from carnb.testing.postgres import find_bindir
from tests.kernel.test_notebooks import cell_index, execute, no_tokens_anywhere, out, panel_after

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.timeout(240)]


def test_team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not found: run tools/ensure-postgresql")
    monkeypatch.delenv("CARNB_STORE", raising=False)
    nb, client = execute("07-team.ipynb", tmp_path, monkeypatch)
    assert "graph          agent:scribe" in out(nb, "%car auth --agent scribe")
    wrote = out(nb, '%car status\nagent_code = """')
    assert "the agent wrote 5 facts through server B; its graph holds 5" in wrote
    # the panel (server A) followed the writes made through server B while the cell ran
    cell = next(
        i for i, c in enumerate(nb.cells) if c.source.startswith('%car status\nagent_code = """')
    )
    seen = {
        state["value"].split('data-facts="')[1].split('"')[0]
        for i, _, state in client.updates
        if i == cell and 'data-facts="' in str(state.get("value", ""))
    }
    assert {"1", "5"} <= seen, seen
    assert 'data-facts="5"' in panel_after(client, nb, '%car status\nagent_code = """')
    assert out(nb, "%car memory count").strip() == "5 facts in agent:scribe"
    assert "release-1" in out(nb, "%car memory query when are releases cut")
    assert "integration tests against postgres" in out(nb, "%car memory context")
    assert "the agent on B sees the new fact: True" in out(nb, "check = ")
    assert "stopped" in out(nb, "server_b.terminate()")
    # the last cell unloads carnb: the panel's output keeps its last state, as static HTML
    (status,) = nb.cells[cell_index(nb, "%car status")].outputs
    assert "application/vnd.jupyter.widget-view+json" not in status["data"]
    assert 'data-facts="6"' in status["data"]["text/html"]
    no_tokens_anywhere(nb)
