#!/usr/bin/env bash
# The AWS path end to end, offline: start the emulator, deploy the seed CNN to "SageMaker",
# predict, update-check, delete, stop. Used by `make demo-aws`.
#   localstack/demo.sh [MODEL] [SAMPLE.json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cloudml="${CLOUDML:-$here/../.venv/bin/cloudml}"
model="${1:-build/models/cnn.h5}"
sample="${2:-build/models/cnn.sample.json}"
port="${AWS_EMULATOR_PORT:-4566}"
log="$(mktemp)"

"$cloudml" emulator aws --port "$port" >"$log" 2>&1 &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "^  export CLOUDML_AWS_ROLE_ARN" "$log" && break; sleep 0.2; done
grep -q "^  export CLOUDML_AWS_ROLE_ARN" "$log" || { cat "$log"; exit 1; }
eval "$(grep '^  export ' "$log")"
export CLOUDML_AWS_POLL_INTERVAL=1
# The seed models are saved by TensorFlow 2.21, newer than SageMaker's TF Serving images: serve
# them with the cloudml runtime image (on real AWS: `cloudml package --container`, push to ECR).
export CLOUDML_AWS_IMAGE_URI="${CLOUDML_AWS_IMAGE_URI:-123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudml-serving:latest}"

"$cloudml" deploy "$model" --name mnist-cnn --provider aws --max-replicas 2
"$cloudml" deploy "$model" --name mnist-cnn --provider aws --max-replicas 2   # unchanged
"$cloudml" predict mnist-cnn --provider aws --file "$sample"
"$cloudml" logs mnist-cnn --provider aws --tail 3
"$cloudml" delete mnist-cnn --provider aws --purge
