#!/usr/bin/env bash
# Build the protocol fuzzer: tests/test_fuzz_protocol.py calls it.
# Usage: firmware/fuzz/build.sh OUT_BINARY [CLANG] [MODEL_DIR]
# MODEL_DIR: an AOT export (`tinypipe export --backend aot`), so chunked inputs and outputs are
# fuzzed with real tensor sizes; default: the 8-byte hand-written firmware/test_model.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FW="$HERE/.."
OUT="$1"
CC="${2:-clang}"
MODEL="${3:-$FW/test_model}"
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$FW/src" -I"$MODEL" -I"$HERE" \
  "$HERE/fuzz_app.c" "$HERE/fake_port.c" "$FW/src/app.c" "$FW/src/proto.c" \
  "$FW/src/backends/infer_aot.c" "$MODEL"/*.c -lm -o "$OUT"
