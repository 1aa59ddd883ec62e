#!/usr/bin/env bash
# Build the protocol fuzzer: scripts use it, tests/test_fuzz_protocol.py calls it.
# Usage: firmware/fuzz/build.sh OUT_BINARY [CLANG]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FW="$HERE/.."
OUT="$1"
CC="${2:-clang}"
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$FW/src" -I"$FW/test_model" -I"$HERE" \
  "$HERE/fuzz_app.c" "$HERE/fake_port.c" "$FW/src/app.c" "$FW/src/proto.c" \
  "$FW/src/backends/infer_aot.c" "$FW/test_model/tp_model.c" -o "$OUT"
