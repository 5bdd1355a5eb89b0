#!/usr/bin/env bash
# What benchmarks/peers needs beside the hub's own venv, installed once and reused:
#   wrk (the load generator), matplotlib in .venv (the plot), and MLServer 1.7 with onnxruntime and
#   torch in its own environment under .cache/peers/mlserver (never mixed with the hub's packages).
# MLServer 1.7.1 (2025-06) predates pandas 3 and uvloop 0.22, whose get_event_loop() fails in its
# parallel workers ("There is no current event loop"): both are held below.
# Not for CI: only `python -m benchmarks peers` (and so `make bench`) runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=.venv/bin/uv
MLSERVER_ENV=.cache/peers/mlserver
MLSERVER_REQS=("mlserver>=1.7,<1.8" "onnxruntime>=1.20,<2" "numpy>=1.26,<3" "pandas>=2,<3" "uvloop<0.22")

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "wrk is missing: run 'sudo apt-get install -y wrk'." >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk
fi

.venv/bin/python -c "import matplotlib" 2>/dev/null ||
  "$UV" pip install -q --python .venv/bin/python "matplotlib>=3.8,<4"

# torch for the TorchScript runtime: the CPU wheel from pip's find-links when this machine has one
# (PyPI's default Linux wheel pulls CUDA libraries), else torch from PyPI.
torch_req="torch==2.13.0"
for dir in ${PIP_FIND_LINKS:-}; do
  for wheel in "$dir"/torch-2.13.0+cpu-cp311-*.whl; do [ -f "$wheel" ] && torch_req="$wheel"; done
done

want="${MLSERVER_REQS[*]} $torch_req"
if [ "$(cat "$MLSERVER_ENV/.ready" 2>/dev/null)" != "$want" ]; then
  rm -rf "$MLSERVER_ENV"
  "$UV" venv -q --python "$(.venv/bin/python -c 'import sys; print(sys.executable)')" "$MLSERVER_ENV"
  UV_CACHE_DIR="${UV_CACHE_DIR:-.cache/uv}" "$UV" pip install -q --python "$MLSERVER_ENV/bin/python" \
    "${MLSERVER_REQS[@]}" "$torch_req"
  echo "$want" > "$MLSERVER_ENV/.ready"
fi
"$MLSERVER_ENV/bin/mlserver" --version
