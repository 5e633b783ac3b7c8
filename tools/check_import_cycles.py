"""Fail when a package's modules import each other in a circle.

Every import counts: module level, inside functions, and under ``if TYPE_CHECKING:``. The graph
comes from grimp (installed with import-linter); each strongly connected group of modules is
reported with one concrete circle through it and the line of every import on that circle.

Usage: ``python tools/check_import_cycles.py [package]`` (default ``carnb``); exit status 1 when
a circle exists, 0 otherwise.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable

import grimp


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of two or more modules that reach each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(iter(children), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def one_circle(edges: dict[str, set[str]], group: list[str]) -> list[str]:
    """A shortest circle through the group's first module, staying inside the group."""
    members = set(group)
    start = group[0]
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{group} is not strongly connected")


def describe(package: str) -> list[str]:
    """One line per import circle in ``package`` (empty when there is none)."""
    graph = grimp.build_graph(package, exclude_type_checking_imports=False, cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    out = []
    for group in strongly_connected(edges):
        circle = one_circle(edges, group)
        steps = []
        for importer, imported in zip(circle, circle[1:], strict=False):
            lines = sorted(
                d["line_number"]
                for d in graph.get_import_details(importer=importer, imported=imported)
            )
            steps.append(f"{importer} (line {', '.join(map(str, lines))})")
        out.append(
            f"import circle among {len(group)} modules ({', '.join(group)}): "
            + " -> ".join(steps)
            + f" -> {circle[-1]}"
        )
    return out


def main(argv: list[str]) -> int:
    package = argv[1] if len(argv) > 1 else "carnb"
    circles = describe(package)
    for line in circles:
        print(line)
    if circles:
        print(f"{len(circles)} import circle(s) in {package}", file=sys.stderr)
        return 1
    print(f"no import circles in {package}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
