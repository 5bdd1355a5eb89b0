#!/usr/bin/env bash
# Builds the hub's own image from the root Dockerfile, offline: the build installs only from a wheelhouse
# of the hub's runtime dependencies (pyproject's [project.dependencies], plus the build backend), which this
# script fills on the host (pip honours the machine's index settings) under .cache/hub-wheels, inside the
# build context (.dockerignore lets that folder through and keeps the rest of .cache and .venv out).
#   scripts/hub-image.sh [TAG]           wheelhouse, then build TAG (default aidhub/hub:latest)
#   scripts/hub-image.sh --wheels-only   only the wheelhouse (tests/test_hub_image.py builds through the API)
# The wheelhouse is refilled only when the requirements or the host's Python change (stamp .filled-for).
# Env: BASE_IMAGE (default python:3.11-slim; aidhub/base:py3.11 where no registry is reachable),
#      AIDHUB_ENGINE_CLI (docker or podman; default whichever is installed), AIDHUB_PYTHON (a Python 3.11
#      whose pip fills the wheelhouse; default .venv/bin/python). The wheels must suit the base image:
#      fill them with the base's Python minor version on a machine whose glibc is not newer than the base's.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$REPO/.cache/hub-wheels"
PY="${AIDHUB_PYTHON:-$REPO/.venv/bin/python}"
TAG="${1:-aidhub/hub:latest}"

[ -x "$PY" ] || { echo "No Python at $PY: run 'make' targets once (they create .venv) or set AIDHUB_PYTHON." >&2; exit 1; }

# 1. Wheelhouse: the hub's runtime dependencies (no dev extra) and, apart, its build backend, filled into
#    a fresh folder that replaces the old one, so no stale wheel stays behind.
mkdir -p "$REPO/.cache"
fresh="$(mktemp -d "$WHEELS.XXXXXX")"
trap 'rm -rf "$fresh"' EXIT
"$PY" - "$REPO/pyproject.toml" "$fresh" <<'PYTHON'
import sys, tomllib
from pathlib import Path

project, out = tomllib.load(open(sys.argv[1], "rb")), Path(sys.argv[2])
(out / "requirements.txt").write_text("\n".join(project["project"]["dependencies"]) + "\n")
(out / "build-requirements.txt").write_text("\n".join(project["build-system"]["requires"]) + "\n")
PYTHON
stamp="$("$PY" -V; cat "$fresh/requirements.txt" "$fresh/build-requirements.txt")"
if [ "$(cat "$WHEELS/.filled-for" 2>/dev/null)" != "$stamp" ]; then
  t0=$(date +%s)
  "$PY" -m pip wheel -q -w "$fresh" -r "$fresh/requirements.txt" -r "$fresh/build-requirements.txt" \
    >"$REPO/.cache/hub-wheels.log" 2>&1 || {
    echo "pip wheel failed; last lines of .cache/hub-wheels.log:" >&2
    tail -n 20 "$REPO/.cache/hub-wheels.log" >&2
    exit 1
  }
  echo "$stamp" >"$fresh/.filled-for"
  rm -rf "$WHEELS" && mv "$fresh" "$WHEELS"
  echo "wheelhouse: $(($(date +%s) - t0)) s, $(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)" >&2
fi
[ "${1:-}" = "--wheels-only" ] && { echo "$WHEELS"; exit 0; }

# 2. Build, without network: everything comes from the context.
# The docker CLI when an engine answers it (DOCKER_HOST may name Podman's service), else podman.
CLI="${AIDHUB_ENGINE_CLI:-}"
if [ -z "$CLI" ]; then
  if command -v docker >/dev/null 2>&1 && docker version >/dev/null 2>&1; then CLI=docker
  elif command -v podman >/dev/null 2>&1; then CLI=podman
  else
    echo "No container engine answers the docker CLI and podman is not installed: start one" >&2
    echo "(scripts/container-engine.sh prints a DOCKER_HOST) or set AIDHUB_ENGINE_CLI." >&2
    exit 1
  fi
fi
# Podman: Docker image format, as API builds (the test's) make: the two formats share no layer cache.
format=(); [ "$(basename "$CLI")" = podman ] && format=(--format docker)
"$CLI" build "${format[@]}" --network=none --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}" -t "$TAG" "$REPO"
echo "$TAG built"
