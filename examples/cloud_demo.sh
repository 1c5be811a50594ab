#!/usr/bin/env bash
# One cloud end to end, offline: start its emulator, deploy the seed CNN, deploy again (unchanged),
# predict, read the logs, delete everything, stop. Used by `make demo-aws|demo-gcp|demo-azure`.
#   examples/cloud_demo.sh aws|gcp|azure [MODEL] [SAMPLE.json]
# EMULATOR_PORT picks the emulator's port (default: a free one); CLOUDML overrides the CLI path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cloudml="${CLOUDML:-$here/../.venv/bin/cloudml}"
provider="${1:?usage: cloud_demo.sh aws|gcp|azure [MODEL] [SAMPLE.json]}"
model="${2:-build/models/cnn.h5}"
sample="${3:-build/models/cnn.sample.json}"
scratch="$(mktemp -d)"

# The seed models are saved by TensorFlow 2.21, newer than the clouds' prebuilt TensorFlow images:
# in the cloud the deploy builds the cloudml serving image and pushes it to the cloud's registry.
# Offline there is no python:3.11-slim to build on, so the demo names an image; one that is not in
# the emulator's registry is served by the host's cloudml runtime (the emulator's log says so).
case "$provider" in
  aws)   image="123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudml-serving:latest"; extra=(--max-replicas 2) ;;
  gcp)   image="us-docker.pkg.dev/cloudml-emulator/serving/cloudml-serving:latest"; extra=(--max-replicas 2) ;;
  azure) image="cloudmlacr.azurecr.io/cloudml-serving:latest"; extra=() ;;
  *) echo "unknown provider '$provider': choose aws, gcp or azure" >&2; exit 2 ;;
esac
upper="$(echo "$provider" | tr '[:lower:]' '[:upper:]')"

"$cloudml" emulator "$provider" --port "${EMULATOR_PORT:-0}" --ready-file "$scratch/ready.json" >"$scratch/emulator.log" 2>&1 &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 300); do [ -s "$scratch/ready.json" ] && break; kill -0 $emulator 2>/dev/null || break; sleep 0.2; done
[ -s "$scratch/ready.json" ] || { cat "$scratch/emulator.log"; exit 1; }
eval "$(grep '^  export ' "$scratch/emulator.log")"
export "CLOUDML_${upper}_POLL_INTERVAL=1"
image_var="CLOUDML_${upper}_IMAGE_URI"
export "$image_var=${!image_var:-$image}"

"$cloudml" deploy "$model" --name mnist-cnn --provider "$provider" "${extra[@]}"
"$cloudml" deploy "$model" --name mnist-cnn --provider "$provider" "${extra[@]}"   # unchanged
"$cloudml" predict mnist-cnn --provider "$provider" --file "$sample"
"$cloudml" logs mnist-cnn --provider "$provider" --tail 3
"$cloudml" delete mnist-cnn --provider "$provider" --purge
