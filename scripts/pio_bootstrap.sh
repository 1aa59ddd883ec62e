#!/usr/bin/env bash
# Seed PlatformIO's core package tool-scons into a project-owned core dir, fully offline.
#
# PlatformIO cannot run a build without tool-scons, and its registry is not always reachable.
# We build the package from the SCons that pip installed (scons==4.11.1, a dependency) or,
# failing that, from a wheel pip downloads from PyPI. Idempotent; a second run takes ~0.1 s.
#
# Usage: scripts/pio_bootstrap.sh [PYTHON]     (PYTHON defaults to .venv/bin/python)
# Env:   PLATFORMIO_CORE_DIR (default: <repo>/.pio-core)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$ROOT/.venv/bin/python}"
CORE="${PLATFORMIO_CORE_DIR:-$ROOT/.pio-core}"
SCONS_VERSION="4.11.1"
PKG_VERSION="4.41101.0"          # PlatformIO's encoding of 4.11.1, matched by "~4.41101.0"
PKG_DIR="$CORE/packages/tool-scons"

export PLATFORMIO_CORE_DIR="$CORE"
export PLATFORMIO_DISABLE_UPGRADE_CHECK=true
export PLATFORMIO_SETTING_ENABLE_TELEMETRY=no
export PLATFORMIO_NO_ANSI=true

# Board JSON files of the project-local platform, generated from the board registry
# (pipeline/boards.py); PlatformIO reads custom boards from $PLATFORMIO_CORE_DIR/boards.
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pipeline.boards write-pio-boards "$CORE/boards"

if [[ -f "$PKG_DIR/.piopm" ]] && grep -q '"owner": "platformio"' "$PKG_DIR/.piopm" \
   && grep -q "\"version\": \"$PKG_VERSION\"" "$PKG_DIR/package.json"; then
  exit 0
fi

mkdir -p "$CORE"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/tinypipe-scons.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/tool-scons"

SRC="$("$PY" - "$SCONS_VERSION" <<'PY' 2>/dev/null || true
import importlib.metadata as md, os, sys
import SCons
if md.version("scons") == sys.argv[1]:
    print(os.path.dirname(SCons.__file__))
PY
)"
if [[ -z "$SRC" ]]; then
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$STAGE/whl" \
    "scons==$SCONS_VERSION"
  "$PY" -m zipfile -e "$STAGE"/whl/*.whl "$STAGE/whl/x"
  SRC="$STAGE/whl/x/SCons"
fi
cp -r "$SRC" "$STAGE/tool-scons/SCons"
find "$STAGE/tool-scons" -name __pycache__ -prune -exec rm -rf {} +

cat > "$STAGE/tool-scons/scons.py" <<'PY'
"""SCons launcher used by PlatformIO."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import SCons.Script  # noqa: E402

SCons.Script.main()
PY
cat > "$STAGE/tool-scons/package.json" <<JSON
{
  "name": "tool-scons",
  "version": "$PKG_VERSION",
  "description": "SCons $SCONS_VERSION software construction tool (seeded offline from PyPI)",
  "license": "MIT",
  "system": "*"
}
JSON

PIO="$(dirname "$PY")/pio"
[[ -x "$PIO" ]] || PIO="pio"
rm -rf "$PKG_DIR"
"$PIO" pkg install --global --skip-dependencies --tool "file://$STAGE/tool-scons" >/dev/null
"$PY" - "$PKG_DIR/.piopm" <<'PY'
import json, sys
path = sys.argv[1]
meta = json.load(open(path))
meta["spec"]["owner"] = "platformio"
json.dump(meta, open(path, "w"))
PY
"$PIO" settings set check_platformio_interval 9999 >/dev/null
"$PIO" settings set enable_telemetry no >/dev/null
echo "tool-scons $SCONS_VERSION seeded into $CORE"
