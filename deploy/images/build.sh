#!/usr/bin/env bash
# Build the container images from the repo's Dockerfile: `make images` (docs/operations.md "Container images").
#
#   deploy/images/build.sh                  # the five services and the simulator: btcbot/<name>:$BTCBOT_IMAGE_TAG
#   deploy/images/build.sh risk sim cli     # only these (cli is the alert relay's image)
#   deploy/images/build.sh --check          # print the engine that answers (exit 0), or why none does (exit 3)
#
# Engine: BTCBOT_CONTAINER_ENGINE, else podman when `podman info` answers, else docker when `docker info` does.
# Podman runs with deploy/images/containers.conf (runc, ulimits) unless CONTAINERS_CONF is already set.
#
# Base images: PYTHON_IMAGE when given; else python:3.11-slim or the local stand-in when present; else
# python:3.11-slim when a pull succeeds; else (no registry answers) the local stand-in btcbot/python:3.11-bookworm,
# made once from a Debian bookworm rootfs (mmdebstrap, from the mirror apt uses) with python3.11 at /usr/local/bin
# and this machine's extra CA certificates. Likewise the uv stage (ghcr.io/astral-sh/uv:<the Dockerfile's version>)
# is stood in by this machine's uv binary of that version. Both are kept. Each image is labelled with a hash of its
# inputs (btcbot.inputs): an image whose inputs did not change is not rebuilt; one that did reuses cached layers.
set -euo pipefail
cd "$(dirname "$0")/../.."

HERE=deploy/images
TAG=${BTCBOT_IMAGE_TAG:-dev}
LOCAL_BASE=btcbot/python:3.11-bookworm
DEFAULT_SERVICES=(marketdata strategy risk execution ledger sim)
UV_IMAGE=$(sed -n 's/^FROM \(ghcr\.io\/astral-sh\/uv:[^ ]*\) AS uv$/\1/p' Dockerfile)
PULL_TIMEOUT=${BTCBOT_IMAGES_PULL_TIMEOUT:-60}

say() { printf 'images: %s\n' "$*" >&2; }
die() { say "$*"; exit "${2:-1}"; }

if [[ -z ${CONTAINERS_CONF:-} ]]; then
  export CONTAINERS_CONF="$PWD/$HERE/containers.conf"
fi

find_engine() {
  # Prints the engine's command, or why none answers (and returns 1).
  local why=()
  if [[ -n ${BTCBOT_CONTAINER_ENGINE:-} ]]; then
    if timeout 20 "$BTCBOT_CONTAINER_ENGINE" info >/dev/null 2>&1; then
      echo "$BTCBOT_CONTAINER_ENGINE"
      return 0
    fi
    echo "BTCBOT_CONTAINER_ENGINE=$BTCBOT_CONTAINER_ENGINE does not answer '$BTCBOT_CONTAINER_ENGINE info'"
    return 1
  fi
  for engine in podman docker; do
    if ! command -v "$engine" >/dev/null 2>&1; then
      why+=("$engine: not installed")
    elif timeout 20 "$engine" info >/dev/null 2>&1; then
      echo "$engine"
      return 0
    else
      why+=("$engine: '$engine info' fails")
    fi
  done
  local joined
  joined=$(printf '; %s' "${why[@]}")
  echo "no container engine answers (${joined:2})"
  return 1
}

if ! ENGINE=$(find_engine); then
  [[ ${1:-} == --check ]] && { echo "$ENGINE"; exit 3; }
  die "$ENGINE" 3
fi
if [[ ${1:-} == --check ]]; then
  echo "$ENGINE"
  exit 0
fi

have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
try_pull() { timeout "$PULL_TIMEOUT" "$ENGINE" pull -q "$1" >/dev/null 2>&1; }

debian_mirror() {
  # The mirror apt uses here (deb822 sources first, then sources.list), unless BTCBOT_DEBIAN_MIRROR says.
  if [[ -n ${BTCBOT_DEBIAN_MIRROR:-} ]]; then
    echo "$BTCBOT_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -z $uri ]] && uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

make_local_base() {
  command -v mmdebstrap >/dev/null || die "no python:3.11-slim and no mmdebstrap to make a local base: apt-get install mmdebstrap"
  local work mirror
  work=$(mktemp -d)
  mirror=$(debian_mirror)
  say "making $LOCAL_BASE: mmdebstrap bookworm from $mirror"
  mmdebstrap --quiet --variant=minbase --include=python3.11,python3.11-venv,ca-certificates,passwd \
    bookworm "$work/rootfs.tar" "$mirror" >&2
  "$ENGINE" import "$work/rootfs.tar" btcbot/debian-rootfs:bookworm >/dev/null
  mkdir -p "$work/context/certs"
  # The certificates update-ca-certificates adds here (a proxy's CA, for example): without them package
  # downloads inside a build fail with "invalid peer certificate: UnknownIssuer".
  find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$work/context/certs/" \; 2>/dev/null || true
  cp "$HERE/python-base.Containerfile" "$work/context/Containerfile"
  build_cmd -t "$LOCAL_BASE" "$work/context" >&2
  rm -rf "$work"
}

real_uv() {
  # The uv executable itself (a pyenv shim or a wrapper script cannot be copied into an image).
  local candidate
  for candidate in "$(command -v uv || true)" "$(pyenv which uv 2>/dev/null || true)" \
    "$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || true)"; do
    [[ -n $candidate ]] || continue
    candidate=$(readlink -f "$candidate")
    if [[ $(head -c 4 "$candidate" 2>/dev/null | od -An -c | tr -d ' ') == 177ELF ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

make_local_uv() {
  local uv version wanted=${UV_IMAGE##*:} work
  uv=$(real_uv) || die "no $UV_IMAGE and no uv executable here to stand in for it"
  version=$("$uv" --version | awk '{print $2}')
  [[ $version == "$wanted" ]] || die "no $UV_IMAGE and the local uv is $version, not $wanted"
  work=$(mktemp -d)
  cp "$uv" "$work/uv"
  printf 'FROM scratch\nCOPY uv /uv\n' >"$work/Containerfile"
  say "making $UV_IMAGE from $uv"
  build_cmd -t "$UV_IMAGE" "$work" >&2
  rm -rf "$work"
}

build_cmd() {
  if [[ $ENGINE == podman || $ENGINE == buildah ]]; then
    # Without --format docker buildah drops HEALTHCHECK.
    "$ENGINE" build --format docker --network host "$@"
  else
    "$ENGINE" build --network host "$@"
  fi
}

base=${PYTHON_IMAGE:-}
if [[ -z $base ]]; then
  # What is here already wins (no network on a second run); then a pull; then the local stand-in.
  if have_image python:3.11-slim; then
    base=python:3.11-slim
  elif have_image "$LOCAL_BASE"; then
    base=$LOCAL_BASE
  elif try_pull python:3.11-slim; then
    base=python:3.11-slim
  else
    make_local_base
    base=$LOCAL_BASE
  fi
fi
have_image "$UV_IMAGE" || try_pull "$UV_IMAGE" || make_local_uv

inputs_hash() {
  # What an image is made of: the build context's files (as .dockerignore keeps them: no tests), the Dockerfile,
  # the base image and the service. Empty outside a git checkout (then every run builds, still from cache).
  command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1 || return 0
  {
    git ls-files -co --exclude-standard -- Dockerfile uv.lock pyproject.toml libs services sim cli examples \
      | grep -v -e '/tests/' -e '__pycache__' -e '\.py[cod]$' | sort | xargs -r sha256sum
    "$ENGINE" image inspect --format '{{.Id}}' "$base" "$UV_IMAGE"
    echo "$1"
  } | sha256sum | cut -c1-16
}

services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=("${DEFAULT_SERVICES[@]}")
say "engine $ENGINE, base $base, tag $TAG: ${services[*]}"
for service in "${services[@]}"; do
  started=$SECONDS
  inputs=$(inputs_hash "$service")
  if [[ -n $inputs ]] && [[ $("$ENGINE" image inspect --format '{{index .Config.Labels "btcbot.inputs"}}' \
    "btcbot/$service:$TAG" 2>/dev/null) == "$inputs" ]]; then
    say "btcbot/$service:$TAG is up to date (inputs $inputs)"
    continue
  fi
  build_cmd -q --label "btcbot.inputs=$inputs" --build-arg SERVICE="$service" --build-arg PYTHON_IMAGE="$base" -t "btcbot/$service:$TAG" . >/dev/null \
    || die "building btcbot/$service:$TAG failed (rerun: $ENGINE build --build-arg SERVICE=$service --build-arg PYTHON_IMAGE=$base .)"
  say "btcbot/$service:$TAG built in $((SECONDS - started))s"
done
