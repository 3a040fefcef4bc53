#!/usr/bin/env bash
# Build llama.cpp's own llama-server from the sources vendored in the llama-cpp-python sdist of
# the version installed in the venv — the same llama.cpp the workers run — into a cache folder,
# once. Prints the binary's path on its last line. ~5 minutes on 2 cores the first time.
#
#   bench/build_llama_server.sh            # build (or reuse) and print the path
#   LLAMA_SERVER=$(bench/build_llama_server.sh | tail -1) bench/stream.py ...
#
# Cache: $HIVETRAY_LLAMA_SERVER_CACHE or ~/.cache/hivetray-bench/llama-server-<version>.
# Needs a C++ compiler (the one pip used to build llama-cpp-python); cmake (and ninja, where
# make is missing) come from the package index into the venv when the machine has none, so a
# clean CI machine builds it too (the remote-engine tests call this script once per session).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-${HIVETRAY_VENV:-.venv}/bin/python}"
VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
CACHE="${HIVETRAY_LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hivetray-bench/llama-server-$VERSION}"
BIN="$CACHE/build/bin/llama-server"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "==> fetching the llama-cpp-python $VERSION sdist" >&2
"$PY" -m pip download -q "llama-cpp-python==$VERSION" --no-deps --no-binary :all: -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
rm -rf "$CACHE/src" && mv "$SRC" "$CACHE/src"
BINDIR=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
CMAKE=$(command -v cmake || true)
GENERATOR=()
if [ -z "$CMAKE" ] || ! command -v make >/dev/null 2>&1; then
  echo "==> cmake/make missing: installing cmake and ninja from the package index" >&2
  "$PY" -m pip install -q cmake ninja >&2
  CMAKE="$BINDIR/cmake"
  command -v make >/dev/null 2>&1 || GENERATOR=(-G Ninja -DCMAKE_MAKE_PROGRAM="$BINDIR/ninja")
fi
echo "==> building llama-server into $CACHE (about 5 minutes on 2 cores)" >&2
"$CMAKE" -S "$CACHE/src" -B "$CACHE/build" "${GENERATOR[@]}" -DGGML_NATIVE=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DCMAKE_BUILD_TYPE=Release >&2
"$CMAKE" --build "$CACHE/build" --target llama-server -j"$(nproc 2>/dev/null || echo 2)" >&2
test -x "$BIN"
echo "$BIN"
