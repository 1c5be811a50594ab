"""In-process throughput of a SavedModel's serving signature: the ceiling for a server.

    .venv/bin/python benchmarks/raw_signature.py VERSION_DIR [--instance FILE] [--batch-sizes 1,32,128]

Calls `tf.saved_model.load(VERSION_DIR).signatures["serving_default"]` the way cloudml's
server does (a tf.constant per input, `.numpy()` on every output), for a fixed time per
batch size, and prints one JSON object on the last line of stdout. `serve.py` runs it as a
subprocess so TensorFlow never shares a process (or a GIL) with the load generator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WARMUP_CALLS = 5


def load(version_dir: str):
    start = time.perf_counter()
    import tensorflow as tf

    imported = time.perf_counter()
    loaded = tf.saved_model.load(version_dir)
    fn = loaded.signatures["serving_default"]
    done = time.perf_counter()
    return tf, loaded, fn, {"import_s": imported - start, "load_s": done - imported}


def batch_inputs(tf, fn, instance: list, batch_size: int) -> dict:
    """The same instance repeated `batch_size` times, for a single-input signature."""
    _, specs = fn.structured_input_signature
    if len(specs) != 1:
        raise SystemExit(f"the signature has {len(specs)} inputs; this benchmark handles one")
    name, spec = next(iter(specs.items()))
    import numpy as np

    array = np.asarray([instance] * batch_size, dtype=spec.dtype.as_numpy_dtype)
    return {name: array}


def call(tf, fn, inputs: dict) -> None:
    outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    for value in outputs.values():
        value.numpy()  # the server converts every output; so do we


def measure(tf, fn, inputs: dict, seconds: float, max_calls: int) -> dict:
    for _ in range(WARMUP_CALLS):
        call(tf, fn, inputs)
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(latencies) < max_calls:
        start = time.perf_counter()
        call(tf, fn, inputs)
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
    parser.add_argument("--instance", help='JSON file: {"instances": [...]} (the first is used); default: zeros')
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size (default: %(default)s)")
    parser.add_argument("--max-calls", type=int, default=100_000, help="per batch size (default: %(default)s)")
    args = parser.parse_args()

    tf, _loaded, fn, timings = load(args.version_dir)
    if args.instance:
        with open(args.instance) as handle:
            instance = json.load(handle)["instances"][0]
    else:
        _, specs = fn.structured_input_signature
        instance = [0.0] * int(next(iter(specs.values())).shape[-1])
    results = [
        measure(tf, fn, batch_inputs(tf, fn, instance, size), args.seconds, args.max_calls)
        for size in (int(s) for s in args.batch_sizes.split(","))
    ]
    print(json.dumps({"tensorflow": tf.__version__, **timings, "batches": results}))


if __name__ == "__main__":
    sys.exit(main())
