#!/usr/bin/env bash
# Make llama-cpp-python's OpenAI-compatible server available for the self-hosted
# family's test (tests/providers/test_selfhosted_llama.py): a virtual environment
# of its own under ~/.cache/skyroute, installed from requirements/llama-server.txt
# (every package pinned with its hash; llama-cpp-python is published only as a
# source archive, so pip compiles its C++ core here, once per machine).
#
# Not the project's venv: llama-cpp-python is a test peer, like the cluster's
# kube-apiserver, not a dependency. The venv is complete when its stamp (named
# by the lock file's checksum) exists; a second caller waits on the lock instead
# of starting a second build. Prints the venv's python on success.
# Usage: hack/llama/server.sh [--check]
#   --check   exit 0 if the venv is ready (printing its python), 1 otherwise (never builds)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOCK="$HERE/../../requirements/llama-server.txt"
VERSION="$(sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' "$LOCK")"
: "${SKYROUTE_LLAMA_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/skyroute/llama-cpp-python-${VERSION}}"
VENV="$SKYROUTE_LLAMA_CACHE/venv"
STAMP="$VENV/.installed-$(cksum <"$LOCK" | cut -d' ' -f1)"
PY="${PYTHON:-python3}"

log() { printf '[llama] %s\n' "$*" >&2; }
die() { printf '[llama] error: %s\n' "$*" >&2; exit 1; }

ready() { [[ -f "$STAMP" && -x "$VENV/bin/python" ]]; }

if [[ "${1:-}" == "--check" ]]; then
  ready && { echo "$VENV/bin/python"; exit 0; }
  log "missing: llama-cpp-python $VERSION in $VENV"
  exit 1
fi
if ready; then
  log "llama-cpp-python $VERSION: cached in $VENV"
  echo "$VENV/bin/python"; exit 0
fi

# What pip needs to compile it: cmake and a C/C++ compiler (Debian's, as system-deps).
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]} (or install them yourself)"
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$SKYROUTE_LLAMA_CACHE"
exec 9>"$SKYROUTE_LLAMA_CACHE/.build.lock"
if ! flock -n 9; then
  log "another build holds $SKYROUTE_LLAMA_CACHE/.build.lock; waiting"
  flock 9
fi
if ready; then
  log "built by the other caller"; echo "$VENV/bin/python"; exit 0
fi

LOGF="$SKYROUTE_LLAMA_CACHE/build.log"
start=$(date +%s)
log "building llama-cpp-python $VERSION into $VENV (2 cores: about 4 min unloaded; log: $LOGF)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# The library only: no llava/mtmd, no CPU-specific code (-march=native would tie the
# cached build to this CPU), no tests, examples or tools. Measured 2-core figures in
# the README ("Self-hosted OpenAI-compatible servers").
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF ${SKYROUTE_LLAMA_CMAKE_ARGS:-}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
       "$VENV/bin/python" -m pip install --require-hashes -r "$LOCK"; } >"$LOGF" 2>&1; then
  tail -30 "$LOGF" >&2
  rm -rf "$VENV"
  die "llama-cpp-python build failed (full log: $LOGF)"
fi
"$VENV/bin/python" -c "import llama_cpp.server.app" || die "llama_cpp.server does not import (log: $LOGF)"
touch "$STAMP"
exec 9>&-
log "built in $(($(date +%s) - start))s: llama-cpp-python $("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
echo "$VENV/bin/python"
