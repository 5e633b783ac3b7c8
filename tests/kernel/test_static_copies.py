"""Widgets carry a static HTML copy beside the widget view: what a notebook shows where no
widget state is at hand (untrusted notebooks, nbconvert, GitHub)."""

from __future__ import annotations

from typing import Any

import carnb

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_the_explorer_carries_its_results_as_html(loaded: Any) -> None:
    loaded.run_line_magic("car", 'memory add deploy "staging deploys need green CI"')
    ex = loaded.run_line_magic("car", "memory explore deploy")
    bundle = ex._repr_mimebundle_()
    assert WIDGET in bundle
    static = bundle["text/html"]
    assert 'class="carnb-out carnb-explore-static"' in static
    assert "staging deploys need green CI" in static and 'data-facts="1"' in static
    # The same table as `%car memory query`: same columns, same style.
    query = loaded.run_line_magic("car", "memory query deploy")
    head = query.html().split("<tbody>")[0].split("<thead>")[1]
    assert head in static


def test_the_panel_copy_never_holds_a_token(loaded: Any) -> None:
    rt = carnb.current()
    env = loaded.run_line_magic("car", "agent add scout").env
    loaded.run_cell("%car auth --agent scout")
    panel = loaded.run_line_magic("car", "status")
    shown = panel._repr_mimebundle_()["text/html"] + panel.snapshot().html()
    assert 'data-agent="scout"' in shown
    assert not any(s in shown for s in (rt.token, rt.host_token, env["CAR_AGENT_TOKEN"]))
