#!/usr/bin/env bash
# The whole pipeline locally: broker, API server, three workers (README, first command).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec deltawatch run "$@"
