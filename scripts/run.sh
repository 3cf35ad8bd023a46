#!/usr/bin/env bash
# The whole pipeline locally, playing the demo story: broker, API server, three workers and a
# callback sink; no cluster, no Docker (README, first command). Ctrl-C stops everything.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec deltawatch demo "$@"
