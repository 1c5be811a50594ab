"""Run the serving app under uvicorn: `cloudml serve` and the container entrypoint land here.

It serves a package folder. Turning a raw model into one is packaging's job, done above this
(by `cloudml serve`), so the serving runtime never imports cloudml.packaging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from cloudml.backends import THREADS_VAR
from cloudml.errors import CloudMLError, ExitCode, ModelError
from cloudml.serving import handover
from cloudml.serving.batching import BatchingConfig
from cloudml.serving.http.app import DEFAULT_MAX_BODY_BYTES, create_app
from cloudml.serving.model import describe_error
from cloudml.serving.workers import WorkerPool, default_workers, tensorflow_threads

log = logging.getLogger("cloudml.serving")


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def tcp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns on TCP_NODELAY only for such sockets, and without
    # it a kept-alive client waits ~40 ms (delayed ACK) for every response body.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Lets a replacement server listen on the same port before the old one stops.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CloudMLError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port, or stop what uses this one") from None
    return sock


def unix_socket(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def _write_error(error_file: Path | None, exc: BaseException) -> None:
    if error_file is None:
        return
    info = exc.to_dict() if isinstance(exc, CloudMLError) else {"error": type(exc).__name__, "message": str(exc), "exit_code": ExitCode.MODEL}
    error_file.write_text(json.dumps(info))


def report_startup_error(exc: CloudMLError, error_file: Path | None) -> int:
    """Log why serving could not start, write it to `error_file` (the local provider reads it),
    and return the exit code to end with."""
    log.error("%s", exc)
    _write_error(error_file, exc)
    return exc.exit_code


def serving_workers(workers: int | None = None) -> int:
    """How many serving processes (the flag, else CLOUDML_WORKERS, else by cores), with each
    one's share of the cores for TensorFlow put in the environment. TensorFlow reads those
    variables once, when it starts: call this before anything imports it (packaging does)."""
    workers = workers or int(os.environ.get("CLOUDML_WORKERS") or 0) or default_workers()
    if workers > 1:
        threads = tensorflow_threads(workers)
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(min(2, threads)))
        os.environ.setdefault(THREADS_VAR, str(threads))  # ONNX Runtime's share
    return workers


def open_package(folder: Path):
    """The `ServedModel` of a package folder (loaded later, by the server's lifespan)."""
    from cloudml.serving.model import ServedModel

    return ServedModel(Path(folder))  # a ModelError when the folder holds no manifest


def serve(
    package: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batching: BatchingConfig | None = None,
    workers: int | None = None,
    reuse_port: bool = False,
    unix_socket_path: Path | None = None,
    error_file: Path | None = None,
    log_level: str = "info",
) -> int:
    """Serve a package folder until stopped; returns an exit code (non-zero when the model could
    not be served)."""
    configure_logging(log_level)
    handover.tie_to_parent()  # first: a deploy killed while this server starts must not leave it running
    workers = serving_workers(workers)
    if workers > 1:
        reuse_port = True  # the other processes listen on the same port
    with contextlib.ExitStack() as cleanup:
        try:
            batching = batching or BatchingConfig.from_env()
            served = open_package(package)
            inherited = handover.inherited_listener()  # a local deployment's own port (see handover)
            sockets = [inherited or tcp_socket(host, port, reuse_port=reuse_port)]
            cleanup.enter_context(handover.handing_off(sockets[0]))
            if unix_socket_path is not None:
                sockets.append(unix_socket(unix_socket_path))
                cleanup.callback(unix_socket_path.unlink, missing_ok=True)
        except CloudMLError as exc:
            return report_startup_error(exc, error_file)
        pool = None
        if workers > 1:
            bound_host, bound_port = sockets[0].getsockname()[:2]
            serve_args = ["--max-body-bytes", str(max_body_bytes), "--log-level", log_level,
                          "--max-batch-size", str(batching.max_batch_size), "--max-batch-wait-ms", str(batching.max_wait_ms),
                          "--max-queue-size", str(batching.max_queue_size), "--request-deadline-ms", str(batching.deadline_ms),
                          "--batching" if batching.enabled else "--no-batching"]
            pool = WorkerPool(package=served.folder, host=bound_host, port=bound_port, count=workers - 1, serve_args=serve_args,
                              listen_fd=sockets[0].fileno() if inherited else None)
        return _run(served, sockets, max_body_bytes=max_body_bytes, batching=batching, error_file=error_file, workers=pool)


def _drainable_server(config, app):
    """uvicorn's server, plus SIGUSR1 = drain: stop listening and answer every further request
    with `Connection: close`, so clients move to a replacement server on the same port before
    this one is stopped. (Stopping alone closes idle kept-alive connections, and a client that
    sends on one at that moment gets an error instead of an answer.)"""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if hasattr(signal, "SIGUSR1"):
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.drain)

        def drain(self):
            log.info("draining: no new connections; kept-alive clients are told to reconnect")
            app.draining = True
            for listener in self.servers:
                listener.close()

    return Server(config)


def _run(served, sockets: list[socket.socket], *, max_body_bytes: int, batching: BatchingConfig, error_file: Path | None,
         workers: WorkerPool | None = None) -> int:
    import uvicorn

    from cloudml.serving.protocol import CoalescingHttpToolsProtocol, ConnectionLimits, raise_descriptor_limit

    try:
        limits = ConnectionLimits.from_env().within(raise_descriptor_limit())
    except CloudMLError as exc:
        return report_startup_error(exc, error_file)
    app = create_app(served, max_body_bytes=max_body_bytes, batching=batching, workers=workers)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=15, server_header=False,
                            http=CoalescingHttpToolsProtocol.configured(limits))
    server = _drainable_server(config, app)
    bound = sockets[0].getsockname()
    mode = f"batching up to {batching.max_batch_size} instances" if batching.enabled else "batching off"
    mode += f", {workers.count + 1} processes" if workers else ", 1 process"
    log.info("serving %s (version %s) on http://%s:%s (%s)", served.name, served.version, bound[0], bound[1], mode)
    try:
        server.run(sockets=sockets)
    except SystemExit:
        # uvicorn exits the process itself when the lifespan (model load and warm-up) fails;
        # catch that so the reason is logged and written to the error file below.
        if server.started:
            raise
    if not server.started:
        failure = served.load_error or RuntimeError("the server did not start")
        wrapped = ModelError(f"the model could not be loaded and warmed up: {type(failure).__name__}: {describe_error(failure)}",
                             hint="check the model runs in-process; the log above has the traceback")
        log.error("%s", wrapped.message)
        _write_error(error_file, wrapped)
        return ExitCode.MODEL
    return ExitCode.OK
