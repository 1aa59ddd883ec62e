"""export_aot / check_supported behaviour: refusals, files, header contract, prefixes, compilers."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import numpy as np
import pytest
from aot_helpers import STRICT, check_bit_exact, compile_c, convert

from pipeline.aot import KERNELS_DIR, check_supported, export_aot
from pipeline.aot.graph import load_graph
from pipeline.errors import ConfigError, ModelError, UnsupportedOpError


@pytest.fixture(scope="module")
def small_model(keras):
    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 2), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3)(x))
    return convert(m, rng.normal(size=(16, 8, 8, 2)).astype(np.float32))


@pytest.fixture(scope="module")
def tanh_model(keras):
    rng = np.random.default_rng(1)
    inp = keras.Input((6,), batch_size=1)
    x = keras.layers.Dense(5)(inp)
    m = keras.Model(inp, keras.layers.Activation("tanh")(x))
    return convert(m, rng.normal(size=(16, 6)).astype(np.float32))


def test_refuses_unsupported_op_cleanly(tanh_model, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(tanh_model)
    out = tmp_path / "gen"
    with pytest.raises(UnsupportedOpError) as e:
        export_aot(path, out)
    msg = str(e.value)
    assert "\n" not in msg
    assert re.fullmatch(r".*model\.tflite: op #1 TANH is not supported by the AOT backend; "
                        r"use --backend tflm", msg), msg
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]  # no temp dir left
    with pytest.raises(UnsupportedOpError):
        check_supported(path)


def test_refusal_keeps_previous_export(small_model, tanh_model, tmp_path):
    export_aot(small_model, tmp_path / "gen")
    before = {p.name: p.read_bytes() for p in (tmp_path / "gen").iterdir()}
    with pytest.raises(UnsupportedOpError):
        export_aot(tanh_model, tmp_path / "gen")
    assert {p.name: p.read_bytes() for p in (tmp_path / "gen").iterdir()} == before


def test_bad_inputs(tmp_path):
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        export_aot(b"garbage!" * 4, tmp_path / "gen")
    with pytest.raises(ModelError, match="cannot read model"):
        check_supported(tmp_path / "missing.tflite")
    with pytest.raises(ConfigError, match="C identifier"):
        export_aot(b"", tmp_path / "gen", prefix="9bad")
    assert not (tmp_path / "gen").exists()


def test_result_files_and_header(small_model, tmp_path):
    res = export_aot(small_model, tmp_path / "gen")
    names = sorted(p.name for p in res.files)
    assert names == sorted(["tp_model.h", "tp_model.c", "tinykernels.h", "tk_fixedpoint.h",
                            "tk_conv.c", "tk_conv_dsp.c", "tk_conv_mve.c", "tk_mean.c", "tk_fc.c",
                            "tk_fc_mve.c", "tk_dsp.h", "tk_mve.h"])
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == names
    assert res.ops == ["CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert res.kernels == ["tk_conv", "tk_fc", "tk_mean"]
    g = load_graph(small_model, "m")
    weights = {t for op in g.ops if op.name != "MEAN" for t in op.inputs[1:] if t >= 0}
    assert res.weights_bytes == sum(g.tensors[t].nbytes for t in weights) >= 72 + 16 + 12
    h = (tmp_path / "gen" / "tp_model.h").read_text()
    sha = hashlib.sha256(small_model).hexdigest()[:16]
    for line in [f'#define TP_MODEL_HASH "{sha}"', f"#define TP_ARENA_BYTES {res.arena_bytes}",
                 "#define TP_NUM_INPUTS 1", "#define TP_NUM_OUTPUTS 1",
                 "#define TP_INPUT0_RANK 4", "#define TP_INPUT0_SHAPE {1, 8, 8, 2}",
                 "#define TP_INPUT0_BYTES 128", "#define TP_INPUT0_TYPE TP_TYPE_INT8",
                 "#define TP_INPUT0_TYPE_INT8 1", "#define TP_OUTPUT0_DIM1 3",
                 "#define TP_TYPE_INT8 9", "int tp_init(void);", "int tp_invoke(void);",
                 "const void *tp_output(int i);", "size_t tp_input_bytes(int i);"]:
        assert line in h, line
    assert "#define TP_INPUT0_ZERO_POINT" in h and "#define TP_OUTPUT0_SCALE 0x1." in h
    assert res.arena_bytes % 16 == 0


def test_reexport_replaces_stale_kernels(small_model, tanh_model, keras, tmp_path):
    out = tmp_path / "gen"
    export_aot(small_model, out)
    (out / "user_notes.txt").write_text("kept")
    rng = np.random.default_rng(2)
    inp = keras.Input((5, 5, 1), batch_size=1)
    m = keras.Model(inp, keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(2, 1)(inp)))
    res = export_aot(convert(m, rng.normal(size=(8, 5, 5, 1)).astype(np.float32)), out)
    names = {p.name for p in out.iterdir()}
    assert "tk_pool.c" in names and "tk_fc.c" not in names and "tk_mean.c" not in names
    assert "user_notes.txt" in names and len(res.files) == len(names) - 1


def test_prefix(small_model, tmp_path):
    res = export_aot(small_model, tmp_path / "gen", prefix="foo")
    h = (tmp_path / "gen" / "foo_model.h").read_text()
    assert "int foo_init(void);" in h and "#define FOO_ARENA_BYTES" in h
    assert "TP_" not in h and "tp_" not in h
    main = tmp_path / "main.c"
    main.write_text('#include <string.h>\n#include "foo_model.h"\n'
                    "int main(void) {\n  memset(foo_input(0), 1, foo_input_bytes(0));\n"
                    "  if (foo_init() || foo_invoke()) return 1;\n"
                    "  return foo_output(1) == 0 && FOO_OUTPUT0_BYTES == foo_output_bytes(0) &&\n"
                    "         sizeof(FOO_MODEL_HASH) == 17 ? 0 : 2;\n}\n")
    exe = tmp_path / "foo.exe"
    subprocess.run(["gcc", *STRICT, "-I", str(res.out_dir), *map(str, res.out_dir.glob("*.c")),
                    str(main), "-o", str(exe), "-lm"], check=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_prefixed_models_build_with_plain_cc_command(small_model, tmp_path):
    """The brief's build line: cc -std=c99 -O2 -I DIR DIR/*.c main.c -lm."""
    res = export_aot(small_model, tmp_path / "gen")
    compile_c(res.out_dir, tmp_path / "a.exe", ["-std=c99", "-O2"], cc="cc")


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_clang_strict_bit_exact(small_model, tmp_path):
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion",
             "-Wno-sign-conversion"]
    check_bit_exact(small_model, tmp_path, n=16, flags=flags + ["-fuse-ld=bfd"])


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_cortex_m_compiles(small_model, tmp_path):
    res = export_aot(small_model, tmp_path / "gen")
    for src in res.out_dir.glob("*.c"):
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Os", "-mcpu=cortex-m0plus", "-mthumb",
                        "-Wall", "-Wextra", "-Werror", "-c", str(src), "-o",
                        str(tmp_path / (src.stem + ".o"))], check=True)


def test_kernel_library_is_self_contained():
    """Only string.h/stdint.h/stddef.h/math.h from libc (ACLE on DSP and MVE targets), no
    malloc."""
    for f in KERNELS_DIR.iterdir():
        text = f.read_text()
        includes = set(re.findall(r'#include [<"]([^>"]+)[>"]', text))
        assert includes <= {"string.h", "stdint.h", "stddef.h", "math.h", "tinykernels.h",
                            "tk_fixedpoint.h", "tk_dsp.h", "arm_acle.h", "tk_mve.h",
                            "arm_mve.h"}, (f.name, includes)
        assert "malloc(" not in text and "printf(" not in text


def test_output_dir_mode_follows_umask(small_model, tmp_path):
    import os

    res = export_aot(small_model, tmp_path / "gen")
    umask = os.umask(0)
    os.umask(umask)
    assert res.out_dir.stat().st_mode & 0o777 == 0o777 & ~umask
