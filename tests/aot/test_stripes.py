"""Striped execution and quantize-on-write inputs on the host, bit-exact with TFLM.

Ranges of ops run band by band (`pipeline.aot.stripes`): forced over odd sizes, strides 2,
SAME/VALID padding, dilation, pooling, residual ADDs and MUL with several band heights, and as
the planner chooses them on ResNet-8, a MobileNet and float-I/O models; under ASan/UBSan too.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from aot_helpers import SANITIZE, STRICT, check_bit_exact, io_specs, random_inputs
from aot_models import converted, mobilenet_v1, resnet8
from stripe_models import CHAINS, build, small_peak_elsewhere, stripe_range

from pipeline.aot import compile_model, export_aot
from pipeline.aot.stripes import Call, Move
from pipeline.errors import ConfigError
from pipeline.tflm import run_tflm


@pytest.fixture(scope="module")
def chains(keras):
    return {name: build(keras, fn, seed=i) for i, (name, fn) in enumerate(sorted(CHAINS.items()))}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_forced_stripes_bit_exact(chains, name, tmp_path):
    """The longest stripeable range, both schedules with 1, 2 and 3 rows per call, then as
    the planner likes."""
    model, _ = chains[name]
    first, last = stripe_range(model)
    assert last - first >= 3, (first, last)
    spec, _, _ = io_specs(model)
    inputs = random_inputs(spec, 12, np.random.default_rng(1))
    ref = run_tflm(model, inputs)
    for mode in ("pull", "step"):
        for band in (1, 2, 3):
            spec = [(first, last, band, mode)]
            c = compile_model(model, stripe=spec)
            (gr,) = c.groups
            assert (gr.mode, gr.band) == (mode, band) and gr.caps  # line buffers exist
            assert any(cap < c.graph.tensors[t].shape[1] for t, cap in gr.caps.items())
            res, _ = check_bit_exact(model, tmp_path / f"{mode}{band}", inputs=inputs,
                                     stripe=spec, ref=ref)
            assert res.striped == [(first, last)]
    check_bit_exact(model, tmp_path / "auto", inputs=inputs, ref=ref)


def test_schedule_computes_every_row_once(chains):
    """Calls cover each produced row exactly once; line buffers move only rows still needed."""
    model, _ = chains["residual"]
    first, last = stripe_range(model)
    c = compile_model(model, stripe=[(first, last, 2, "step")])
    (gr,) = c.groups
    g = c.graph
    seen: dict[int, list[int]] = {}
    for a in gr.actions:
        if isinstance(a, Call):
            seen.setdefault(c.kernels[a.pos][1].outputs[0], []).extend(range(a.lo, a.hi))
        else:
            assert isinstance(a, Move) and a.rows > 0 and a.src > 0
    for t, rows in seen.items():
        assert rows == list(range(g.tensors[t].shape[1])), t
    assert gr.outputs[0] == c.kernels[last][1].outputs[0]


def test_bad_forced_range_is_one_line(chains):
    model, _ = chains["chain_odd_valid"]
    n = len(compile_model(model, stripe=False).kernels)
    with pytest.raises(ConfigError, match=r"ops 0-\d+ cannot run striped") as e:
        compile_model(model, stripe=[(0, n - 1)])  # the dense head cannot
    assert "\n" not in str(e.value)


def test_planner_stripes_only_where_the_peak_drops(keras):
    model, _ = build(keras, small_peak_elsewhere)
    c = compile_model(model)
    assert c.groups == [] and c.arena_bytes == c.per_op_arena_bytes
    live = c.layer_live_bytes()
    assert [a for a, _ in live] == [b for _, b in live]
    assert max(b for _, b in live) <= c.arena_bytes


@pytest.fixture(scope="module")
def rn8(keras):
    return converted(resnet8(keras), (32, 32, 3), seed=1)


def test_resnet8_striped_half_of_tflm_sanitized(rn8, tmp_path):
    """The residual stages run band by band: the arena is at most half of TFLM's."""
    c = compile_model(rn8)
    names = [c.graph.ops[c.kernels[p][0]].name for gr in c.groups for p in gr.positions]
    assert "ADD" in names and c.arena_bytes < c.per_op_arena_bytes
    res, ref = check_bit_exact(rn8, tmp_path, n=6, seed=1, flags=SANITIZE)
    print(f"\nResNet-8: AOT arena {res.arena_bytes} B (op by op {res.per_op_arena_bytes} B), "
          f"TFLM {ref.arena['total']} B; {res.stripes}")
    assert res.arena_bytes <= 0.5 * ref.arena["total"]
    live = c.layer_live_bytes()
    assert max(b for _, b in live) <= c.arena_bytes < max(a for a, _ in live)


def test_mobilenet_high_res_layers_striped(keras, tmp_path):
    """MobileNet v1 on 64x64: the first, highest-resolution layers run band by band."""
    b = converted(mobilenet_v1(keras, (64, 64, 3), alpha=0.25, classes=3,
                               blocks=[(64, 1), (128, 2), (128, 1), (256, 2)]), (64, 64, 3))
    c = compile_model(b)
    assert c.groups and c.groups[0].first <= 3 and c.arena_bytes < c.per_op_arena_bytes
    check_bit_exact(b, tmp_path, n=6)


@pytest.fixture(scope="module")
def float_mnv1(keras):
    shape = (48, 40, 3)
    rng = np.random.default_rng(3)
    rep = rng.uniform(-1, 1, size=(16, *shape)).astype(np.float32)
    m = mobilenet_v1(keras, shape, alpha=0.25, classes=3, blocks=[(64, 1), (128, 2), (128, 1)])
    return converted(m, shape, seed=3, int8_io=False), rep


def test_float_input_quantized_on_write(float_mnv1, tmp_path):
    """No float copy of the input in the arena; outputs bit-exact, under ASan/UBSan too."""
    model, rep = float_mnv1
    c = compile_model(model)
    (q,) = c.quantized_inputs.values()
    g = c.graph
    assert g.tensors[g.inputs[0]].dtype == "float32" and g.tensors[q].dtype == "int8"
    assert g.inputs[0] not in c.plan.offsets and q in c.plan.offsets
    assert c.arena_bytes < g.tensors[g.inputs[0]].nbytes
    res, ref = check_bit_exact(model, tmp_path / "asan", n=6, seed=3, reps=rep, flags=SANITIZE)
    assert res.arena_bytes <= 0.5 * ref.arena["total"]
    h = (tmp_path / "asan" / "gen" / "tp_model.h").read_text()
    assert "#define TP_INPUT0_QUANTIZED 1" in h and "#define TP_INPUT0_TYPE_FLOAT32 1" in h
    assert f"#define TP_INPUT0_OFFSET {c.plan.offsets[q]}" in h
    # The compatibility build keeps the whole float input outside the arena, as before.
    check_bit_exact(model, tmp_path / "compat", n=6, seed=3, reps=rep,
                    flags=[*STRICT, "-DTP_FLOAT_INPUT_BUFFER"])


API_TEST = r"""
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tp_model.h"

int main(void) {
  static float x[TP_INPUT0_ELEMENTS];
  unsigned char raw[9];
  int8_t *q = tp_input_quantized(0);
  size_t i;
  for (i = 0; i < TP_INPUT0_ELEMENTS; ++i) x[i] = (float)((int)(i % 17) - 8) * 0.125f;
  if (tp_input(0) != NULL || q == NULL || tp_input_quantized(1) != NULL) return 10;
  if (tp_input_bytes(0) != TP_INPUT0_BYTES || TP_INPUT0_BYTES != 4 * TP_INPUT0_ELEMENTS) return 11;
  memcpy(raw + 1, x, 8);  /* misaligned source: allowed */
  if (tp_input_write(0, 0, raw + 1, 8) != 0) return 12;
  if (tp_input_write(0, 2, raw, 4) != -1 || tp_input_write(0, 0, raw, 6) != -1) return 13;
  if (tp_input_write(0, TP_INPUT0_BYTES - 4, raw, 8) != -1) return 14;
  if (tp_input_write(1, 0, raw, 4) != -1 || tp_input_write(-1, 0, raw, 4) != -1) return 15;
  if (tp_input_write_f32(0, TP_INPUT0_ELEMENTS, x, 1) != -1) return 16;
  if (tp_input_write_f32(0, 2, x + 2, TP_INPUT0_ELEMENTS - 2) != 0) return 17;
  if (tp_input_write(0, TP_INPUT0_BYTES, raw, 0) != 0) return 18;
  for (i = 0; i < TP_INPUT0_ELEMENTS; ++i) {
    /* what TFLM's QUANTIZE computes: round half away from zero, then clamp */
    long r = (long)roundf(x[i] / TP_INPUT0_QSCALE) + TP_INPUT0_QZERO_POINT;
    r = r < -128 ? -128 : r > 127 ? 127 : r;
    if (q[i] != (int8_t)r) return 19;
  }
  if (tp_invoke() != 0) return 20;
  printf("ok\n");
  return 0;
}
"""


def test_input_write_api(float_mnv1, tmp_path):
    """tp_input_write / _f32 / tp_input_quantized: ranges, alignment, quantized values."""
    model, _ = float_mnv1
    export_aot(model, tmp_path / "gen")
    exe = tmp_path / "api.exe"
    (tmp_path / "harness.c").write_text(API_TEST)
    subprocess.run(["gcc", *SANITIZE, "-I", str(tmp_path / "gen"),
                    *sorted(map(str, (tmp_path / "gen").glob("*.c"))), str(tmp_path / "harness.c"),
                    "-o", str(exe), "-lm"], check=True, capture_output=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "ok\n", (proc.returncode, proc.stderr[-2000:])


def test_profile_and_notes_show_the_saving(rn8):
    from pipeline.profile import format_table, profile_tflite

    prof = profile_tflite(rn8)
    text = format_table(prof)
    assert "AOT live B: per-op plan / striped" in text
    assert f"AOT arena planned op by op: {prof.aot_per_op_arena_bytes:,} bytes" in text
    assert prof.aot_arena_bytes < prof.aot_per_op_arena_bytes and prof.aot_stripes
    assert all(lc.aot_live is not None for lc in prof.layers)
    assert max(lc.aot_live for lc in prof.layers) <= prof.aot_arena_bytes
    assert max(lc.aot_live_per_op for lc in prof.layers) > prof.aot_arena_bytes


def test_live_bytes_counts_each_byte_once():
    from pipeline.aot.planner import Plan
    from pipeline.aot.stripes import live_bytes

    # buffers: [0, 100) alive 0-1, [50, 150) alive 1-2 (overlapping the first), [200, 216) at 2
    p = Plan({}, 224, [], [(0, 100, (0, 1)), (50, 100, (1, 2)), (200, 16, (2, 2))])
    assert live_bytes(p, 4) == [100, 150, 116, 0]


@pytest.mark.parametrize("name", ["residual", "chain_odd_valid"])
def test_sink_overlap_is_tight(chains, name):
    """The replay accepts the computed sink/input distance and rejects one byte less."""
    from pipeline.aot.stripes import _act_inputs, _check

    model, _ = chains[name]
    first, last = stripe_range(model)
    for mode in ("pull", "step"):
        c = compile_model(model, stripe=[(first, last, 1, mode)])
        (gr,) = c.groups
        assert gr.overlap is not None
        ks = {p: c.kernels[p][1] for p in gr.positions}
        acts = {p: [t for _, t in _act_inputs(c.graph, k)] for p, k in ks.items()}
        _check(c.graph, ks, acts, gr)
        gr.overlap -= 1
        with pytest.raises(AssertionError):
            _check(c.graph, ks, acts, gr)
        gr.overlap += 1


def test_export_no_stripe_plans_op_by_op(rn8, tmp_path):
    """`tinypipe export --no-stripe` trades the striped arena for the op-by-op one."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    model = tmp_path / "rn8.tflite"
    model.write_bytes(rn8)
    per_op, striped = (compile_model(rn8, stripe=s).arena_bytes for s in (False, True))
    assert striped < per_op
    for flag, want in (([], striped), (["--no-stripe"], per_op)):
        out = tmp_path / f"c{len(flag)}"
        res = CliRunner().invoke(cli, ["export", "--backend", "aot", "--model", str(model),
                                       "--out", str(out), *flag])
        assert res.exit_code == 0, res.output
        assert f"(arena {want:,} B" in res.output
        assert f"#define TP_ARENA_BYTES {want}\n" in (out / "tp_model.h").read_text()
