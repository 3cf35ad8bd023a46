#!/usr/bin/env bash
# Make every image compose/docker-compose.yml names available in the local dockerd. An image
# already present is kept; a missing one is pulled; when the registry cannot be reached (as on
# the project's CI machines, which only reach package mirrors) a stand-in is built locally from
# the same upstream release and tagged with the official name, labelled
# org.deltawatch.stand-in=<how it was built> so that anyone can tell (`deltawatch compose images`
# lists them). Idempotent; run as root on a machine prepared by scripts/compose-machine.sh.
#
#   debian:bookworm-slim                    debootstrap --variant=minbase bookworm + trimming
#   python:3.11-slim                        Debian bookworm's python3 (3.11) on the above
#   apache/kafka:4.1.1                      Apache Kafka 4.1.1 jars from Maven Central, OpenJDK 17
#   registry.k8s.io/etcd:3.5.16-0           etcd v3.5.16 built from Go modules (localkube)
#   registry.k8s.io/kube-apiserver:v1.32.13 kube-apiserver v1.32.13 built from Go modules
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DELTAWATCH_CACHE_DIR:-$HOME/.cache/deltawatch}/compose"
STANDINS="$ROOT/compose/standins"
PYTHON="${DELTAWATCH_PYTHON:-$ROOT/.venv/bin/python}"
PULL_TIMEOUT_S="${DELTAWATCH_PULL_TIMEOUT_S:-30}"
export DOCKER_BUILDKIT=0  # the stand-ins need nothing BuildKit offers, and no buildx is installed
mkdir -p "$CACHE"

say() { echo "[compose-images] $*" >&2; }
# What a stand-in was built from: its Dockerfile directory's content (and, for etcd and
# kube-apiserver, the source digest of the binary). A stand-in whose recipe changed since it was
# built is rebuilt; an official image (no stand-in label) is always kept.
recipe_digest() {  # standin-dir
  local stamp="${DELTAWATCH_CACHE_DIR:-$HOME/.cache/deltawatch}/kube/bin/$1.source-sha256"
  {
    (cd "$STANDINS" && find "$1" -type f -print0 | sort -z | xargs -0 sha256sum)
    [ ! -f "$stamp" ] || cat "$stamp"
  } | sha256sum | cut -c1-16
}
present() {  # tag [standin-dir]
  local labels
  labels="$(docker image inspect --format \
    '{{index .Config.Labels "org.deltawatch.stand-in"}}|{{index .Config.Labels "org.deltawatch.stand-in-recipe"}}' \
    "$1" 2>/dev/null)" || return 1
  [ -n "${2:-}" ] && [ "${labels%%|*}" != "" ] || return 0  # official image, or no recipe to compare
  [ "${labels#*|}" = "$(recipe_digest "$2")" ] && return 0
  say "stand-in $1 was built from another recipe: rebuilding"
  return 1
}
pulled() {
  [ "${DELTAWATCH_COMPOSE_PULL:-1}" = 1 ] || return 1
  say "pulling $1"
  timeout "$PULL_TIMEOUT_S" docker pull -q "$1" >/dev/null 2>&1 && return 0
  say "cannot pull $1: building a local stand-in"
  return 1
}

# A build context of its own per stand-in, outside the repository: the Dockerfile dir plus the
# artefacts it copies (hard links, the cache is on one filesystem; copies otherwise).
context_for() {
  local name="$1" ctx="$CACHE/standin-context/$1"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -r "$STANDINS/$name/." "$ctx/"
  echo "$ctx"
}
link_into() { cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; }

debian_slim() {
  local tag=debian:bookworm-slim
  present "$tag" || pulled "$tag" && return 0
  local mirror rootfs="$CACHE/rootfs-bookworm"
  mirror="$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  [ -n "$mirror" ] || mirror="$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  say "debootstrap --variant=minbase bookworm from $mirror"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # Trim as the official slim image does: no docs, man pages or locales, now or after apt-get.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CFG
  echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda,locale}/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
  : >"$rootfs/etc/machine-id"
  echo "debian-slim" >"$rootfs/etc/hostname"
  say "docker import $tag"
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL org.deltawatch.stand-in="debian:bookworm-slim built by debootstrap --variant=minbase bookworm"' \
    - "$tag" >/dev/null
  rm -rf "$rootfs"
}

build_standin() {  # name tag [context]
  say "building stand-in $2"
  docker build -q --force-rm --label "org.deltawatch.stand-in-recipe=$(recipe_digest "$1")" -t "$2" \
    "${3:-$(context_for "$1")}" >/dev/null
}

python_slim() {
  local tag=python:3.11-slim
  present "$tag" python || pulled "$tag" || build_standin python "$tag"
}

kafka() {
  local tag=apache/kafka:4.1.1
  present "$tag" kafka || pulled "$tag" && return 0
  "$PYTHON" -c 'from deltawatch_tools.localkafka.broker import LocalKafkaBroker; LocalKafkaBroker("4.1.1").ensure_jars()'
  local libs="${DELTAWATCH_CACHE_DIR:-$HOME/.cache/deltawatch}/kafka/4.1.1/libs" tools="$CACHE/kafka-tools-4.1.1"
  if [ ! -f "$tools/kafka-tools-4.1.1.jar" ]; then
    say "fetching org.apache.kafka:kafka-tools:4.1.1 from Maven Central (for the health check)"
    mvn -B -q -Dstyle.color=never dependency:copy -Dartifact=org.apache.kafka:kafka-tools:4.1.1 \
      -DoutputDirectory="$tools" >&2
  fi
  local ctx
  ctx="$(context_for kafka)"
  mkdir -p "$ctx/libs"
  for jar in "$libs"/*.jar "$tools"/*.jar; do link_into "$jar" "$ctx/libs/"; done
  build_standin kafka "$tag" "$ctx"
}

kube_component() {  # component tag
  present "$2" "$1" || pulled "$2" && return 0
  local bin
  bin="$("$PYTHON" -c "import sys; from deltawatch_tools.localkube.build import ensure_binaries; b = ensure_binaries(sys.stderr); print(b.etcd if '$1' == 'etcd' else b.kube_apiserver)")"
  local ctx
  ctx="$(context_for "$1")"
  link_into "$bin" "$ctx/$1"
  build_standin "$1" "$2" "$ctx"
}

debian_slim
python_slim
kafka
if [ "${DELTAWATCH_COMPOSE_KUBE:-1}" = 1 ]; then
  kube_component etcd registry.k8s.io/etcd:3.5.16-0
  kube_component kube-apiserver registry.k8s.io/kube-apiserver:v1.32.13
fi
rm -rf "$CACHE/standin-context"
