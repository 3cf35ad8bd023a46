#!/usr/bin/env bash
# Sourced by run.sh and test.sh: checks the toolchain and (re)creates .venv when pyproject.toml
# changed. Everything else (Kafka jars, kube-apiserver/etcd builds) is fetched on first use into
# ${DELTAWATCH_CACHE_DIR:-~/.cache/deltawatch}, outside the repository.
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

stamp=".venv/.deltawatch-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] creating .venv and installing deltawatch with its test tools" >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -e '.[test]' >&2
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
