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
