#!/usr/bin/env bash
# Builds the local CPU base image aidhub/base:py3.11 when it is absent (no image registry is reachable here):
#   debootstrap (Debian bookworm, minbase + python3) -> podman import -> aidhub/base-rootfs:bookworm
#   -> offline build: venv /opt/aid with uv + bentoml from a host-filled wheelhouse -> aidhub/base:py3.11
# Caches under <repo>/.cache/base/: the rootfs tarball (so a second run skips debootstrap) and the wheelhouse.
# Needs root and the engine (scripts/container-engine.sh). Real deployments use python:3.11-slim / CUDA bases.
# Env: AIDHUB_BASE_REBUILD=1 rebuilds the images (keeps the caches); AIDHUB_DEBIAN_MIRROR picks the mirror.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$REPO/.cache/base"
SUITE=bookworm
ROOTFS_TAR="$CACHE/rootfs-$SUITE-minbase.tar"
WHEELHOUSE="$CACHE/wheelhouse"
ROOTFS_IMAGE="aidhub/base-rootfs:$SUITE"
BASE_IMAGE="aidhub/base:py3.11"
MIRROR="${AIDHUB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=(bentoml uvloop httptools numpy uv)
PY="$REPO/.venv/bin/python"

if [ "$(id -u)" -ne 0 ]; then
  echo "Building the base image needs root (debootstrap, podman). Run 'sudo scripts/base-image.sh'." >&2
  exit 1
fi
command -v podman >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || {
  echo "podman/debootstrap missing: run scripts/container-engine.sh first." >&2
  exit 1
}

have_image() { podman image exists "$1"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [ "${AIDHUB_BASE_REBUILD:-0}" != 1 ] && have_image "$BASE_IMAGE"; then
  echo "$BASE_IMAGE present"
  exit 0
fi
mkdir -p "$CACHE"

# 1. Root filesystem tarball (cached).
if [ ! -s "$ROOTFS_TAR" ]; then
  work="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  t0=$(now)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$work/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
    echo "debootstrap failed; last lines of $CACHE/debootstrap.log:" >&2
    tail -n 20 "$CACHE/debootstrap.log" >&2
    exit 1
  }
  # Smaller image, nothing lost: apt lists and the downloaded .debs.
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  echo "debootstrap: $(took "$t0") s" >&2
  tar -C "$work/rootfs" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$work"
  trap - EXIT
fi

# 2. Import it as an image (PATH/CMD set; an imported image has no config at all).
if [ "${AIDHUB_BASE_REBUILD:-0}" = 1 ] || ! have_image "$ROOTFS_IMAGE"; then
  t0=$(now)
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$ROOTFS_TAR" "$ROOTFS_IMAGE" >/dev/null
  echo "import: $(took "$t0") s" >&2
fi

# 3. Wheelhouse on the host (pip honours this machine's index settings). Cached: skipped when the stamp
#    says it was filled for the same package list (resolving against the index alone takes ~40 s here).
t0=$(now)
mkdir -p "$WHEELHOUSE"
if [ "$(cat "$WHEELHOUSE/.filled-for" 2>/dev/null)" != "${PACKAGES[*]}" ]; then
"$PY" -m pip download -d "$WHEELHOUSE" --only-binary=:all: "${PACKAGES[@]}" >"$CACHE/pip-download.log" 2>&1 || {
  echo "pip download failed; last lines of $CACHE/pip-download.log:" >&2
  tail -n 20 "$CACHE/pip-download.log" >&2
  exit 1
}
echo "${PACKAGES[*]}" >"$WHEELHOUSE/.filled-for"
fi
echo "wheelhouse: $(took "$t0") s, $(ls "$WHEELHOUSE" | wc -l) files, $(du -sh "$WHEELHOUSE" | cut -f1)" >&2

# 4. Offline build: the wheelhouse is bind-mounted into the RUN step, so it is not kept in a layer.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir "$ctx/wheelhouse"
cp -al "$WHEELHOUSE"/*.whl "$ctx/wheelhouse/" 2>/dev/null || cp -a "$WHEELHOUSE"/*.whl "$ctx/wheelhouse/"
# Buildah (1.28) leaves the content of a RUN --mount=type=bind out of the layer cache key: name the
# wheelhouse content in the RUN line so that a changed wheelhouse rebuilds the layer.
wh_hash="$(cd "$ctx/wheelhouse" && ls | sha256sum | cut -c1-16)"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $ROOTFS_IMAGE
ENV PATH=/opt/aid/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    VIRTUAL_ENV=/opt/aid \\
    BENTOML_DO_NOT_TRACK=true \\
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \\
    : "wheelhouse=$wh_hash" \\
 && python3 -m venv /opt/aid \\
 && /opt/aid/bin/pip install -q --no-index --find-links /wheelhouse uv \\
 && /opt/aid/bin/uv pip install --python /opt/aid/bin/python --no-index --find-links /wheelhouse \\
      --no-cache --compile-bytecode ${PACKAGES[*]} \\
 && /opt/aid/bin/python -c "import bentoml, numpy, uvloop, httptools" \\
 && /opt/aid/bin/pip uninstall -q -y pip
CMD ["/bin/bash"]
DOCKERFILE
t0=$(now)
podman build --network=none --pull=never -t "$BASE_IMAGE" "$ctx" >"$CACHE/build.log" 2>&1 || {
  echo "podman build failed; last lines of $CACHE/build.log:" >&2
  tail -n 30 "$CACHE/build.log" >&2
  exit 1
}
echo "build: $(took "$t0") s" >&2
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^localhost/aidhub/base' >&2 || true
echo "$BASE_IMAGE built"
