"""Fuzz the device protocol code (parser + command handlers) on the host with libFuzzer + ASan.

The fuzzer is built with a model of real size (a 32x32x3 input, a 2 KB and a 10-byte output),
so inputs arrive in several LOAD_BURST/LOAD_INPUT chunks, INFER answers without the outputs and
READ_OUTPUT reads them in pieces; the seed conversation is checked to reach all of that.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.hil import protocol as P

REPO = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("TINYPIPE_FUZZ_SECONDS", "20"))
IN_SHAPE = (32, 32, 3)


def _clang() -> str | None:
    for name in ("clang", "clang-14", "clang-15", "clang-16"):
        if shutil.which(name):
            return name
    return None


def _model(out: Path) -> tuple[Path, list[int]]:
    """A two-output int8 CNN of real size, exported with the AOT compiler; returns the folder
    and the bytes of each output."""
    import keras

    from pipeline.aot import export_aot
    from pipeline.quantize import quantize

    keras.utils.set_random_seed(0)
    inp = keras.Input(IN_SHAPE, batch_size=1)
    feat = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    logits = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(feat))
    model = keras.Model(inp, [feat, logits])
    rep = np.random.default_rng(0).uniform(0, 1, (16, *IN_SHAPE)).astype(np.float32)
    export_aot(quantize(model, rep), out)
    header = (out / "tp_model.h").read_text()
    sizes = [int(n) for n in re.findall(r"#define TP_OUTPUT\d+_BYTES (\d+)", header)]
    assert sorted(sizes) == [10, 16 * 16 * 8]
    return out, sizes


def _conversation(out_bytes: list[int]) -> bytes:
    """HELLO, the tensor table, a 3 KB input in a window and by LOAD_INPUT, an INFER whose
    outputs do not come inline, READ_OUTPUT of both outputs in pieces, a repeat, STATS."""
    x = bytes(range(256)) * 12
    seq = iter(range(1, 256))
    frames = [P.encode(P.Msg.HELLO, next(seq))]
    frames += [P.encode(P.Msg.TENSOR, next(seq), P.tensor_request(k, i))
               for k, i in ((0, 0), (1, 0), (1, 1))]
    first = next(seq)
    chunks = [(off, x[off:off + 1000]) for off in range(0, len(x), 1000)]
    frames += [P.encode(P.Msg.LOAD_BURST, first + k, P.load_input(0, off, d))
               for k, (off, d) in enumerate(chunks)]
    for _ in chunks[1:]:
        next(seq)
    frames.append(P.encode(P.Msg.BURST_ACK, next(seq), P.burst_ack(first, len(chunks), 0, True)))
    frames.append(P.encode(P.Msg.LOAD_INPUT, next(seq), P.load_input(0, 3000, x[3000:])))
    infer = P.encode(P.Msg.INFER, next(seq), P.infer(2, 64))
    frames += [infer, infer]  # the repeat is answered from memory
    for tensor, size in enumerate(out_bytes):
        frames += [P.encode(P.Msg.READ_OUTPUT, next(seq), P.read_output(tensor, off,
                                                                       min(900, size - off)))
                   for off in range(0, size, 900)]
    frames.append(P.encode(P.Msg.STATS, next(seq)))
    return b"".join(frames)


def _seeds(corpus: Path, out_bytes: list[int]) -> None:
    """Valid conversations, so the fuzzer starts past the CRC checks."""
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "raw_session").write_bytes(b"\x00" + _conversation(out_bytes))
    (corpus / "raw_reset").write_bytes(b"\x00" + P.encode(P.Msg.RESET, 9)
                                       + P.encode(P.Msg.HELLO, 1))
    (corpus / "raw_baud").write_bytes(b"\x00" + P.encode(P.Msg.SET_BAUD, 6,
                                                         (921600).to_bytes(4, "little")))
    (corpus / "framed").write_bytes(b"\x01" + bytes([0xFE, 1, 128]) + bytes(1024)
                                    + bytes([P.Msg.BURST_ACK, 2, 4, 1, 1, 1, 0])
                                    + bytes([P.Msg.INFER, 3, 4, 1, 0, 0, 0]))


def _trace(binary: Path, seed: Path) -> list[tuple[int, int, bytes]]:
    """(type, payload length, first payload bytes) of every frame the device sends on `seed`."""
    run = subprocess.run([str(binary), "-runs=1", str(seed)], capture_output=True, text=True,
                         env=dict(os.environ, TP_FUZZ_TRACE="1"), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = []
    for line in run.stderr.splitlines():
        if line.startswith("tx "):
            f = line.split()
            out.append((int(f[1], 16), int(f[3]), bytes(int(b, 16) for b in f[4:])))
    return out


@pytest.mark.slow
def test_protocol_fuzz_finds_nothing(tmp_path: Path) -> None:
    clang = _clang()
    if clang is None:
        pytest.skip("clang not installed (`make apt` installs it); fuzzing skipped")
    model, out_bytes = _model(tmp_path / "model")
    binary = tmp_path / "fuzz_app"
    build = subprocess.run(["bash", str(REPO / "firmware/fuzz/build.sh"), str(binary), clang,
                            str(model)], capture_output=True, text=True)
    if build.returncode != 0:
        if "fuzzer" in build.stderr and ("cannot find" in build.stderr or "not found" in
                                         build.stderr or "unsupported" in build.stderr):
            pytest.skip(f"{clang} has no libFuzzer/ASan runtime (Debian 12: libclang-rt-14-dev, "
                        "which `make apt` installs where the distribution has it); fuzzing skipped")
        pytest.fail(f"fuzzer build failed:\n{build.stderr[-2000:]}")
    corpus = tmp_path / "corpus"
    _seeds(corpus, out_bytes)

    # The seed conversation reaches the chunked paths (so the fuzzer mutates from there).
    sent = _trace(binary, corpus / "raw_session")
    types = [t for t, _, _ in sent]
    assert P.Msg.NAK not in types, sent
    ack = next(p for t, _, p in sent if t == P.Msg.BURST_ACK | P.RESPONSE)
    assert ack[1] == 4 and ack[2] == 1 and ack[4] == 0x0F  # 4 chunks, all stored, CRC asked
    infers = [(n, p) for t, n, p in sent if t == P.Msg.INFER | P.RESPONSE]
    assert len(infers) == 2 and infers[0] == infers[1]  # the repeat was replayed
    assert infers[0][1][3] == 0 and infers[0][0] == 12 + 4 * 2  # flags: outputs not inline
    reads = [(p[0], struct.unpack_from("<I", p, 2)[0], n - 6) for t, n, p in sent
             if t == P.Msg.READ_OUTPUT | P.RESPONSE]
    assert sorted(reads) == sorted((k, off, min(900, size - off))
                                   for k, size in enumerate(out_bytes)
                                   for off in range(0, size, 900))

    run = subprocess.run([str(binary), f"-max_total_time={SECONDS}", "-print_final_stats=1",
                          # RSS is mostly ASan's quarantine and shadow memory (it passed 1 GB
                          # once with a 24 MB live heap); the device code never allocates, so
                          # a tight per-input malloc limit is the check that matters
                          "-timeout=10", "-rss_limit_mb=4096", "-malloc_limit_mb=64",
                          f"-artifact_prefix={tmp_path}/",
                          str(corpus)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=SECONDS + 180)
    log = run.stderr
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("leak-*")) \
        + list(tmp_path.glob("timeout-*"))
    assert run.returncode == 0 and not crashes, \
        f"fuzzer found a problem ({[c.name for c in crashes]}):\n{log[-3000:]}"
    execs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", log).group(1))
    assert execs > 1000
