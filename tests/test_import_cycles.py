"""tools/check_import_cycles.py (run by ``make lint``) finds every import circle in a package:
module-level, function-local and ``TYPE_CHECKING`` imports alike, and passes a package without."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "tools" / "check_import_cycles.py"


def make_package(root: Path, name: str, modules: dict[str, str]) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module, source in modules.items():
        (pkg / f"{module}.py").write_text(source)


def check(root: Path, package: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), package],
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_kind_of_circle_is_reported_with_its_lines(tmp_path: Path) -> None:
    make_package(
        tmp_path,
        "circles",
        {
            "top_a": "from circles import top_b\n",
            "top_b": "import circles.top_a\n",
            "local_c": "from circles import local_d\n",
            "local_d": "def late():\n    from circles import local_c\n    return local_c\n",
            "typed_e": "from circles import typed_f\n",
            "typed_f": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from circles.typed_e import X\n"
            ),
            "leaf": "from circles import top_a\n",
        },
    )
    result = check(tmp_path, "circles")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "import circle among 2 modules (circles.local_c, circles.local_d): "
        "circles.local_c (line 1) -> circles.local_d (line 2) -> circles.local_c",
        "import circle among 2 modules (circles.top_a, circles.top_b): "
        "circles.top_a (line 1) -> circles.top_b (line 1) -> circles.top_a",
        "import circle among 2 modules (circles.typed_e, circles.typed_f): "
        "circles.typed_e (line 1) -> circles.typed_f (line 3) -> circles.typed_e",
    ]
    assert "3 import circle(s) in circles" in result.stderr


def test_a_longer_circle_is_one_group(tmp_path: Path) -> None:
    make_package(
        tmp_path,
        "ring",
        {"a": "from ring import b\n", "b": "from ring import c\n", "c": "from ring import a\n"},
    )
    result = check(tmp_path, "ring")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "import circle among 3 modules (ring.a, ring.b, ring.c): "
        "ring.a (line 1) -> ring.b (line 1) -> ring.c (line 1) -> ring.a"
    ]


def test_a_layered_package_passes(tmp_path: Path) -> None:
    make_package(
        tmp_path,
        "layered",
        {
            "base": "import json\n",
            "middle": "from layered import base\n",
            "top": "from layered import base, middle\n\ndef f():\n    import layered.middle\n",
        },
    )
    result = check(tmp_path, "layered")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "no import circles in layered"
