"""The proposal's dependency DAG: execution levels, dependency cycles and write conflicts.

Edges, as in the reference engine plus one carnb extension:

- *implicit*: an action waits for every action *earlier in the proposal* that writes a key it
  lists in ``state_dependencies`` (a read before a later overwrite sees the old value), and a
  ``state_write`` waits for the previous ``state_write`` of its key, so same-key writes land in
  proposal order. These edges all point forward, so they never form a cycle.
- *explicit*: ``depends_on`` names action ids this action waits for, in any position. Only
  these can form a cycle; verify reports it and the executor refuses the proposal.

Dependencies go through prefix nodes per state key ("every writer of k up to the t-th") rather
than one edge per (writer, reader) pair, so the graph, the layering and cycle search are linear
in the size of the proposal; ancestry for write conflicts is a bitset over the contended
writers only.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from .model import Action, ActionType


@dataclass(frozen=True)
class Plan:
    """``levels`` hold action indices, each level independent; ``cycles`` hold action ids of
    one cycle each; actions in or downstream of a cycle are in ``blocked`` and no level."""

    levels: list[list[int]]
    level_of: list[int]  # -1 for blocked actions
    cycles: list[list[str]]
    blocked: list[int]
    conflicts: list[tuple[str, str, str]]


def build_plan(actions: tuple[Action, ...] | list[Action]) -> Plan:
    n = len(actions)
    writes = [action.writes() for action in actions]
    if not any(writes) and not any(a.depends_on or a.state_dependencies for a in actions):
        # no edges at all (e.g. one tool call): one level, no cycle, no conflict
        return Plan([list(range(n))] if n else [], [0] * n, [], [], [])
    writers: dict[str, list[int]] = defaultdict(list)
    for i, keys in enumerate(writes):
        for key in sorted(keys):
            writers[key].append(i)

    # Nodes: actions 0..n-1, then key nodes. Key k's node "upto[t]" stands for its first t+1
    # writers (fed by the previous prefix node and the (t+1)-th writer); a reader at index i
    # waits on the prefix of writers before i, made on demand while walking the proposal.
    preds: list[list[int]] = [[] for _ in range(n)]
    prefix: dict[str, int] = {}  # key -> node of every writer seen so far
    last_write: dict[str, int] = {}  # key -> index of the previous state_write of it
    index = {action.id: i for i, action in enumerate(actions)}
    for i, action in enumerate(actions):
        for key in dict.fromkeys(action.state_dependencies):
            if key in prefix:
                preds[i].append(prefix[key])
        if action.type is ActionType.STATE_WRITE and action.state_key is not None:
            previous = last_write.get(action.state_key)
            if previous is not None:
                preds[i].append(previous)
            last_write[action.state_key] = i
        for target in dict.fromkeys(action.depends_on):
            preds[i].append(index[target])
        for key in sorted(writes[i]):
            node = len(preds)
            preds.append([prefix[key], i] if key in prefix else [i])
            prefix[key] = node

    total = len(preds)
    succs: list[list[int]] = [[] for _ in range(total)]
    indegree = [0] * total
    for node, ps in enumerate(preds):
        indegree[node] = len(ps)
        for p in ps:
            succs[p].append(node)

    # Kahn's algorithm; value = level for actions, max writer level for key nodes.
    value = [-1] * total
    order: list[int] = []
    queue = deque(node for node in range(total) if indegree[node] == 0)
    while queue:
        node = queue.popleft()
        order.append(node)
        if node < n:
            value[node] = max(
                (value[p] + 1 for p in preds[node]), default=0
            )  # a key node's value is already its writers' max level
        else:
            value[node] = max((value[p] for p in preds[node]), default=-1)
        for s in succs[node]:
            indegree[s] -= 1
            if indegree[s] == 0:
                queue.append(s)

    done = [False] * total
    for node in order:
        done[node] = True
    level_of = [value[i] if done[i] else -1 for i in range(n)]
    levels: list[list[int]] = []
    for i in range(n):
        if level_of[i] >= 0:
            while len(levels) <= level_of[i]:
                levels.append([])
            levels[level_of[i]].append(i)
    blocked = [i for i in range(n) if not done[i]]
    cycles = _find_cycles(actions, preds, done)
    conflicts = _write_conflicts(actions, writers, preds, order, level_of)
    return Plan(levels, level_of, cycles, blocked, conflicts)


def _find_cycles(
    actions: tuple[Action, ...] | list[Action], preds: list[list[int]], done: list[bool]
) -> list[list[str]]:
    """One cycle per walk over the nodes Kahn left behind; every such node has an unfinished
    predecessor, so walking predecessors must revisit a node. Linear overall."""
    n = len(actions)
    seen = [False] * len(preds)
    cycles: list[list[str]] = []
    for start in range(n):
        if done[start] or seen[start]:
            continue
        path: list[int] = []
        position: dict[int, int] = {}
        node = start
        while not seen[node]:
            seen[node] = True
            position[node] = len(path)
            path.append(node)
            node = next(p for p in preds[node] if not done[p])
        if node in position:  # closed a new cycle (else we ran into an earlier walk)
            loop = [actions[x].id for x in reversed(path[position[node] :]) if x < n]
            cycles.append([*loop, loop[0]])
    return cycles


class _Ancestry:
    """Sets of contended-writer indices as windowed bitsets: ``bits`` bit 0 stands for index
    ``base``. A union costs the span it covers, so dependencies between nearby actions (the
    usual shape) stay linear; the worst case is n/64 machine words per union."""

    __slots__ = ("base", "bits")

    def __init__(self, base: int = 0, bits: int = 0) -> None:
        self.base, self.bits = base, bits

    def union(self, other: _Ancestry) -> _Ancestry:
        if not other.bits:
            return self
        if not self.bits:
            return other
        base = min(self.base, other.base)
        return _Ancestry(
            base, (self.bits << (self.base - base)) | (other.bits << (other.base - base))
        )

    def __contains__(self, index: int) -> bool:
        return index >= self.base and bool(self.bits >> (index - self.base) & 1)


_EMPTY = _Ancestry()


def _write_conflicts(
    actions: tuple[Action, ...] | list[Action],
    writers: dict[str, list[int]],
    preds: list[list[int]],
    order: list[int],
    level_of: list[int],
) -> list[tuple[str, str, str]]:
    """Writers of one key with no path between them. Writers are sorted by (level, index) and
    each adjacent pair is tested: if every adjacent pair is ordered the writers are totally
    ordered, so a key with a race always yields at least one reported pair."""
    contended = {k: ws for k, ws in writers.items() if len(ws) > 1}
    if not contended:
        return []
    tracked = {w for ws in contended.values() for w in ws}
    n = len(actions)
    ancestors = [_EMPTY] * len(preds)
    for node in order:
        acc = _EMPTY
        for p in preds[node]:
            acc = acc.union(ancestors[p])
            if p < n and p in tracked:
                acc = acc.union(_Ancestry(p, 1))
        ancestors[node] = acc
    conflicts: list[tuple[str, str, str]] = []
    for key in sorted(contended):
        ordered = sorted((level_of[w], w) for w in contended[key] if level_of[w] >= 0)
        for (la, a), (lb, b) in zip(ordered, ordered[1:], strict=False):
            if la == lb or a not in ancestors[b]:
                conflicts.append((actions[a].id, actions[b].id, key))
    return conflicts
