#!/usr/bin/env bash
# Make this machine able to run the compose stack (CONTRACT §8): the Docker engine (Debian's
# docker.io and debootstrap, from the machine's apt sources), a running dockerd, and the Compose
# v2 CLI plugin built from Go modules. CI starts on a fresh machine as root, so every step
# checks first and is skipped when already done; what is built is cached outside the repository
# (${DELTAWATCH_CACHE_DIR:-~/.cache/deltawatch}/compose) and reused by later runs.
#
# Why build Compose: no registry but the package ones is reachable here, and Debian bookworm
# only ships Compose v1. `go install .../cmd@v2.40.3` is refused because compose's go.mod has
# `exclude` directives, so a throw-away wrapper module repeats them and builds the command.
set -euo pipefail

COMPOSE_VERSION="${DELTAWATCH_COMPOSE_VERSION:-v2.40.3}"
CACHE="${DELTAWATCH_CACHE_DIR:-$HOME/.cache/deltawatch}/compose"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$CACHE"

say() { echo "[compose-machine] $*" >&2; }
die() { echo "[compose-machine] ERROR: $*" >&2; exit 1; }

# -- 1. packages -------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]} (or install them yourself)"
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} by hand"
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q "${missing[@]}" >&2
fi

# -- 2. the engine -----------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "dockerd is not running and only root can start it here"
  say "starting dockerd in the background (log: $CACHE/dockerd.log)"
  setsid nohup dockerd >>"$CACHE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$CACHE/dockerd.pid"
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$(cat "$CACHE/dockerd.pid")" 2>/dev/null \
      || die "dockerd exited; last lines of $CACHE/dockerd.log: $(tail -5 "$CACHE/dockerd.log")"
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s (see $CACHE/dockerd.log)"
fi

# -- 3. Compose v2 -----------------------------------------------------------------------------
built="$CACHE/$COMPOSE_VERSION/docker-compose"
if [ ! -x "$built" ]; then
  command -v go >/dev/null 2>&1 || die "need Go >= 1.24 to build Compose $COMPOSE_VERSION"
  say "building Compose $COMPOSE_VERSION from Go modules (first run only, ~2-4 min)"
  work="$CACHE/$COMPOSE_VERSION/wrapper"
  rm -rf "$work" && mkdir -p "$work"
  cat >"$work/go.mod" <<MOD
module deltawatch.local/compose-wrapper

go 1.24

// Repeated from github.com/docker/compose/v2's go.mod: exclude directives of a dependency are
// ignored by the main module, and without them the build selects incompatible versions.
exclude (
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2
)
MOD
  (
    cd "$work"
    GOFLAGS=-mod=mod go get "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION" >&2
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$built.partial" github.com/docker/compose/v2/cmd >&2
  )
  mv "$built.partial" "$built"
fi
mkdir -p "$PLUGIN_DIR"
if ! cmp -s "$built" "$PLUGIN_DIR/docker-compose"; then
  say "installing Compose $COMPOSE_VERSION as $PLUGIN_DIR/docker-compose"
  install -m 0755 "$built" "$PLUGIN_DIR/docker-compose"
fi
docker compose version >&2
