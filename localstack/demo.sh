#!/usr/bin/env bash
# The AWS path end to end, offline (what `make demo-aws` runs), on LocalStack's port by default:
#   localstack/demo.sh [MODEL] [SAMPLE.json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
EMULATOR_PORT="${AWS_EMULATOR_PORT:-4566}" exec "$here/../examples/cloud_demo.sh" aws "$@"
