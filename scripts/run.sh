#!/usr/bin/env bash
# `make run`: start the hub with the embedded defaults, publish and deploy the bundled examples
# when they are absent, print the URLs, and keep the hub in the foreground (Ctrl-C stops it).
# The hub logs to $AIDHUB_HOME/logs/hub.log (printed first); arguments go to `aid serve`, e.g. -v.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
HOST=${AIDHUB_HOST:-127.0.0.1}
PORT=${AIDHUB_PORT:-8000}
URL="http://$HOST:$PORT"
export AIDHUB_URL="$URL"

"$BIN/aid" serve --host "$HOST" --port "$PORT" "$@" &
hub=$!
trap 'kill "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true' INT TERM EXIT

for _ in $(seq 1 100); do
  "$BIN/aid" status >/dev/null 2>&1 && break
  if ! kill -0 "$hub" 2>/dev/null; then
    wait "$hub" || exit $?  # the hub said why; its exit code (2: a bad setting) is the script's
    exit 1
  fi
  sleep 0.3
done
"$BIN/aid" status >/dev/null  # still no answer: say so, and stop
echo

for manifest in examples/*/aid.yaml; do
  pkg=$(dirname "$manifest")
  ref=$("$BIN/python" -c "import yaml,sys; m=yaml.safe_load(open(sys.argv[1])); print(f\"{m['name']}@{m['version']}\")" "$manifest")
  if ! "$BIN/aid" show "$ref" >/dev/null 2>&1; then
    "$BIN/aid" publish "$pkg"
  fi
  "$BIN/aid" deploy "$ref" || echo "Deploying $ref failed; see 'aid logs $ref'." >&2
done

cat <<MSG

aidhub is running.
  catalog      $URL/
  API          $URL/api/v1/models
  v2 protocol  $URL/v2/models/iris-onnx
  metrics      $URL/metrics
Try:  $BIN/aid predict iris-onnx -i 'features=[[5.1, 3.5, 1.4, 0.2]]'
Ctrl-C stops the hub; the model servers keep running and are adopted at the next start.
MSG
wait "$hub"
