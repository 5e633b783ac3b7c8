"""The SQLite stores (``carnb/memgine``, ``carnb/runs``) and the PostgreSQL store
(``carnb/pgstore``) share no run of four identical lines: what both stores do the same way is
written once, on the policy side of the seams (``memgine/steps.py`` over ``GraphTx``,
``runs/store.py`` over ``RunTx``), and each store holds only its SQL."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CARNB = Path(__file__).resolve().parents[1] / "carnb"
RUN = 4
_THIN = re.compile(r"[\s()\[\]{},:;.]*")


def code_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line with white space folded)`` of the lines that say something: not
    blank, not comments, not lone punctuation, not imports."""
    text = path.read_text()
    imports = {
        n
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        folded = " ".join(line.split())
        if number in imports or not folded or folded.startswith("#") or _THIN.fullmatch(folded):
            continue
        out.append((number, folded))
    return out


def runs_of(path: Path) -> dict[tuple[str, ...], int]:
    """Every run of ``RUN`` consecutive code lines -> the line where it starts."""
    lines = code_lines(path)
    return {
        tuple(text for _, text in lines[i : i + RUN]): lines[i][0]
        for i in range(len(lines) - RUN + 1)
    }


def test_code_lines_skip_what_does_not_count(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from a import (\n    b,\n)\n\n# note\nx  =  1\n[\n]\n")
    assert code_lines(sample) == [(6, "x = 1")]


def test_the_sqlite_and_postgresql_stores_share_no_run_of_four_lines() -> None:
    sqlite_side = [p for d in ("memgine", "runs") for p in sorted((CARNB / d).glob("*.py"))]
    pg_side = sorted((CARNB / "pgstore").glob("*.py"))
    assert sqlite_side and pg_side
    pg_runs = {p: runs_of(p) for p in pg_side}
    shared = [
        f"{a.relative_to(CARNB)}:{line} ~ {b.relative_to(CARNB)}:{theirs[run]}: {run[0]}"
        for a in sqlite_side
        for run, line in runs_of(a).items()
        for b, theirs in pg_runs.items()
        if run in theirs
    ]
    assert not shared, "written twice, lift it behind the store seam:\n" + "\n".join(shared)
