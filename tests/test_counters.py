"""The counter that bench and the firmware report, checked against loops of known length.

Under QEMU `-icount` every instruction advances virtual time by a fixed step, so the port's
counter must advance by exactly the loop's instructions, give or take one tick of its clock.
A wrong clock in the board registry (instructions per tick) fails here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pipeline.aot.arm import ENVS, arm_tools_missing, link_elf
from pipeline.emulator import make_emulator

pytestmark = pytest.mark.skipif(arm_tools_missing() is not None,
                                reason=f"needs the ARM tool chain: {arm_tools_missing()}")
HERE = Path(__file__).parent
LOOPS = (100_000, 1_100_000, 3_100_000)  # iterations of a two-instruction loop


@pytest.mark.parametrize("env", sorted(ENVS))
def test_counter_counts_instructions(env: str, tmp_path: Path) -> None:
    spec = ENVS[env]
    elf = link_elf([HERE / "counters" / "calibrate.c"], tmp_path / "cal.elf", env,
                   (f"-DCAL_LOOPS={','.join(map(str, LOOPS))}",))
    make_emulator(spec, elf, serial="none", semihosting=True, cwd=tmp_path).run(60)
    counts = struct.unpack(f"<{len(LOOPS)}I", (tmp_path / "counts.bin").read_bytes())
    tick = spec.instructions_per_tick
    overhead = counts[0] - 2 * LOOPS[0]
    assert -tick <= overhead <= 100 + tick, (env, counts)  # a call, two reads
    for n, c in zip(LOOPS[1:], counts[1:], strict=True):
        # the same overhead, so the difference is the loop alone, within one tick
        assert abs((c - counts[0]) - 2 * (n - LOOPS[0])) <= tick, (env, counts, tick)
