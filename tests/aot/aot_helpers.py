"""AOT test helpers: Keras model -> int8 .tflite -> generated C -> compare with TFLM."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "tp_model.h"

/* usage: harness IN OUT N ; IN holds N samples of all inputs back to back, OUT gets outputs. */
int main(int argc, char **argv) {
  FILE *fi, *fo;
  long n, s;
  int i;
  if (argc != 4) return 2;
  fi = fopen(argv[1], "rb");
  fo = fopen(argv[2], "wb");
  n = atol(argv[3]);
  if (!fi || !fo || tp_init() != 0) return 3;
  for (s = 0; s < n; ++s) {
    for (i = 0; i < tp_num_inputs(); ++i) {
      /* In chunks through tp_input_write, as a stream would arrive (float inputs may be
         quantized as they are written). */
      unsigned char chunk[200];
      size_t off = 0, m;
      while (off < tp_input_bytes(i)) {
        m = tp_input_bytes(i) - off < sizeof chunk ? tp_input_bytes(i) - off : sizeof chunk;
        if (fread(chunk, 1, m, fi) != m || tp_input_write(i, off, chunk, m) != 0) return 4;
        off += m;
      }
    }
    if (tp_invoke() != 0) return 5;
    for (i = 0; i < tp_num_outputs(); ++i) {
      if (fwrite(tp_output(i), 1, tp_output_bytes(i), fo) != tp_output_bytes(i)) return 6;
    }
  }
  fclose(fi);
  fclose(fo);
  return 0;
}
"""

STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]


def convert(model, rep: np.ndarray | list[np.ndarray], int8_io: bool = True) -> bytes:
    """Full-integer conversion with a representative dataset (one array per input)."""
    import tensorflow as tf

    reps = rep if isinstance(rep, list) else [rep]

    def gen():
        for i in range(len(reps[0])):
            yield [r[i:i + 1].astype(np.float32) for r in reps]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def compile_c(src_dir: Path, exe: Path, flags: list[str] | None = None,
              cc: str = "gcc") -> Path:
    """Compile the generated folder plus the test harness."""
    (src_dir.parent / "harness.c").write_text(HARNESS)
    cmd = [cc, *(flags or STRICT), "-I", str(src_dir), *sorted(map(str, src_dir.glob("*.c"))),
           str(src_dir.parent / "harness.c"), "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(f"compile failed:\n{proc.stderr[-4000:]}")
    return exe


def io_specs(model_bytes: bytes):
    """(shape, dtype) of each input and output, read with the AOT graph reader."""
    from pipeline.aot.graph import load_graph

    g = load_graph(model_bytes, "m")
    spec = [(g.tensors[t].shape, g.tensors[t].dtype) for t in g.inputs]
    ospec = [(g.tensors[t].shape, g.tensors[t].dtype) for t in g.outputs]
    return spec, ospec, g


def run_c(exe: Path, inputs: list[np.ndarray], ospec, tmp: Path) -> list[np.ndarray]:
    n = len(inputs[0])
    blob = b"".join(b"".join(np.ascontiguousarray(x[s]).tobytes() for x in inputs)
                    for s in range(n))
    (tmp / "in.bin").write_bytes(blob)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    proc = subprocess.run([str(exe), str(tmp / "in.bin"), str(tmp / "out.bin"), str(n)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode:
        raise AssertionError(f"harness failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    raw = (tmp / "out.bin").read_bytes()
    dts = [np.dtype(d) for _, d in ospec]
    per = [int(np.prod(s)) * dt.itemsize for (s, _), dt in zip(ospec, dts, strict=True)]
    arr = np.frombuffer(raw, np.uint8).reshape(n, sum(per))
    outs, off = [], 0
    for (shape, _), dt, nb in zip(ospec, dts, per, strict=True):
        o = arr[:, off:off + nb].copy().view(dt).reshape(n, *shape)
        if len(shape) and shape[0] == 1:
            o = o.reshape(n, *shape[1:])
        outs.append(o)
        off += nb
    return outs


def random_inputs(spec, n: int, rng: np.random.Generator, reps=None) -> list[np.ndarray]:
    out = []
    for k, (shape, dtype) in enumerate(spec):
        if dtype == "int8":
            out.append(rng.integers(-128, 128, size=(n, *shape), dtype=np.int8))
        elif reps is not None:
            r = reps[k] if isinstance(reps, list) else reps
            idx = rng.integers(0, len(r), size=n)
            x = r[idx].reshape(n, *shape) * rng.uniform(0.5, 1.5, size=(n,) + (1,) * len(shape))
            out.append(x.astype(np.float32))
        else:
            out.append(rng.normal(size=(n, *shape)).astype(np.float32))
    return out


def check_bit_exact(model_bytes: bytes, tmp: Path, n: int = 64, seed: int = 0, reps=None,
                    flags: list[str] | None = None, inputs=None, stripe=True, ref=None):
    """Export, compile, run on `n` inputs and assert identical outputs to TFLM. Returns result.

    `stripe` goes to export_aot; `ref` reuses an earlier TFLM run on the same inputs."""
    from pipeline.aot import export_aot
    from pipeline.tflm import run_tflm

    spec, ospec, _ = io_specs(model_bytes)
    res = export_aot(model_bytes, tmp / "gen", stripe=stripe)
    exe = compile_c(tmp / "gen", tmp / "model.exe", flags)
    rng = np.random.default_rng(seed)
    if inputs is None:
        inputs = random_inputs(spec, n, rng, reps)
    got = run_c(exe, inputs, ospec, tmp)
    ref = ref or run_tflm(model_bytes, inputs)
    for k, (g, r) in enumerate(zip(got, ref.outputs, strict=True)):
        r = r.reshape(g.shape)
        if g.dtype == np.float32:
            np.testing.assert_array_equal(g.view(np.int32), r.astype(np.float32).view(np.int32),
                                          err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, r, err_msg=f"output {k}")
    return res, ref


def mutate(model_bytes: bytes, fn) -> bytes:
    """Edit a model through the flatbuffer object API (fn gets the ModelT) and repack it."""
    import flatbuffers

    from pipeline.aot.graph import schema

    m = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    fn(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def set_quant(tensor, scale: float, zero_point: int) -> None:
    tensor.quantization.scale = [float(np.float32(scale))]
    tensor.quantization.zeroPoint = [int(zero_point)]


def replicate_last_op(m, k: int, edit) -> None:
    """Append k copies of the last op, each writing a new model output; edit(j, tensor, op)."""
    import copy

    sg = m.subgraphs[0]
    base = sg.operators[-1]
    for j in range(k):
        t = copy.deepcopy(sg.tensors[base.outputs[0]])
        t.name = f"variant{j}".encode()
        sg.tensors.append(t)
        op = copy.deepcopy(base)
        op.outputs = [len(sg.tensors) - 1]
        edit(j, t, op)
        sg.operators.append(op)
        sg.outputs = list(sg.outputs) + [len(sg.tensors) - 1]
