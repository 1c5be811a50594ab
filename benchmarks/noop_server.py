"""The cloudml serving stack with a no-op model: the HTTP + JSON ceiling.

Same app, same server, same request parsing and validation, same batching; the model call is
replaced by a numpy function returning zeros of the right shape, so what is left is the cost
of everything around the model.

    python benchmarks/noop_server.py PACKAGE_DIR --port 8081 [--no-batching]
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import numpy as np

from cloudml.serving.batching import BatchingConfig
from cloudml.serving.model import ServedModel
from cloudml.serving.server import _run, configure_logging, tcp_socket


class NoopModel(ServedModel):
    def load(self) -> None:
        self._fn = True  # "ready"; nothing to load

    def run(self, inputs):
        batch = len(next(iter(inputs.values())))
        return {name: np.zeros([batch] + [d or 1 for d in spec.shape[1:]], dtype=np.float32) for name, spec in self.signature.outputs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="a cloudml package folder (for the signature)")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--no-batching", action="store_true")
    args = parser.parse_args()
    configure_logging("warning")
    sockets: list[socket.socket] = [tcp_socket("127.0.0.1", args.port)]
    return _run(NoopModel(args.package), sockets, max_body_bytes=8 << 20,
                batching=BatchingConfig.from_env(enabled=not args.no_batching), error_file=None)


if __name__ == "__main__":
    sys.exit(main())
