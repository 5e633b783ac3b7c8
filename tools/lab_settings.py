"""The demo JupyterLab's settings, one copy for ``make lab``, Binder's postBuild and the Lab UI
tests (tools/labdriver.py).

    python tools/lab_settings.py [PREFIX]

merges them into PREFIX/share/jupyter/lab/settings/overrides.json (PREFIX defaults to the
running Python's ``sys.prefix``, i.e. the virtualenv JupyterLab runs from), keeping any other
setting found there. Overrides are JupyterLab's defaults for that installation; a user's own
settings still win.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    # Save widget state with a notebook, so a saved notebook reopens showing the panel's last
    # state instead of "Error displaying widget: model not found".
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True},
    "@jupyterlab/completer-extension:manager": {
        # The completer's documentation panel shows each %car item's help.
        "showDocumentationPanel": True,
        # Only the kernel completes: the context provider (words seen in the notebook) adds
        # items such as a stray "%" and "car" to every %car completion.
        "availableProviders": {
            "CompletionProvider:kernel": 550,
            "CompletionProvider:context": -1,
        },
    },
}


def overrides_path(prefix: Path) -> Path:
    return prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def install(prefix: Path) -> Path:
    """Merge :data:`DEMO_SETTINGS` into ``prefix``'s overrides.json; returns its path."""
    path = overrides_path(prefix)
    settings = json.loads(path.read_text()) if path.exists() else {}
    for plugin, values in DEMO_SETTINGS.items():
        settings.setdefault(plugin, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print("JupyterLab settings:", install(Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)))
