"""Static arena planning: lifetimes, aliasing, in-place reuse, greedy-by-size offsets."""

from __future__ import annotations

import random
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


def _place_order(order: list[int], sizes: list[int], lives: list[tuple[int, int]],
                 best_fit: bool) -> tuple[list[int], int]:
    offsets = [-1] * len(sizes)
    placed: list[int] = []
    for i in order:
        lo, hi = lives[i]
        busy = sorted((offsets[j], offsets[j] + sizes[j]) for j in placed
                      if not (lives[j][1] < lo or hi < lives[j][0]))
        # Candidate gaps between the buffers alive at the same time.
        gaps, cur = [], 0
        for s, e in busy:
            if s - cur >= sizes[i]:
                gaps.append((s - cur, cur))
            cur = max(cur, _align(e))
        off = cur
        if gaps:
            off = min(gaps)[1] if best_fit else gaps[0][1]
        offsets[i] = off
        placed.append(i)
    total = max((offsets[i] + sizes[i] for i in range(len(sizes))), default=0)
    return offsets, total


def place(sizes: list[int], lives: list[tuple[int, int]], trials: int = 64
          ) -> tuple[list[int], int]:
    """Offsets for buffers with lifetimes; buffers alive at the same time never overlap.

    Greedy placement is order-sensitive, so several orders (by size, by size x duration, by
    first use, and seeded shuffles of the size order) are tried with first-fit and best-fit,
    keeping the smallest arena. Deterministic for a given input.
    """
    n = len(sizes)
    idx = range(n)
    dur = [hi - lo + 1 for lo, hi in lives]
    orders = [sorted(idx, key=lambda i: (-sizes[i], lives[i][0], i)),
              sorted(idx, key=lambda i: (-sizes[i] * dur[i], i)),
              sorted(idx, key=lambda i: (lives[i][0], -sizes[i], i)),
              sorted(idx, key=lambda i: (-dur[i], -sizes[i], i))]
    rng = random.Random(0)
    budget = max(4, min(trials, 40000 // max(n * n // 8, 1)))
    base = orders[0]
    for _ in range(budget):
        o = list(base)
        for _ in range(max(1, n // 6)):  # a few random swaps, mostly among similar sizes
            a = rng.randrange(n)
            b = min(n - 1, max(0, a + rng.randint(-3, 3)))
            o[a], o[b] = o[b], o[a]
        orders.append(o)
    best: tuple[list[int], int] | None = None
    for o in orders:
        for bf in (False, True):
            offs, total = _place_order(o, sizes, lives, bf)
            if best is None or total < best[1]:
                best = (offs, total)
    assert best is not None
    return best[0], _align(best[1])


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
    _verify(offs, sizes, lives)
    offsets = {t: offs[j] for j, k in enumerate(keys) for t in roots[k]}
    return Plan(offsets, max(total, ALIGN), [roots[k] for k in keys])


def _verify(offsets: list[int], sizes: list[int], lives: list[tuple[int, int]]) -> None:
    """Cheap proof that buffers alive at the same time never share bytes."""
    for i in range(len(sizes)):
        for j in range(i):
            if lives[i][1] < lives[j][0] or lives[j][1] < lives[i][0]:
                continue
            if offsets[i] < offsets[j] + sizes[j] and offsets[j] < offsets[i] + sizes[i]:
                raise AssertionError(f"arena plan overlaps buffers {i} and {j}")
