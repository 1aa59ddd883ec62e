"""Arena planner unit tests: lifetimes, aliasing, in-place reuse, read-only model inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.aot.planner import Step, _verify, place, plan


def _overlap(p, a, b, nbytes):
    oa, ob = p.offsets[a], p.offsets[b]
    return oa < ob + nbytes[b] and ob < oa + nbytes[a]


def test_chain_reuses_memory():
    # 0 -> op0 -> 1 -> op1 -> 2 -> op2 -> 3: only neighbours are alive together.
    nbytes = {0: 100, 1: 100, 2: 100, 3: 100}
    steps = [Step([0], [1]), Step([1], [2]), Step([2], [3])]
    p = plan(steps, nbytes, [0], [3])
    assert p.total == 224  # two 100-byte buffers, 16-byte aligned
    assert not _overlap(p, 0, 1, nbytes) and not _overlap(p, 1, 2, nbytes)
    assert all(off % 16 == 0 for off in p.offsets.values())


def test_reshape_aliases_and_inplace_reuses():
    nbytes = {0: 64, 1: 64, 2: 64, 3: 64}
    steps = [Step([0], [1]), Step([1], [2], alias=True), Step([2], [3], inplace=True)]
    p = plan(steps, nbytes, [0], [3])
    assert p.offsets[1] == p.offsets[2] == p.offsets[3]
    assert p.total == 128


def test_model_input_is_never_overwritten():
    # An in-place op on (a reshape of) the model input must not write into the input buffer.
    nbytes = {0: 64, 1: 64, 2: 64}
    steps = [Step([0], [1], alias=True), Step([1], [2], inplace=True)]
    p = plan(steps, nbytes, [0], [2])
    assert p.offsets[0] == p.offsets[1] and _overlap(p, 0, 2, nbytes) is False


def test_inplace_refused_when_input_still_needed():
    nbytes = {0: 64, 1: 64, 2: 64, 3: 64}
    # t1 is read again by op2, so op1 cannot overwrite it.
    steps = [Step([0], [1]), Step([1], [2], inplace=True), Step([1, 2], [3])]
    p = plan(steps, nbytes, [0], [3])
    assert not _overlap(p, 1, 2, nbytes)


@pytest.mark.parametrize("seed", range(5))
def test_random_lifetimes_never_collide(seed):
    rng = np.random.default_rng(seed)
    n = 40
    sizes = [int(x) for x in rng.integers(1, 5000, size=n)]
    lives = []
    for _ in range(n):
        a = int(rng.integers(0, 30))
        lives.append((a, a + int(rng.integers(0, 6))))
    offs, total = place(sizes, lives)
    _verify(offs, sizes, lives)
    peak = max(sum(s for s, (lo, hi) in zip(sizes, lives, strict=True) if lo <= t <= hi)
               for t in range(36))
    assert peak <= total <= 1.5 * peak + 16 * n


def _simulate_window(ih, iw, ic, oc, k, s, d, pad, dist):
    """Raster-order windowed op (what the kernels do) on one byte array, output `dist` bytes
    before the input; returns False as soon as a read sees a byte an earlier write clobbered."""
    oh = (ih + 2 * pad[0] - (k[0] - 1) * d[0] - 1) // s[0] + 1
    ow = (iw + 2 * pad[1] - (k[1] - 1) * d[1] - 1) // s[1] + 1
    base = max(dist, 0)
    out_off, in_off = base - dist, base
    clobbered = set()
    for oy in range(oh):
        for ox in range(ow):
            for c in range(oc):  # each output byte reads its whole window, then is written
                for ky in range(k[0]):
                    for kx in range(k[1]):
                        y, x = oy * s[0] - pad[0] + ky * d[0], ox * s[1] - pad[1] + kx * d[1]
                        if 0 <= y < ih and 0 <= x < iw:
                            for cc in range(ic):
                                if in_off + (y * iw + x) * ic + cc in clobbered:
                                    return False, (oh, ow)
                clobbered.add(out_off + (oy * ow + ox) * oc + c)
    return True, (oh, ow)


@pytest.mark.parametrize("ih,iw,ic,oc,k,s,d,pad", [
    (6, 5, 3, 8, (3, 3), (2, 2), (1, 1), (0, 0)),   # first conv, stride 2, expanding
    (5, 5, 4, 4, (3, 3), (1, 1), (1, 1), (1, 1)),   # 3x3 same
    (6, 6, 4, 8, (1, 1), (1, 1), (1, 1), (0, 0)),   # pointwise, expanding
    (6, 6, 8, 4, (1, 1), (1, 1), (1, 1), (0, 0)),   # pointwise, contracting
    (7, 6, 2, 2, (3, 3), (2, 2), (1, 1), (1, 1)),   # depthwise-like stride 2
    (7, 7, 2, 3, (3, 3), (1, 1), (2, 2), (2, 1)),   # dilation
    (4, 4, 3, 3, (2, 2), (2, 2), (1, 1), (0, 0)),   # pooling
])
def test_window_overlap_is_exact(ih, iw, ic, oc, k, s, d, pad):
    """The offset window_overlap allows never lets a write clobber input read later, and it is
    tight to one output pixel: that much less and some read would see a clobbered byte."""
    from pipeline.aot.planner import window_overlap

    ok, (oh, ow) = _simulate_window(ih, iw, ic, oc, k, s, d, pad, 0)
    dist = window_overlap((ih, iw), (oh, ow), ic, oc, k, s, d, pad)
    assert _simulate_window(ih, iw, ic, oc, k, s, d, pad, dist)[0]
    assert not _simulate_window(ih, iw, ic, oc, k, s, d, pad, dist - oc)[0]


def test_verify_accepts_only_the_allowed_overlap():
    sizes, lives = [100, 200], [(0, 1), (1, 2)]      # buffer 1 is the output of step 1
    pairs = {(1, 0): 40}
    _verify([48, 0], sizes, lives, pairs)             # input 48 bytes after the output: fine
    with pytest.raises(AssertionError):
        _verify([32, 0], sizes, lives, pairs)         # only 32: would clobber unread input
    with pytest.raises(AssertionError):
        _verify([0, 48], sizes, lives, pairs)         # output after the input: not allowed
    with pytest.raises(AssertionError):
        _verify([48, 0], sizes, lives)                # no pair: no overlap at all


def test_windowed_chain_overlaps_and_stays_valid():
    # in(27648) -conv s2-> 18432 -dw-> 18432 -pw-> 36864: MobileNet's first three layers.
    nbytes = {0: 27648, 1: 18432, 2: 18432, 3: 36864}
    steps = [Step([0], [1], overlap=102), Step([1], [2], overlap=400),
             Step([2], [3], overlap=18440)]
    p = plan(steps, nbytes, [0], [3])
    assert p.total <= 36864 + 32
    for a, b, dist in ((1, 0, 102), (2, 1, 400), (3, 2, 18440)):
        if _overlap(p, a, b, nbytes):
            assert p.offsets[b] - p.offsets[a] >= dist


def test_overlap_refused_when_input_still_needed():
    nbytes = {0: 64, 1: 64, 2: 64, 3: 64}
    steps = [Step([0], [1]), Step([1], [2], overlap=0), Step([1, 2], [3])]
    p = plan(steps, nbytes, [0], [3])
    assert not _overlap(p, 1, 2, nbytes)
