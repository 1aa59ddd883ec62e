"""Static arena planning: lifetimes, aliasing, in-place reuse, greedy-by-size offsets.

Besides whole-buffer reuse, a windowed op (convolution, depthwise, pooling) may write its output
over the part of its input it has already consumed: `Step.overlap = d` allows the output to
overlap the input when input_offset - output_offset >= d (see `window_overlap`).
"""

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
    overlap: int | None = None  # writes[0] may overlap reads[0] if in_off - out_off >= overlap


@dataclass
class Plan:
    """Arena offset of every activation tensor and the arena size."""

    offsets: dict[int, int]
    total: int
    groups: list[list[int]] = field(default_factory=list)
    # per buffer: offset, size and the steps it is alive (first, last), for reports
    spans: list[tuple[int, int, tuple[int, int]]] = field(default_factory=list)


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


def _forbidden(i: int, j: int, offsets: list[int], sizes: list[int],
               pairs: dict[tuple[int, int], int]) -> tuple[int, int]:
    """Open interval of start offsets for buffer i that collide with placed buffer j."""
    oj = offsets[j]
    lo, hi = oj - sizes[i], oj + sizes[j]
    d = pairs.get((i, j))
    if d is not None:          # i is the output, j the input: fine while oj - off_i >= d
        lo = max(lo, oj - d)
    d = pairs.get((j, i))
    if d is not None:          # i is the input, j the output: fine while off_i - oj >= d
        hi = min(hi, oj + d)
    return lo, hi


def _place_order(order: list[int], sizes: list[int], lives: list[tuple[int, int]],
                 best_fit: bool, pairs: dict[tuple[int, int], int] | None = None
                 ) -> tuple[list[int], int]:
    pairs = pairs or {}
    offsets = [-1] * len(sizes)
    placed: list[int] = []
    for i in order:
        lo, hi = lives[i]
        live = [j for j in placed if not (lives[j][1] < lo or hi < lives[j][0])]
        bad = [_forbidden(i, j, offsets, sizes, pairs) for j in live]
        bad = [(a, b) for a, b in bad if b - a > 1]
        cands = {0} | {_align(b) for _, b in bad}
        for j in live:  # the exact allowed overlap, rounded to the alignment
            if (i, j) in pairs:
                cands.add((offsets[j] - pairs[(i, j)]) // ALIGN * ALIGN)
            if (j, i) in pairs:
                cands.add(_align(offsets[j] + pairs[(j, i)]))
        ok = sorted(c for c in cands if c >= 0 and all(not (a < c < b) for a, b in bad))
        off = ok[0]
        if best_fit:  # the candidate leaving the smallest gap below the next buffer up
            rooms = []
            for c in ok:
                above = [offsets[j] for j in live if offsets[j] >= c + sizes[i]]
                rooms.append((min(above) - c - sizes[i] if above else float("inf"), c))
            off = min(rooms)[1]
        offsets[i] = off
        placed.append(i)
    total = max((offsets[i] + sizes[i] for i in range(len(sizes))), default=0)
    return offsets, total


def _outputs_first(order: list[int], pairs: dict[tuple[int, int], int]) -> list[int]:
    """Same order, except that the output of an overlap pair is placed before its input (the
    output lies below the input it overwrites), recursively along chains of windowed ops."""
    out_of = {b: a for a, b in pairs}
    seen: set[int] = set()
    res: list[int] = []
    for i in order:
        chain = []
        while i not in seen:
            seen.add(i)
            chain.append(i)
            if i not in out_of:
                break
            i = out_of[i]
        res += reversed(chain)
    return res


def place(sizes: list[int], lives: list[tuple[int, int]], trials: int = 64,
          pairs: dict[tuple[int, int], int] | None = None) -> tuple[list[int], int]:
    """Offsets for buffers with lifetimes; buffers alive at the same time never overlap, except
    a pair (out, in) in `pairs` whose offsets satisfy off[in] - off[out] >= pairs[(out, in)].

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
              sorted(idx, key=lambda i: (-dur[i], -sizes[i], i)),
              # Latest first: chains of partially overlapping windowed ops stack downwards.
              sorted(idx, key=lambda i: (-lives[i][1], -sizes[i], i)),
              sorted(idx, key=lambda i: (-lives[i][0], -sizes[i], i))]
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
    if pairs:
        orders += [_outputs_first(o, pairs) for o in orders]
    best: tuple[list[int], int] | None = None
    for o in orders:
        for bf in (False, True):
            offs, total = _place_order(o, sizes, lives, bf, pairs)
            if best is None or total < best[1]:
                best = (offs, total)
    assert best is not None
    return best[0], _align(best[1])


def _lifetimes(steps: list[Step], nbytes: dict[int, int], graph_inputs: list[int],
               graph_outputs: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """First and last step of every tensor (-1: before the first op, len(steps): after)."""
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
    return first, last


def step_tops(p: Plan, steps: list[Step], nbytes: dict[int, int], graph_inputs: list[int],
              graph_outputs: list[int]) -> list[int]:
    """Per step, the end of the highest buffer alive during it in plan `p`."""
    first, last = _lifetimes(steps, nbytes, graph_inputs, graph_outputs)
    tops = [0] * len(steps)
    for t, size in nbytes.items():
        for i in range(max(first.get(t, 0), 0), min(last.get(t, 0), len(steps) - 1) + 1):
            tops[i] = max(tops[i], p.offsets[t] + size)
    return tops


def plan(steps: list[Step], nbytes: dict[int, int], graph_inputs: list[int],
         graph_outputs: list[int], trials: int = 64) -> Plan:
    """Assign offsets to the activation tensors in `nbytes` (constants must not be listed)."""
    first, last = _lifetimes(steps, nbytes, graph_inputs, graph_outputs)

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
    index = {k: j for j, k in enumerate(keys)}
    pairs: dict[tuple[int, int], int] = {}
    for i, st in enumerate(steps):
        if st.overlap is None or not st.writes or not st.reads or st.reads[0] not in nbytes:
            continue
        src, dst = groups.find(st.reads[0]), groups.find(st.writes[0])
        # Only when this op is the input's last reader and the output is born here.
        if (src != dst and max(last[m] for m in roots[src]) == i
                and min(first.get(m, 0) for m in roots[dst]) == i
                and not any(groups.find(t) == src for t in st.reads[1:] if t in nbytes)):
            pairs[(index[dst], index[src])] = int(st.overlap)
    offs, total = place(sizes, lives, trials, pairs=pairs)
    _verify(offs, sizes, lives, pairs)
    offsets = {t: offs[j] for j, k in enumerate(keys) for t in roots[k]}
    spans = [(offs[j], sizes[j], lives[j]) for j in range(len(keys))]
    return Plan(offsets, max(total, ALIGN), [roots[k] for k in keys], spans)


def _verify(offsets: list[int], sizes: list[int], lives: list[tuple[int, int]],
            pairs: dict[tuple[int, int], int] | None = None) -> None:
    """Cheap proof that buffers alive at the same time never share bytes, except an allowed
    (output, input) pair whose input starts at least `pairs[(out, in)]` bytes after the output."""
    pairs = pairs or {}
    for i in range(len(sizes)):
        for j in range(i):
            if lives[i][1] < lives[j][0] or lives[j][1] < lives[i][0]:
                continue
            if offsets[i] < offsets[j] + sizes[j] and offsets[j] < offsets[i] + sizes[i]:
                if (i, j) in pairs and offsets[j] - offsets[i] >= pairs[(i, j)]:
                    continue
                if (j, i) in pairs and offsets[i] - offsets[j] >= pairs[(j, i)]:
                    continue
                raise AssertionError(f"arena plan overlaps buffers {i} and {j}")


def window_overlap(in_hw: tuple[int, int], out_hw: tuple[int, int], in_c: int, out_c: int,
                   k: tuple[int, int], stride: tuple[int, int], dil: tuple[int, int],
                   pad: tuple[int, int]) -> int:
    """Smallest input_offset - output_offset at which a windowed op may write over its input.

    Contract of the kernels (conv, depthwise, pooling; portable and DSP): output pixels are
    produced in raster order, and once any byte of output pixel q has been written, only the
    windows of pixels >= q are read (the DSP convolution reads a block of windows first, then
    writes the block). So writing pixel q is safe when its last byte lies below the first input
    byte any window >= q still reads: out_off + (q + 1) * out_c <= in_off + first(q).
    """
    (ih, iw), (oh, ow) = in_hw, out_hw

    def first_tap(o: int, s: int, d: int, p: int, kk: int, size: int) -> int | None:
        start = o * s - p
        for t in range(kk):
            if 0 <= start + t * d < size:
                return start + t * d
        return None

    ys = [first_tap(o, stride[0], dil[0], pad[0], k[0], ih) for o in range(oh)]
    xs = [first_tap(o, stride[1], dil[1], pad[1], k[1], iw) for o in range(ow)]
    inf = ih * iw * in_c
    first = [inf if y is None or x is None else (y * iw + x) * in_c for y in ys for x in xs]
    need, worst = inf, -(10 ** 12)
    for q in range(len(first) - 1, -1, -1):  # suffix minimum: reads still to come after q
        need = min(need, first[q])
        worst = max(worst, (q + 1) * out_c - need)
    return worst
