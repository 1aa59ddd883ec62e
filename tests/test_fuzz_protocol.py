"""Fuzz the device protocol code (parser + command handlers) on the host with libFuzzer + ASan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.hil import protocol as P

REPO = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("TINYPIPE_FUZZ_SECONDS", "20"))


def _clang() -> str | None:
    for name in ("clang", "clang-14", "clang-15", "clang-16"):
        if shutil.which(name):
            return name
    return None


def _seeds(corpus: Path) -> None:
    """Valid conversations, so the fuzzer starts past the CRC checks."""
    frames = [
        P.encode(P.Msg.HELLO, 1),
        P.encode(P.Msg.LOAD_INPUT, 2, P.load_input(0, 0, b"\x01" * 8)),
        P.encode(P.Msg.INFER, 3, P.infer(2)),
        P.encode(P.Msg.READ_OUTPUT, 4, P.read_output(0, 0, 4)),
        P.encode(P.Msg.STATS, 5),
        P.encode(P.Msg.SET_BAUD, 6, (921600).to_bytes(4, "little")),
        P.encode(P.Msg.INFER, 3, P.infer(2)),  # a repeat: answered from the replay cache
    ]
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "raw_session").write_bytes(b"\x00" + b"".join(frames))
    (corpus / "raw_reset").write_bytes(b"\x00" + P.encode(P.Msg.RESET, 9) + frames[0])
    (corpus / "framed").write_bytes(b"\x01" + bytes([P.Msg.LOAD_INPUT, 1, 8]) + bytes(8)
                                    + bytes([P.Msg.INFER, 2, 2, 1, 0]))


@pytest.mark.slow
def test_protocol_fuzz_finds_nothing(tmp_path: Path) -> None:
    clang = _clang()
    if clang is None:
        pytest.skip("clang not installed (`make apt` installs it); fuzzing skipped")
    binary = tmp_path / "fuzz_app"
    build = subprocess.run(["bash", str(REPO / "firmware/fuzz/build.sh"), str(binary), clang],
                           capture_output=True, text=True)
    if build.returncode != 0:
        if "fuzzer" in build.stderr and ("cannot find" in build.stderr or "not found" in
                                         build.stderr or "unsupported" in build.stderr):
            pytest.skip(f"{clang} has no libFuzzer/ASan runtime (Debian 12: libclang-rt-14-dev, "
                        "which `make apt` installs where the distribution has it); fuzzing skipped")
        pytest.fail(f"fuzzer build failed:\n{build.stderr[-2000:]}")
    corpus = tmp_path / "corpus"
    _seeds(corpus)
    run = subprocess.run([str(binary), f"-max_total_time={SECONDS}", "-print_final_stats=1",
                          # RSS is mostly ASan's quarantine and shadow memory (it passed 1 GB
                          # once with a 24 MB live heap); the device code never allocates, so
                          # a tight per-input malloc limit is the check that matters
                          "-timeout=5", "-rss_limit_mb=4096", "-malloc_limit_mb=64",
                          f"-artifact_prefix={tmp_path}/",
                          str(corpus)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=SECONDS + 120)
    log = run.stderr
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("leak-*")) \
        + list(tmp_path.glob("timeout-*"))
    assert run.returncode == 0 and not crashes, \
        f"fuzzer found a problem ({[c.name for c in crashes]}):\n{log[-3000:]}"
    execs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", log).group(1))
    assert execs > 1000
