"""In-process throughput of a packaged model's runtime backend: the model ceiling for a server.

    .venv/bin/python benchmarks/raw_signature.py PACKAGE/VERSION [--backend onnx|tensorflow]
                                                 [--instance FILE] [--batch-sizes 1,32,128]

Loads the package the way cloudml's server does (`cloudml.serving.model.ServedModel`: the
backend its manifest names, or the one --backend names, warmed up: TensorFlow's
"serving_default" signature with its fast path, or an ONNX Runtime session on the package's
model.onnx with cloudml.backends.onnx's session options) and calls it the way the server does
(`ServedModel.run`: an array per input, a numpy array per output), for a fixed time per batch
size, with no HTTP, JSON or batching around it. Prints one JSON object on the last line of
stdout. `serve.py` runs it as a subprocess so the runtime never shares a process (or a GIL)
with the load generator, and so measuring ONNX Runtime never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WARMUP_CALLS = 5


def load(version_dir: Path, backend: str | None):
    from cloudml.serving.model import ServedModel

    start = time.perf_counter()
    model = ServedModel(version_dir.parent)
    if str(model.version) != version_dir.name:
        raise SystemExit(f"{version_dir} is not the version {model.version} its package serves")
    if backend and backend != model.backend_name:
        runtime = model.manifest.runtime
        if backend == "onnx" and runtime.onnx is None:
            raise SystemExit(f"{version_dir.parent} has no ONNX model (its manifest names no onnx graph)")
        # The same package served by the other backend, loaded by the same code path as the server's.
        model.manifest = model.manifest.model_copy(update={"runtime": runtime.model_copy(update={"backend": backend})})
    model.load()
    return model, {"load_s": time.perf_counter() - start}


def batch_inputs(model, instance: list, batch_size: int) -> dict:
    """The same instance repeated `batch_size` times, for a single-input signature."""
    specs = model.signature.inputs
    if len(specs) != 1:
        raise SystemExit(f"the signature has {len(specs)} inputs; this benchmark handles one")
    name, spec = next(iter(specs.items()))
    return {name: np.asarray([instance] * batch_size, dtype=spec.dtype)}


def measure(model, inputs: dict, seconds: float, max_calls: int) -> dict:
    for _ in range(WARMUP_CALLS):
        model.run(inputs)
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(latencies) < max_calls:
        start = time.perf_counter()
        model.run(inputs)
        latencies.append(time.perf_counter() - start)
    total = sum(latencies)
    batch = len(next(iter(inputs.values())))
    ordered = sorted(latencies)
    return {
        "batch_size": batch,
        "calls": len(latencies),
        "calls_per_s": len(latencies) / total,
        "samples_per_s": len(latencies) * batch / total,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version_dir")
    parser.add_argument("--backend", choices=("onnx", "tensorflow"), help="default: the one the manifest names")
    parser.add_argument("--instance", help='JSON file: {"instances": [...]} (the first is used); default: zeros')
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size (default: %(default)s)")
    parser.add_argument("--max-calls", type=int, default=100_000, help="per batch size (default: %(default)s)")
    args = parser.parse_args()

    model, timings = load(Path(args.version_dir), args.backend)
    if args.instance:
        with open(args.instance) as handle:
            instance = json.load(handle)["instances"][0]
    else:
        spec = next(iter(model.signature.inputs.values()))
        instance = np.zeros([d or 1 for d in (spec.instance_shape or [])]).tolist()
    results = [
        measure(model, batch_inputs(model, instance, size), args.seconds, args.max_calls)
        for size in (int(s) for s in args.batch_sizes.split(","))
    ]
    print(json.dumps({"backend": model.backend.name, "backend_version": model.backend.version, **timings, "batches": results}))


if __name__ == "__main__":
    sys.exit(main())
