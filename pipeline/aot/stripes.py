"""Striped execution: run a range of ops band by band so that no tensor inside it is whole.

A group is a range of consecutive ops (convolution, depthwise, pooling, same-shape ADD/MUL) with
one sink: the tensor the group hands on. Ops run on bands of rows and every row is computed
once (nothing is recomputed). In the "pull" schedule the sink asks its producer for rows, which
asks its own producers for just the rows its next call reads, and so on, so a line buffer holds
little more than one window; in the "step" schedule each step advances the sink by a few rows
and every op computes at once all the rows that needs (fewer, larger calls). A tensor produced
and consumed inside the group lives in a line buffer; rows no call will read again are dropped
by moving the rows still needed to the front of the buffer. Tensors the group reads from
outside or hands on stay whole and are addressed row by row, and the sink may overwrite rows of
the group's input that no call reads any more (`Group.overlap`, as the planner's
in_off - out_off distance).

Each call runs the unchanged kernel on a band: a copy of the op's parameter struct with the
band's heights and top padding (`RowMap`), pointers to the band's first rows. A kernel only
sees a smaller tensor whose top padding is the part of the real padding above the band; rows
below a band are never needed unless they are the tensor's real bottom padding. Every schedule
is replayed on row labels at export (`_check`) before it is planned or emitted.

    choose(g, kernels, nbytes, inputs, outputs) -> Choice   (the groups that lower the arena)
    fixed(..., ranges) -> Choice                            (exactly these ranges)
    group_source(...)                                       (the C loop of one group)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.aot.graph import Graph
from pipeline.aot.ops import MAX_DIMS, Kernel
from pipeline.aot.planner import Plan, Step, plan

BUFFER_BASE = 2 << 24        # pseudo tensor ids of line buffers in the arena plan
GROUP_SCRATCH_BASE = 3 << 24  # one shared work space per group
MAX_GROUP_OPS = 24
BANDS = (1, 2, 4, 8)
SLACKS = (0, 2, 4, 8)


@dataclass
class Call:
    """One kernel call on a band: output rows [lo, hi), input bands, storage rows."""

    pos: int                                  # kernel position
    lo: int
    hi: int
    out_at: int                               # storage row of output row `lo`
    ins: list[tuple[int, int, int]]           # per activation input: first row, rows, storage


@dataclass
class Move:
    """Rows still needed, moved to the front of a line buffer before its producer writes."""

    tid: int
    src: int                                  # storage row of the first row moved
    rows: int


@dataclass
class Group:
    """A striped range of kernels and its static schedule."""

    positions: list[int]
    inputs: list[int]                         # whole tensors read; the largest first
    outputs: list[int]                        # whole tensors written; the sink first
    caps: dict[int, int]                      # buffered tensor -> rows its line buffer holds
    mode: str                                 # "pull" or "step" (see `schedule`)
    band: int                                 # rows per call at most
    slack: int                                # rows of line buffer beyond the least needed
    actions: list[Call | Move]                # in execution order
    overlap: int | None                       # sink vs inputs[0], as Step.overlap
    index: int = 0                            # position among the model's groups
    buffer_tid: dict[int, int] = field(default_factory=dict)
    scratch_tid: int = -1

    @property
    def first(self) -> int:
        return self.positions[0]

    @property
    def last(self) -> int:
        return self.positions[-1]

    def moved_bytes(self, g: Graph) -> int:
        """Bytes the line-buffer moves copy per inference."""
        return sum(a.rows * _row_bytes(g, a.tid) for a in self.actions if isinstance(a, Move))

    def calls(self) -> int:
        return sum(1 for a in self.actions if isinstance(a, Call))

    def cost(self, g: Graph) -> int:
        """Rough instructions the striping adds: per call (set-up, work-space preparation)
        and per byte moved."""
        return 300 * self.calls() + self.moved_bytes(g)


@dataclass
class Choice:
    """The groups the planner kept, the plan with them, and the per-op plan for comparison."""

    groups: list[Group]
    plan: Plan
    base_plan: Plan
    step_of: list[int]                        # kernel position -> planner step
    base_step_of: list[int]


def _h(g: Graph, t: int) -> int:
    return g.tensors[t].shape[1]


def _row_bytes(g: Graph, t: int) -> int:
    s = g.tensors[t].shape
    return s[2] * s[3]


def _act_inputs(g: Graph, k: Kernel) -> list[tuple[int, int]]:
    """(placeholder index, tensor) of the activation inputs an op reads by rows."""
    return [(j, t) for j, t in enumerate(k.inputs) if t >= 0 and not g.tensors[t].is_const]


def _striped_tensor(g: Graph, t: int) -> bool:
    x = g.tensors[t]
    return len(x.shape) == 4 and x.shape[0] == 1 and x.dtype == "int8"


def stripeable(g: Graph, k: Kernel) -> bool:
    """Whether a kernel can run on bands."""
    if k.rows is None or k.alias or len(k.outputs) != 1:
        return False
    if sum("&@op@p" in c for c in k.code) != 1:  # the band call patches a copy of the params
        return False
    ts = [t for _, t in _act_inputs(g, k)] + k.outputs
    return bool(_act_inputs(g, k)) and all(_striped_tensor(g, t) for t in ts)


def _need_hi(g: Graph, k: Kernel, t_in: int, hi_out: int) -> int:
    """Rows [0, n) of the input needed for output rows [0, hi_out)."""
    if hi_out <= 0:
        return 0
    r = k.rows
    if r.kind == "window":
        return max(0, min(_h(g, t_in), (hi_out - 1) * r.stride - r.pad + r.span))
    return hi_out


def _need_lo(g: Graph, k: Kernel, t_in: int, lo_out: int) -> int:
    """First input row read by output rows >= lo_out."""
    r = k.rows
    if r.kind == "window":
        return min(_h(g, t_in), max(0, lo_out * r.stride - r.pad))
    return lo_out


class _NoBands(Exception):
    """A band would read no input row: the range is not striped."""


def schedule(g: Graph, kernels: list[tuple[int, Kernel]], positions: list[int],
             graph_outputs: set[int], band: int = 1, slack: int = 0,
             mode: str = "pull", full: bool = True) -> Group | None:
    """The band-by-band schedule of kernels[positions], or None if they cannot be striped.

    "pull": depth first, an op asks its producers for just the rows its next call reads, so
    line buffers hold little more than one window each. "step": each step advances the sink
    by `band` rows and every op computes at once all rows that needs (fewer, larger calls,
    longer line buffers). With `full` False only the sizes and the overlap are computed (what
    planning needs), not the actions.
    """
    ks = {p: kernels[p][1] for p in positions}
    if not all(stripeable(g, k) for k in ks.values()):
        return None
    acts_of = {p: [t for _, t in _act_inputs(g, ks[p])] for p in positions}
    produced = {ks[p].outputs[0]: p for p in positions}
    if len(produced) != len(positions):
        return None
    consumers: dict[int, list[int]] = {}
    for p in positions:
        for t in acts_of[p]:
            consumers.setdefault(t, []).append(p)
    inside = set(positions)
    read_outside = {t for q, (_, k) in enumerate(kernels) if q not in inside for t in k.inputs}
    sinks = [t for t in produced if t not in consumers]
    if len(sinks) != 1:
        return None
    sink = sinks[0]
    internal = {t for t in produced
                if t not in graph_outputs and t not in read_outside and t in consumers}
    outputs = [sink] + [t for t in produced if t != sink and t not in internal]
    ext = []
    for p in positions:
        for t in acts_of[p]:
            if t not in produced and t not in ext:
                ext.append(t)
    if not ext:
        return None
    ext.sort(key=lambda t: -g.tensors[t].nbytes)

    def run(caps: dict[int, int] | None) -> tuple[list[Call | Move], dict[int, int]]:
        done = {t: 0 for t in produced}
        r0 = {t: 0 for t in internal}     # the row at storage row 0 of each line buffer
        need = {t: 0 for t in internal}   # rows each line buffer must hold at least
        acts: list[Call | Move] = []

        def call(p: int, lo: int, hi: int) -> None:
            k = ks[p]
            t = k.outputs[0]
            ins = []
            for ti in acts_of[p]:
                a, b = _need_lo(g, k, ti, lo), _need_hi(g, k, ti, hi)
                if b <= a:  # rows of padding only: no kernel is asked to read 0 rows
                    raise _NoBands
                assert ti not in produced or b <= done[ti], "band input not computed yet"
                ins.append((a, b - a, a - r0[ti] if ti in internal else a))
            at = lo
            if t in internal:
                # Rows below `keep` are read by no later call: drop them if room is short.
                keep = min(lo, *(_need_lo(g, ks[c], t, done[ks[c].outputs[0]])
                                 for c in consumers[t]))
                need[t] = max(need[t], hi - keep)
                if caps is not None and hi - r0[t] > caps[t]:
                    if lo > keep:
                        acts.append(Move(t, keep - r0[t], lo - keep))
                    r0[t] = keep
                at = lo - r0[t]
            acts.append(Call(p, lo, hi, at, ins))
            done[t] = hi

        def produce(t: int, upto: int) -> None:
            p = produced[t]
            while done[t] < upto:
                lo = done[t]
                hi = min(upto, lo + band)
                for ti in acts_of[p]:
                    if ti in produced:
                        produce(ti, _need_hi(g, ks[p], ti, hi))
                call(p, lo, hi)

        if mode == "pull":
            produce(sink, _h(g, sink))
            for t in outputs[1:]:
                produce(t, _h(g, t))
            return acts, need
        h_sink = _h(g, sink)
        while done[sink] < h_sink:
            target = {sink: min(h_sink, done[sink] + band)}
            last = target[sink] == h_sink
            for p in reversed(positions):
                t = ks[p].outputs[0]
                if t == sink:
                    continue
                hi = max(_need_hi(g, ks[c], t, target[ks[c].outputs[0]]) for c in consumers[t])
                if last and t not in internal:
                    hi = _h(g, t)
                target[t] = max(hi, done[t])
            for p in positions:
                t = ks[p].outputs[0]
                if done[t] < target[t]:
                    call(p, done[t], target[t])
        return acts, need

    try:
        rough, need = run(None)  # storage rows not final, rows and order are
        caps = {t: min(_h(g, t), need[t] + slack) for t in internal}
        actions = run(caps)[0] if full else []
    except _NoBands:
        return None
    grp = Group(list(positions), ext, outputs, caps, mode, band, slack, actions, None)
    grp.overlap = _sink_overlap(g, ks, acts_of, rough, grp)
    if full:
        _check(g, ks, acts_of, grp)
    return grp


def _sink_overlap(g: Graph, ks: dict[int, Kernel], acts_of: dict[int, list[int]],
                  actions: list[Call | Move], grp: Group) -> int | None:
    """Smallest in_off - out_off with which the sink may share memory with inputs[0].

    A call writing sink rows [.., hi) must stay below every row of the input that a later call
    (or this call, unless it is elementwise: it reads element i before writing element i) still
    reads.
    """
    src, sink = grp.inputs[0], grp.outputs[0]
    rb_in, rb_out = _row_bytes(g, src), _row_bytes(g, sink)
    calls = [a for a in actions if isinstance(a, Call)]
    first_read = []  # per call: first input row it reads, or None
    for c in calls:
        rows = [a for t, (a, n, _) in zip(acts_of[c.pos], c.ins, strict=True)
                if t == src and n > 0]
        first_read.append(min(rows) if rows else None)
    later = [None] * (len(calls) + 1)
    for i in range(len(calls) - 1, -1, -1):
        r, nxt = first_read[i], later[i + 1]
        later[i] = r if nxt is None else (nxt if r is None else min(r, nxt))
    d = None
    for i, c in enumerate(calls):
        if ks[c.pos].outputs[0] != sink:
            continue
        elementwise = ks[c.pos].rows.kind == "elementwise"
        after = later[i + 1]
        own = first_read[i]
        if own is not None:
            if elementwise and rb_in == rb_out:
                d = max(d if d is not None else 0, 0)
            else:
                after = own if after is None else min(after, own)
        if after is not None:
            need = c.hi * rb_out - after * rb_in
            d = need if d is None else max(d, need)
    return d


def _check(g: Graph, ks: dict[int, Kernel], acts_of: dict[int, list[int]], grp: Group) -> None:
    """Replay the schedule on row labels: every call reads exactly the rows it expects, every
    buffer stays within its capacity, every output row is written once and all of them are."""
    store: dict[int, list] = {t: [None] * cap for t, cap in grp.caps.items()}
    written: dict[int, set[int]] = {t: set() for t in grp.outputs}
    for a in grp.actions:
        if isinstance(a, Move):
            buf = store[a.tid]
            buf[:a.rows] = buf[a.src:a.src + a.rows]
            continue
        k = ks[a.pos]
        for t, (lo, n, at) in zip(acts_of[a.pos], a.ins, strict=True):
            if t in store:
                assert 0 <= at and at + n <= len(store[t]), "band outside its line buffer"
                assert store[t][at:at + n] == list(range(lo, lo + n)), "line buffer row lost"
            elif t in written:
                assert set(range(lo, lo + n)) <= written[t], "whole tensor row not written"
        t = k.outputs[0]
        if t in store:
            assert a.out_at >= 0 and a.out_at + a.hi - a.lo <= len(store[t])
            store[t][a.out_at:a.out_at + a.hi - a.lo] = list(range(a.lo, a.hi))
        else:
            assert a.out_at == a.lo and not written[t] & set(range(a.lo, a.hi))
            written[t] |= set(range(a.lo, a.hi))
    for t in grp.outputs:
        assert written[t] == set(range(_h(g, t))), "group output not complete"
    if grp.overlap is None:
        return
    # The sink placed grp.overlap bytes below inputs[0]: no call reads a clobbered input row.
    src, sink = grp.inputs[0], grp.outputs[0]
    rb_in, rb_out = _row_bytes(g, src), _row_bytes(g, sink)
    clobbered = float("-inf")  # where the sink bytes written so far end, from the input's start
    for a in grp.actions:
        if not isinstance(a, Call):
            continue
        k = ks[a.pos]
        writes_sink = k.outputs[0] == sink
        end = a.hi * rb_out - grp.overlap
        if writes_sink and k.rows.kind != "elementwise":
            clobbered = max(clobbered, end)  # its reads may come after its writes
        for t, (lo, n, _) in zip(acts_of[a.pos], a.ins, strict=True):
            if t == src and n:
                assert lo * rb_in >= clobbered, "sink overwrote input rows still read"
        if writes_sink:
            if k.rows.kind == "elementwise":
                assert grp.overlap >= 0 or src not in acts_of[a.pos]
            clobbered = max(clobbered, end)


# ---- planning ----------------------------------------------------------------------------------


def _steps(g: Graph, kernels: list[tuple[int, Kernel]], groups: list[Group],
           nbytes: dict[int, int]) -> tuple[list[Step], list[int], dict[int, int]]:
    """Planner steps (one per ungrouped kernel, one per group), kernel -> step, extra sizes."""
    at = {gr.first: gr for gr in groups}
    inside = {p for gr in groups for p in gr.positions}
    steps: list[Step] = []
    step_of: list[int] = []
    extra: dict[int, int] = {}
    for pos, (_, k) in enumerate(kernels):
        gr = at.get(pos)
        if gr is not None:
            writes = list(gr.outputs)
            for j, (t, cap) in enumerate(gr.caps.items()):
                bt = BUFFER_BASE + (gr.index << 12) + j
                gr.buffer_tid[t] = bt
                extra[bt] = cap * _row_bytes(g, t)
                writes.append(bt)
            # One work space serves the group's ops, one call at a time.
            scratch = max(kernels[p][1].scratch for p in gr.positions)
            if scratch:
                gr.scratch_tid = GROUP_SCRATCH_BASE + gr.index
                extra[gr.scratch_tid] = scratch
                writes.append(gr.scratch_tid)
            steps.append(Step(list(gr.inputs), writes, overlap=gr.overlap))
        if pos in inside:
            step_of.append(len(steps) - 1)
            continue
        writes = k.outputs + ([k.scratch_tid] if k.scratch else [])
        steps.append(Step(list(k.inputs), writes, k.alias, k.inplace, k.overlap))
        step_of.append(len(steps) - 1)
    return steps, step_of, extra


def layout(g: Graph, kernels: list[tuple[int, Kernel]], groups: list[Group],
            nbytes: dict[int, int]) -> tuple[list[Step], list[int], dict[int, int]]:
    """Planner steps, kernel -> step, and the sizes of every buffer with `groups` striped."""
    for i, gr in enumerate(sorted(groups, key=lambda x: x.first)):
        gr.index = i
    steps, step_of, extra = _steps(g, kernels, groups, nbytes)
    sizes = dict(nbytes)
    for gr in groups:  # a grouped op's own work space is the group's; its buffers replace
        for p in gr.positions:  # the tensors they hold
            sizes.pop(kernels[p][1].scratch_tid, None)
        for t in gr.caps:
            sizes.pop(t, None)
    sizes.update(extra)
    return steps, step_of, sizes


def plan_groups(g: Graph, kernels: list[tuple[int, Kernel]], groups: list[Group],
                nbytes: dict[int, int], inputs: list[int], outputs: list[int],
                trials: int = 64) -> tuple[Plan, list[int]]:
    """The arena plan with `groups` striped."""
    steps, step_of, sizes = layout(g, kernels, groups, nbytes)
    return plan(steps, sizes, inputs, outputs, trials=trials), step_of


def live_estimate(steps: list[Step], sizes: dict[int, int], inputs: list[int],
                  outputs: list[int]) -> list[int]:
    """Cheap estimate of the bytes live at each step (what the arena must hold at least): a
    pair allowed to overlap counts as its union, an in-place output as nothing extra."""
    n = len(steps)
    first: dict[int, int] = {t: -1 for t in inputs}
    last: dict[int, int] = {t: -1 for t in inputs}
    alias: dict[int, int] = {}

    def root(t: int) -> int:
        while t in alias:
            t = alias[t]
        return t

    for i, st in enumerate(steps):
        if st.alias and st.reads and st.writes:
            alias[st.writes[0]] = root(st.reads[0])
        for t in st.writes:
            t = root(t)
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
        for t in st.reads:
            t = root(t)
            if t in sizes:
                last[t] = max(last.get(t, i), i)
    for t in outputs:
        last[root(t)] = n
    delta = [0] * (n + 2)
    for t, a in first.items():
        if t in sizes and t not in alias:
            delta[max(a, 0)] += sizes[t]
            delta[min(last.get(t, a), n) + 1] -= sizes[t]
    live, acc = [], 0
    for i, st in enumerate(steps):
        acc += delta[i]
        total = acc
        if st.reads and st.writes and not st.alias and st.reads[0] in sizes:
            a, b = root(st.writes[0]), root(st.reads[0])
            if a != b and last.get(b) == i and first.get(a) == i:
                if st.overlap is not None:
                    total += max(sizes[b] + st.overlap, sizes[a]) - sizes[a] - sizes[b]
                elif st.inplace and b not in inputs and sizes[b] >= sizes[a]:
                    total -= sizes[a]
        live.append(max(total, 0))
    return live


def _runs(g: Graph, kernels: list[tuple[int, Kernel]]) -> list[list[int]]:
    """Maximal runs of consecutive stripeable kernels."""
    runs, cur = [], []
    for pos, (_, k) in enumerate(kernels):
        if stripeable(g, k):
            cur.append(pos)
            continue
        if len(cur) > 1:
            runs.append(cur)
        cur = []
    if len(cur) > 1:
        runs.append(cur)
    return runs


def choose(g: Graph, kernels: list[tuple[int, Kernel]], nbytes: dict[int, int],
           inputs: list[int], outputs: list[int]) -> Choice:
    """Stripe the ranges of ops that lower the arena.

    Greedy on the live-bytes estimate (the range that lowers the highest step most, pull
    schedule, one row per call), then a local search with the real planner (grow, shrink or
    split each range), then every range whose removal keeps the arena is dropped, then each
    range gets the cheapest schedule (mode, rows per call, line-buffer slack) that keeps it.
    """
    base, base_step_of = plan_groups(g, kernels, [], nbytes, inputs, outputs)
    none = Choice([], base, base, base_step_of, base_step_of)
    runs = _runs(g, kernels)
    if not runs:
        return none
    run_of = {p: i for i, r in enumerate(runs) for p in r}
    outs = set(outputs)
    cache: dict[tuple, Group | None] = {}

    def group(rng: tuple[int, int], band: int = 1, slack: int = 0, mode: str = "pull",
              full: bool = True) -> Group | None:
        key = (rng, band, slack, mode, full)
        if key not in cache:
            ok = (rng[0] in run_of and run_of.get(rng[1]) == run_of[rng[0]]
                  and 0 < rng[1] - rng[0] < MAX_GROUP_OPS)
            cache[key] = schedule(g, kernels, list(range(rng[0], rng[1] + 1)), outs, band,
                                  slack, mode, full) if ok else None
        return cache[key]

    def profile(groups: list[Group]) -> tuple[list[int], list[int]]:
        steps, step_of, sizes = layout(g, kernels, groups, nbytes)
        return live_estimate(steps, sizes, inputs, outputs), step_of

    def estimate(groups: list[Group]) -> int:
        return max(profile(groups)[0], default=0)

    def real(groups: list[Group], trials: int = 8) -> int:
        return plan_groups(g, kernels, groups, nbytes, inputs, outputs, trials)[0].total

    def score(gs: list[Group]) -> tuple[int, int]:
        return real(gs), sum(x.cost(g) for x in gs)

    def disjoint(rng: tuple[int, int], others) -> bool:
        return all(rng[1] < a or b < rng[0] for a, b in others)

    # 1. Greedy on the estimate: lower the highest step, or the number of steps that high.
    # A range changes the live bytes of its own ops only, so it must cover a highest step.
    cands = [(r[i], r[j]) for r in runs for i in range(len(r))
             for j in range(i + 1, min(len(r), i + MAX_GROUP_OPS))]
    chosen: dict[tuple[int, int], Group] = {}
    live, _ = profile([])
    current = (max(live), live.count(max(live)))
    while True:
        live, step_of = profile(list(chosen.values()))
        peak = {p for p in range(len(kernels)) if live[step_of[p]] == current[0]}
        best = None
        for rng in cands:
            if not any(rng[0] <= p <= rng[1] for p in peak):
                continue
            inner = [k for k in chosen if rng[0] <= k[0] and k[1] <= rng[1]]
            if not disjoint(rng, [k for k in chosen if k not in inner]):
                continue
            gr = group(rng, full=False)
            if gr is None:
                continue
            est, _ = profile([v for k, v in chosen.items() if k not in inner] + [gr])
            key = (max(est), est.count(max(est)), rng[1] - rng[0])
            if key[:2] < current and (best is None or key < best[0]):
                best = (key, rng)
        if best is None:
            break
        current, rng = best[0][:2], best[1]
        chosen = {k: v for k, v in chosen.items() if not (rng[0] <= k[0] and k[1] <= rng[1])}
        chosen[rng] = group(rng, full=False)
    if not chosen:
        return none

    # 2. Local search with the planner: grow, shrink or split a range.
    groups = sorted((group((x.first, x.last)) for x in chosen.values()), key=lambda x: x.first)
    cur = score(groups)

    def variants(i: int):
        gr = groups[i]
        others = [(x.first, x.last) for j, x in enumerate(groups) if j != i]
        for da in (-2, -1, 0, 1, 2):
            for db in (-2, -1, 0, 1, 2):
                rng = (gr.first + da, gr.last + db)
                if (da, db) != (0, 0) and disjoint(rng, others):
                    yield [rng]
        for cut in range(gr.first + 1, gr.last):
            yield [(gr.first, cut), (cut + 1, gr.last)]

    moved = True
    while moved:
        moved = False
        for i in range(len(groups)):
            for rngs in variants(i):
                light = [group(r, full=False) for r in rngs]
                if any(x is None for x in light):
                    continue
                if estimate(groups[:i] + light + groups[i + 1:]) > cur[0]:
                    continue
                trial = groups[:i] + [group(r) for r in rngs] + groups[i + 1:]
                sc = score(trial)
                if sc < cur:
                    groups, cur, moved = sorted(trial, key=lambda x: x.first), sc, True
                    break
            if moved:
                break

    # 3. Only where it lowers the peak.
    for gr in list(groups):
        trial = [x for x in groups if x is not gr]
        if trial and real(trial) <= cur[0]:
            groups, cur = trial, score(trial)
    if cur[0] >= base.total:
        return none

    # 4. The cheapest schedule of each range that keeps the arena.
    for i in range(len(groups)):
        rng = (groups[i].first, groups[i].last)
        opts = [group(rng, b, s, m) for m in ("step", "pull") for b in BANDS for s in SLACKS]
        for alt in sorted((x for x in opts if x is not None), key=lambda x: x.cost(g)):
            if alt.cost(g) >= groups[i].cost(g):
                break
            trial = groups[:i] + [alt] + groups[i + 1:]
            if estimate(trial) <= cur[0] and real(trial) <= cur[0]:
                groups[i] = alt
                break
    p, step_of = plan_groups(g, kernels, groups, nbytes, inputs, outputs)
    if p.total >= base.total:
        return none
    return Choice(groups, p, base, step_of, base_step_of)


def fixed(g: Graph, kernels: list[tuple[int, Kernel]], nbytes: dict[int, int],
          inputs: list[int], outputs: list[int], ranges: list[tuple]) -> Choice:
    """Stripe exactly `ranges`, each (first, last[, rows per call[, "pull" | "step"]]) op
    positions, whether or not that lowers the arena: for tests and experiments. A range that
    cannot be striped raises a one-line ConfigError."""
    from pipeline.errors import ConfigError

    base, base_step_of = plan_groups(g, kernels, [], nbytes, inputs, outputs)
    groups: list[Group] = []
    for r in ranges:
        first, last, band, mode = (tuple(r) + (1, "pull")[len(r) - 2:])[:4]
        gr = schedule(g, kernels, list(range(first, last + 1)), set(outputs), band, 0, mode)
        if gr is None or any(not (last < x.first or x.last < first) for x in groups):
            raise ConfigError(f"{g.name}: ops {first}-{last} cannot run striped (each op must "
                              "be a convolution, depthwise, pooling or same-shape ADD/MUL on "
                              "NHWC int8, ranges disjoint, with one tensor handed on)")
        groups.append(gr)
    groups.sort(key=lambda x: x.first)
    p, step_of = plan_groups(g, kernels, groups, nbytes, inputs, outputs)
    return Choice(groups, p, base, step_of, base_step_of)


# ---- C -----------------------------------------------------------------------------------------

MOVE_HELPER = """/* Moves n bytes to a lower address (the regions may overlap): a line buffer drops
   the rows no op reads any more. */
static void {p}_move_down(uint8_t *dst, const uint8_t *src, size_t n) {{
  size_t i = 0;
  if ((((uintptr_t)dst | (uintptr_t)src) & 3u) == 0) {{
    for (; i + 4 <= n; i += 4) {{
      *(uint32_t *)(void *)(dst + i) = *(const uint32_t *)(const void *)(src + i);
    }}
  }}
  for (; i < n; ++i) dst[i] = src[i];
}}
"""


def group_source(g: Graph, kernels: list[tuple[int, Kernel]], gr: Group, plan: Plan,
                 names, pointer, tag) -> tuple[list[str], list[str]]:
    """Declarations (the action table) and statements of one group's loop.

    Each table row is one action: its case number, then the values that vary between the
    actions of that case (the others are written into the code). `pointer(tid, write)` is
    the emitter's C pointer of a constant tensor, `tag(pos)` the prefix of the op's
    declarations.
    """
    arena = f"{names.p}_arena"
    cases: list[tuple[str, object]] = []
    for p in gr.positions:
        t = kernels[p][1].outputs[0]
        if t in gr.caps:
            cases.append(("move", t))
        cases.append(("call", p))
    index = {c: i for i, c in enumerate(cases)}
    rows_of: dict[int, list] = {i: [] for i in range(len(cases))}
    seq = []
    for a in gr.actions:
        i = index[("move", a.tid) if isinstance(a, Move) else ("call", a.pos)]
        seq.append((i, len(rows_of[i])))
        rows_of[i].append(a)

    def off(t: int, row: int) -> int:
        base = plan.offsets[gr.buffer_tid[t]] if t in gr.caps else plan.offsets[t]
        return base + row * _row_bytes(g, t)

    varying: dict[int, list[list[int]]] = {i: [] for i in rows_of}

    def field(i: int, values: list[int]) -> str:
        if all(v == values[0] for v in values):
            return str(values[0])
        varying[i].append(values)
        return f"e[{len(varying[i])}]"

    body: list[str] = []
    for i, (kind, what) in enumerate(cases):
        acts = rows_of[i]
        if not acts:
            continue
        if kind == "move":
            n = field(i, [a.rows * _row_bytes(g, what) for a in acts])
            src = field(i, [off(what, a.src) for a in acts])
            body += [f"case {i}:",
                     f"  {names.p}_move_down({arena} + {off(what, 0)}, {arena} + {src}, "
                     f"(size_t){n});", "  break;"]
            continue
        k = kernels[what][1]
        r = k.rows
        count = field(i, [a.hi - a.lo for a in acts])
        if r.kind == "window":
            sets = [f"bp.out_h = {count};", f"bp.in_h = {field(i, [a.ins[0][1] for a in acts])};",
                    f"bp.pad_h = {field(i, [_band_pad(r, a) for a in acts])};"]
        else:
            sets = [f"bp.dims[{MAX_DIMS - 3}] = {count};"]
        ptrs = {}
        for n_in, (j, ti) in enumerate(_act_inputs(g, k)):
            o = field(i, [off(ti, a.ins[n_in][2]) for a in acts])
            ptrs[f"@in{j}@"] = f"(const int8_t *)({arena} + {o})"
        o = field(i, [off(k.outputs[0], a.out_at) for a in acts])
        ptrs["@out0@"] = f"(int8_t *)({arena} + {o})"
        for j, tid in enumerate(k.inputs):
            if f"@in{j}@" not in ptrs and tid >= 0:
                ptrs[f"@in{j}@"] = pointer(tid, False)
        calls = []
        for line in k.code:
            line = line.replace("&@op@p", "&bp").replace("@op@", tag(what))
            for ph, c in ptrs.items():
                line = line.replace(ph, c)
            calls.append(line)
        op = g.ops[kernels[what][0]]
        body += [f"case {i}: {{ /* op {op.index}: {op.name} */", f"  {r.params} bp = {tag(what)}p;",
                 *("  " + x for x in sets), *("  " + x for x in calls), "  break;", "}"]
    width = 1 + max(len(v) for v in varying.values())
    table = [[i] + [v[j] for v in varying[i]] + [0] * (width - 1 - len(varying[i]))
             for i, j in seq]
    ctype = "int32_t" if any(abs(v) > 32767 for row in table for v in row) else "int16_t"
    tab = f"{names.p}_stripe{gr.index}"
    decls = [f"static const {ctype} {tab}[{len(table)}][{width}] = {{\n  " +
             ",\n  ".join("{" + ", ".join(map(str, row)) + "}" for row in table) + "\n};"]
    ops = ", ".join(g.ops[kernels[p][0]].name for p in gr.positions)
    first, last = g.ops[kernels[gr.first][0]].index, g.ops[kernels[gr.last][0]].index
    out = [f"/* ops {first}-{last} striped ({ops}): {gr.calls()} kernel calls on bands of "
           f"at most {gr.band} row{'s' if gr.band > 1 else ''} */",
           "{",
           "  int s;",
           f"  for (s = 0; s < {len(table)}; ++s) {{",
           f"    const {ctype} *e = {tab}[s];",
           "    switch (e[0]) {"]
    out += ["    " + x for x in body]
    out += ["    default:", "      break;", "    }", "  }", "}"]
    return decls, out


def _band_pad(r, a: Call) -> int:
    """Top padding of a band: the part of the real padding above it (0 inside the tensor)."""
    return a.ins[0][0] - (a.lo * r.stride - r.pad)


# ---- reporting ---------------------------------------------------------------------------------


def live_bytes(p: Plan, n_steps: int) -> list[int]:
    """Bytes of the arena in use at each planner step (union of the live buffers)."""
    out = []
    for i in range(n_steps):
        spans = sorted((off, off + size) for off, size, (lo, hi) in p.spans if lo <= i <= hi)
        total, end = 0, -1
        for a, b in spans:
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
        out.append(total)
    return out
