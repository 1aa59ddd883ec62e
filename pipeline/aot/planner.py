"""Static arena planning: lifetimes, aliasing, in-place reuse, greedy-by-size offsets."""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 16


@dataclass
class Step:
    """One op as the planner sees it."""

    reads: list[int]
    writes: list[int]
    alias: bool = False      # writes[0] is reads[0]'s memory
    inplace: bool = False    # writes[0] may reuse reads[0]'s memory


@dataclass
class Plan:
    """Arena offset of every activation tensor and the arena size."""

    offsets: dict[int, int]
    total: int
    groups: list[list[int]] = field(default_factory=list)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class _Groups:
    """Union-find over tensors that share one buffer."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, t: int) -> int:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, keep: int, other: int) -> None:
        self.parent[self.find(other)] = self.find(keep)

    def members(self, t: int) -> list[int]:
        r = self.find(t)
        return [x for x in list(self.parent) if self.find(x) == r]


def place(sizes: list[int], lives: list[tuple[int, int]]) -> tuple[list[int], int]:
    """Greedy by size: biggest buffers first, each at the lowest offset free for its lifetime."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], lives[i][0], i))
    offsets = [-1] * len(sizes)
    placed: list[int] = []
    for i in order:
        lo, hi = lives[i]
        busy = sorted((offsets[j], offsets[j] + sizes[j]) for j in placed
                      if not (lives[j][1] < lo or hi < lives[j][0]))
        off = 0
        for s, e in busy:
            if off + sizes[i] <= s:
                break
            off = max(off, _align(e))
        offsets[i] = off
        placed.append(i)
    total = max((offsets[i] + sizes[i] for i in range(len(sizes))), default=0)
    return offsets, _align(total)


def plan(steps: list[Step], nbytes: dict[int, int], graph_inputs: list[int],
         graph_outputs: list[int]) -> Plan:
    """Assign offsets to the activation tensors in `nbytes` (constants must not be listed)."""
    n = len(steps)
    first: dict[int, int] = {t: -1 for t in graph_inputs}
    last: dict[int, int] = {}
    for i, st in enumerate(steps):
        for t in st.writes:
            first.setdefault(t, i)
            last.setdefault(t, i)
        for t in st.reads:
            if t in nbytes:
                last[t] = max(last.get(t, i), i)
    for t in graph_outputs:
        last[t] = n
    for t in graph_inputs:
        last.setdefault(t, -1)

    groups = _Groups()
    for t in nbytes:
        groups.find(t)
    readonly = {groups.find(t) for t in graph_inputs}
    for i, st in enumerate(steps):
        if not st.writes or not st.reads or st.reads[0] not in nbytes:
            continue
        src, dst = st.reads[0], st.writes[0]
        if st.alias:
            ro = groups.find(src) in readonly
            groups.union(src, dst)
            if ro:
                readonly.add(groups.find(src))
        elif st.inplace:
            members = groups.members(src)
            if (groups.find(src) not in readonly
                    and max(last[m] for m in members) == i
                    and max(nbytes[m] for m in members) >= nbytes[dst]):
                groups.union(src, dst)

    roots: dict[int, list[int]] = {}
    for t in nbytes:
        roots.setdefault(groups.find(t), []).append(t)
    keys = list(roots)
    sizes = [max(nbytes[t] for t in roots[k]) for k in keys]
    lives = [(min(first.get(t, 0) for t in roots[k]), max(last.get(t, 0) for t in roots[k]))
             for k in keys]
    offs, total = place(sizes, lives)
    offsets = {t: offs[j] for j, k in enumerate(keys) for t in roots[k]}
    return Plan(offsets, max(total, ALIGN), [roots[k] for k in keys])
