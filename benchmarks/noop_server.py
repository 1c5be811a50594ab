"""The cloudml serving stack with a no-op model: the HTTP + JSON ceiling.

Same app, same server, same request parsing and validation, same batching, same access log
(one line per request to stderr, at the default log level), same gc.freeze() after "loading";
the model call is replaced by a numpy function returning zeros of the right shape, so what is
left is the cost of everything around the model.

    python benchmarks/noop_server.py PACKAGE_DIR --port 8081 [--no-batching]
"""

from __future__ import annotations

import argparse
import gc
import socket
import sys
from pathlib import Path

import numpy as np

from cloudml.serving.batching import BatchingConfig
from cloudml.serving.model import ServedModel
from cloudml.serving.server import _run, configure_logging, tcp_socket


class NoopBackend:
    """A runtime backend (cloudml.backends.Backend) whose model call costs nothing."""

    name, version = "noop", ""
    rejects: tuple[type[BaseException], ...] = ()

    def __init__(self, outputs):
        self.outputs = outputs

    def run(self, inputs):
        batch = len(next(iter(inputs.values())))
        return {name: np.zeros([batch] + [d or 1 for d in spec.shape[1:]], dtype=np.float32) for name, spec in self.outputs.items()}


class NoopModel(ServedModel):
    def load(self) -> None:
        # As ServedModel.load does after loading: without it the no-op server alone pays for
        # full collections (p99 ~25 ms instead of ~8 ms at 32 clients) and the ceiling is low.
        gc.collect()
        gc.freeze()
        self.backend = NoopBackend(self.signature.outputs)  # "ready"; nothing to load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="a cloudml package folder (for the signature)")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--log-level", default="info",
                        help="info (default) writes an access line per request, as a deployed server does")
    args = parser.parse_args()
    configure_logging(args.log_level)
    sockets: list[socket.socket] = [tcp_socket("127.0.0.1", args.port)]
    return _run(NoopModel(args.package), sockets, max_body_bytes=8 << 20,
                batching=BatchingConfig.from_env(enabled=not args.no_batching), error_file=None)


if __name__ == "__main__":
    sys.exit(main())
