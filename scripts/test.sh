#!/usr/bin/env bash
# Every quality gate and the whole test suite (README, second command). Extra arguments go to
# pytest, e.g. `bash scripts/test.sh tests/kafka -x`.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
echo "[test] ruff check" >&2
ruff check deltawatch deltawatch_tools services tests bench
echo "[test] ruff format --check" >&2
ruff format --check deltawatch deltawatch_tools services tests bench
echo "[test] mypy --strict deltawatch deltawatch_tools services" >&2
mypy --strict deltawatch deltawatch_tools services
echo "[test] pytest" >&2
exec pytest "$@"
