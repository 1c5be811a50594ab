#!/usr/bin/env bash
# An AWS-compatible endpoint on localhost:4566 without Docker: moto plus cloudml's SageMaker
# hosting emulation (real predictions). Creates the execution role and the cloudml-artifacts
# bucket, prints the variables to export, and runs until Ctrl-C.
#   localstack/start-emulator.sh [--port 4566] [--host 127.0.0.1] [--no-init]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cloudml="${CLOUDML:-}"
if [[ -z "$cloudml" ]]; then
  if [[ -x "$here/../.venv/bin/cloudml" ]]; then cloudml="$here/../.venv/bin/cloudml"; else cloudml="cloudml"; fi
fi
exec "$cloudml" emulator aws --port 4566 "$@"
