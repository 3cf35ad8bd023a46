#!/usr/bin/env bash
# Sourced by run.sh and test.sh: checks the toolchain and (re)creates .venv when pyproject.toml
# changed. Everything else (Kafka jars, kube-apiserver/etcd builds, the AsyncAPI parser) is
# fetched on first use into ${DELTAWATCH_CACHE_DIR:-~/.cache/deltawatch}, outside the repository.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need() { command -v "$1" >/dev/null 2>&1 || { echo "deltawatch needs $1 ($2) on PATH" >&2; exit 1; }; }
PYTHON="${PYTHON:-python3}"
need "$PYTHON" "Python >= 3.11"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "deltawatch needs Python >= 3.11" >&2; exit 1; }
need java "Java >= 17, for the local Kafka broker"
need mvn "Maven, to fetch the Kafka jars from Maven Central"
need go "Go >= 1.23, to build etcd and kube-apiserver"
need npm "Node.js >= 18 with npm, to install the AsyncAPI parser the tests validate schemas/asyncapi.yaml with"

stamp=".venv/.deltawatch-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
# pip's output (and the build backend's warnings) go to a log file: one line here, the log
# named if the install fails.
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  log=".venv/install.log"
  printf '[setup] installing deltawatch and its test tools into .venv ...' >&2
  started=$SECONDS
  if { .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e '.[test]'; } >"$log" 2>&1; then
    echo " done in $((SECONDS - started))s (log: $log)" >&2
  else
    echo " FAILED; full output in $ROOT/$log; last lines:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
