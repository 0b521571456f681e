#!/bin/sh
# Entrypoint of the GPU image (deploy/docker/Dockerfile.gpu).
#
# 1. Builds the TensorRT engine DEEPFAKE_ENGINE from the ONNX file DEEPFAKE_ONNX, unless
#    the engine exists and its manifest matches this ONNX file (sha256, calibration), this
#    GPU (name, compute capability), this TensorRT version and the asked flags:
#    `deepfake-monitor build-engine --if-stale` decides. Engines only run on the GPU
#    architecture and TensorRT version they were built with, so a new node or a new image
#    rebuilds it; a plain restart does not. The timing cache beside it makes rebuilds fast.
# 2. Runs the command: by default `deepfake-monitor serve --config ...` (the image's CMD).
#
# Environment:
#   DEEPFAKE_ONNX          exported ONNX file, with its .json manifest (/models/model.onnx)
#   DEEPFAKE_ENGINE        engine to build and serve; must be the config's `model:`
#                          (/var/lib/deepfake-monitor/engine/model.plan)
#   DEEPFAKE_ENGINE_ARGS   extra build-engine flags, e.g. "--fp16 --max-batch 64"
#   DEEPFAKE_BUILD_ENGINE  0: skip step 1 (e.g. a triton:// model)
set -eu

onnx=${DEEPFAKE_ONNX:-/models/model.onnx}
engine=${DEEPFAKE_ENGINE:-/var/lib/deepfake-monitor/engine/model.plan}
engine_args=${DEEPFAKE_ENGINE_ARGS:-}

log() {
    echo "gpu-entrypoint: $*" >&2
}

if [ "$#" -eq 0 ]; then
    set -- deepfake-monitor serve --config /etc/deepfake-monitor/monitor.yaml
fi

if [ "${DEEPFAKE_BUILD_ENGINE:-1}" = "0" ]; then
    log "DEEPFAKE_BUILD_ENGINE=0: not building an engine"
elif [ -f "$onnx" ]; then
    mkdir -p "$(dirname "$engine")"
    # Word splitting of DEEPFAKE_ENGINE_ARGS is wanted: it holds several flags.
    # shellcheck disable=SC2086
    deepfake-monitor build-engine "$onnx" --out "$engine" --if-stale \
        --timing-cache "$(dirname "$engine")/timing.cache" $engine_args
elif [ -f "$engine" ]; then
    log "$onnx not found: serving the existing engine $engine as it is"
else
    log "neither the ONNX file $onnx nor the engine $engine exists."
    log "Mount the exported model (model.onnx + model.onnx.json) at $(dirname "$onnx")."
    exit 1
fi

exec "$@"
