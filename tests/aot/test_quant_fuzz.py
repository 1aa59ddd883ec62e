"""Quantization-parameter fuzzing: one converted op, cloned with random scales / zero points.

The converter only produces "nice" scales, so here each model's op is copied several times with
random output (and input) quantization, every copy compared with TFLM on random int8 inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from aot_helpers import check_bit_exact, convert, mutate, replicate_last_op, set_quant

from pipeline.aot.graph import schema

COPIES = 8


def _log_uniform(rng, lo=1e-3, hi=0.5):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _single(keras, shape, layer, inputs=1):
    ins = [keras.Input(shape, batch_size=1) for _ in range(inputs)]
    out = layer(ins if inputs > 1 else ins[0])
    rng = np.random.default_rng(0)
    rep = [rng.normal(size=(16, *shape)).astype(np.float32) for _ in range(inputs)]
    return convert(keras.Model(ins, out), rep)


def _fuzz(base: bytes, tmp_path, seed: int, out_quant, in_quant=None, op_edit=None):
    rng = np.random.default_rng(seed)

    def edit(m):
        sg = m.subgraphs[0]
        if in_quant:
            for t in sg.inputs:
                set_quant(sg.tensors[t], *in_quant(rng))

        def each(j, t, op):
            set_quant(t, *out_quant(rng))
            if op_edit:
                op_edit(rng, op)

        replicate_last_op(m, COPIES, each)

    res, ref = check_bit_exact(mutate(base, edit), tmp_path, n=64, seed=seed)
    assert len(ref.outputs) == COPIES + 1 and len(res.ops) == COPIES + 1
    # At least some copies must produce non-trivial outputs for the comparison to mean much.
    assert sum(len(np.unique(o)) > 4 for o in ref.outputs) >= 3
    return res


def _rand_q(rng):
    return _log_uniform(rng), int(rng.integers(-128, 128))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("layer", ["add", "mul"])
def test_fuzz_add_mul(keras, tmp_path, seed, layer):
    L = keras.layers.Add() if layer == "add" else keras.layers.Multiply()
    base = _single(keras, (5, 7), L, inputs=2)
    _fuzz(base, tmp_path, seed, _rand_q, in_quant=_rand_q)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_fuzz_relu(keras, tmp_path, seed, act):
    base = _single(keras, (40,), keras.layers.Activation(act))
    _fuzz(base, tmp_path, seed, _rand_q, in_quant=lambda r: (_log_uniform(r, 0.01, 0.2),
                                                             int(r.integers(-128, 128))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_logistic(keras, tmp_path, seed):
    base = _single(keras, (64,), keras.layers.Activation("sigmoid"))
    _fuzz(base, tmp_path, seed, lambda r: (1.0 / 256, -128),
          in_quant=lambda r: (_log_uniform(r, 0.002, 0.5), int(r.integers(-128, 128))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_hard_swish(keras, tmp_path, seed):
    base = _single(keras, (64,), keras.layers.Activation("hard_swish"))
    in_s = {0: 0.01, 1: 0.05, 2: 0.3}[seed]
    # TFLM requires output_scale >= input_scale / 128.
    _fuzz(base, tmp_path, seed, lambda r: (_log_uniform(r, in_s / 100, in_s * 4),
                                           int(r.integers(-128, 128))),
          in_quant=lambda r: (in_s, int(r.integers(-100, 100))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_softmax_beta(keras, tmp_path, seed):
    base = _single(keras, (2, 33), keras.layers.Softmax())

    def beta(rng, op):
        op.builtinOptions.beta = float(rng.choice([0.25, 0.5, 1.0, 1.7, 3.0]))

    _fuzz(base, tmp_path, seed, lambda r: (1.0 / 256, -128), op_edit=beta,
          in_quant=lambda r: (_log_uniform(r, 0.01, 0.5), int(r.integers(-128, 128))))


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_requantize(keras, tmp_path, seed):
    """QUANTIZE int8 -> int8, made by turning a RELU into a QUANTIZE op."""
    base = _single(keras, (50,), keras.layers.Activation("relu"))

    def to_quantize(m):
        m.operatorCodes[0].builtinCode = schema.BuiltinOperator.QUANTIZE
        m.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
        m.operatorCodes[0].version = 2
        m.subgraphs[0].operators[0].builtinOptionsType = 0
        m.subgraphs[0].operators[0].builtinOptions = None

    res = _fuzz(mutate(base, to_quantize), tmp_path, seed, _rand_q, in_quant=_rand_q)
    assert set(res.ops) == {"QUANTIZE"}


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_mean_and_pool(keras, tmp_path, seed):
    base = _single(keras, (6, 5, 3), keras.layers.GlobalAveragePooling2D())
    res = _fuzz(base, tmp_path, seed, _rand_q, in_quant=_rand_q)
    assert set(res.ops) == {"MEAN"}


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_conv_activation(keras, tmp_path, seed):
    """Conv with random output quantization and every fused activation (incl. RELU_N1_TO_1)."""
    base = _single(keras, (6, 6, 3), keras.layers.Conv2D(5, 3, padding="same"))

    def act(rng, op):
        op.builtinOptions.fusedActivationFunction = int(rng.choice([0, 1, 2, 3]))

    _fuzz(base, tmp_path, seed, lambda r: (_log_uniform(r, 0.002, 0.2),
                                           int(r.integers(-128, 128))),
          in_quant=_rand_q, op_edit=act)
