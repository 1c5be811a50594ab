"""The local provider: each deployment is a `cloudml serve` process on this machine.

A deployment keeps one port for its whole life, and the port is its own: the deploy that
creates it binds the listening socket (refusing a port anything listens on), and every later
server of the deployment serves that same socket, handed over by the server it replaces (see
cloudml.serving.handover). A replacement starts taking connections once its model is loaded
and warmed up; then the old server drains and stops. If the replacement fails, it is removed and
the old server never notices.

Every server is recorded before it starts and stays tied to its deploy until it is recorded as
serving, so a deploy that ends early (any signal, any error) leaves either the old version alone
or the new one recorded; what a killed deploy left is reaped by the next command on that name.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cloudml import httpclient
from cloudml.contract import Manifest
from cloudml.errors import ConfigError, DeployFailed, DeploymentNotFound, EndpointUnavailable, ModelError, PredictionRejected
from cloudml.packaging import inspect_source
from cloudml.packaging.snapshot import Snapshot, snapshot_model
from cloudml.providers.base import Deployer, ProviderOptions, cloudml_home
from cloudml.providers.local import process
from cloudml.providers.local.state import LocalRecord, Server, StateError, StateStore
from cloudml.providers.served import served_details
from cloudml.results import Deployment, DeploymentStatus, DeployResult, Prediction, utcnow
from cloudml.spec import DeploymentSpec

# For tests only (tests/test_local_faults.py): "STEP:SIGNAL" makes a deploy send itself SIGNAL
# when it reaches STEP (recorded, started, healthy, switched, draining), to stop it exactly there.
FAULT_VARIABLE = "CLOUDML_TEST_LOCAL_FAULT"


class LocalOptions(ProviderOptions):
    home: Path = Field(default_factory=cloudml_home, description="State, packages and logs ($CLOUDML_HOME).")
    host: str = Field(default="127.0.0.1", description="Address to listen on; 0.0.0.0 exposes the endpoint to the network.")
    port: int | None = Field(default=None, ge=0, le=65535,
                             description="Port for a new deployment (refused when anything listens on it); a free one when unset.")
    startup_timeout: float = Field(default=180.0, gt=0, description="Seconds to wait for a new server to become healthy.")
    request_timeout: float = Field(default=60.0, gt=0)
    drain_seconds: float = Field(default=2.0, ge=0, description="On replace: how long kept-alive clients get to move to the new server.")
    state_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for the state database while another command writes it.")


class _Signalled(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """SIGTERM and SIGHUP end a deploy like Ctrl-C does: through its clean-up, then by the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise _Signalled(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except _Signalled as exc:
        for sig, old in previous.items():
            signal.signal(sig, old)
        signal.signal(exc.signum, signal.SIG_DFL)
        os.kill(os.getpid(), exc.signum)
        raise KeyboardInterrupt from None  # only reached where the signal is blocked
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _fault_point(step: str) -> None:
    wanted = os.environ.get(FAULT_VARIABLE, "")
    if wanted.partition(":")[0] == step:
        os.kill(os.getpid(), getattr(signal, wanted.partition(":")[2] or "SIGKILL"))
        time.sleep(5)  # a caught signal is handled here


class LocalDeployer(Deployer):
    provider = "local"
    Options = LocalOptions
    options: LocalOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.state = StateStore(self.options.home, timeout=self.options.state_timeout)

    # --- deploy ---------------------------------------------------------------------------
    def _deploy(self, spec: DeploymentSpec) -> DeployResult:
        source = inspect_source(spec.model)
        if spec.resources.instance_type or spec.resources.max_replicas or spec.resources.min_replicas != 1:
            self.progress.note("note: the local provider runs one server process; resources apply to cloud providers")
        with contextlib.ExitStack() as stack:
            # The one read of the model: its digest decides, and the new server packages the copy.
            with self.progress.step(f"hashing {source.path.name}"):
                snapshot = stack.enter_context(snapshot_model(source, self.options.home / "snapshots"))
            return self._deploy_snapshot(spec, snapshot)

    def _deploy_snapshot(self, spec: DeploymentSpec, snapshot: Snapshot) -> DeployResult:
        source, model_hash = snapshot.original, snapshot.digest
        version = spec.model_version or _package_version(source) or source.version or 1
        fingerprint = _fingerprint(model_hash, version, spec)
        with _signals_unwind(), self.state.lock(spec.name):
            current = self._reap(self.state.get(spec.name))
            if current and current.fingerprint == fingerprint and self._status(current) is DeploymentStatus.HEALTHY:
                if current.tags != spec.tags:
                    current.tags = dict(spec.tags)
                    current.updated_at = utcnow().isoformat()
                    self.state.put(current)
                return DeployResult(action="unchanged", deployment=self._to_deployment(current))
            previous = current.server if current else None
            old = previous if previous and self._running(previous) else None
            action: Literal["created", "updated", "restarted"] = (
                "created" if current is None else ("restarted" if current.fingerprint == fingerprint else "updated"))
            listener = self._listener(current, old)
            try:
                now = utcnow().isoformat()
                record = current or LocalRecord(
                    name=spec.name, host=self.options.host, port=listener.getsockname()[1], fingerprint="",
                    model_hash="", model_version=version, model_path="", created_at=now, updated_at=now,
                )
                new = self._start(spec, snapshot, record, listener)
            finally:
                listener.close()  # the server has its own copy; without one, the port is free again
            record.server, record.pending = new, None
            record.retired = [previous] if previous else []  # a dead one too: its files go
            record.fingerprint, record.model_hash, record.model_path = fingerprint, model_hash, str(Path(spec.model).resolve())
            record.model_version, record.env, record.tags = _served_version(new) or version, dict(spec.env), dict(spec.tags)
            record.updated_at = utcnow().isoformat()
            try:
                self.state.put(record)
            except StateError as exc:
                process.stop_server(new.pid, new.socket_path, grace=5)
                raise StateError(f"{exc.message}; the new server was stopped{'' if old is None else ' and the previous version keeps serving'}",
                                 hint=exc.hint) from None
            _fault_point("switched")
            self._retire(record)
            return DeployResult(action=action, deployment=self._to_deployment(record))

    def _listener(self, current: LocalRecord | None, old: Server | None):
        """The deployment's listening socket: the running server's, or a newly bound one."""
        if old is not None:
            assert current is not None  # a running server belongs to a recorded deployment
            listener = process.take_over(old.handoff_path)
            if listener is None:
                raise DeployFailed(f"the running server of {current.name!r} (pid {old.pid}) does not hand over its port; it keeps serving",
                                   hint=f"it was started by an older cloudml: `cloudml delete {current.name}`, then deploy again")
            return listener
        host = current.host if current else self.options.host
        port = current.port if current else (self.options.port or 0)
        try:
            return process.listen(host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use by another program or deployment",
                                  hint="choose another one with -o port=..., or leave it unset for a free one") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another host or port") from None

    def _start(self, spec: DeploymentSpec, snapshot: Snapshot, record: LocalRecord, listener) -> Server:
        """Start a server for `spec` on `listener`, recorded as pending; return it once healthy.
        It packages the snapshot (not the user's model, which is not read again)."""
        revision = hashlib.sha256(f"{spec.name}{time.time()}{os.getpid()}".encode()).hexdigest()
        folder = self.options.home / "deployments" / spec.name / f"{revision[:12]}-{int(time.time() * 1000)}"
        served = snapshot.original
        new = Server.new(folder, served.path if served.format == "package" else folder / "package" / "model")
        record.pending = new
        self.state.put(record)  # recorded before it starts: if we die from here on, it is found
        _fault_point("recorded")
        error_file = folder / "startup-error.json"
        tie = process.Tie()
        try:
            proc = process.start_server(
                model=served.path.resolve(), package_dir=folder / "package",
                snapshot=(snapshot.copy, snapshot.digest) if snapshot.copy else None, log_path=new.log_path,
                socket_path=new.socket_path, handoff_path=new.handoff_path, error_file=error_file,
                listener=listener, tie=tie, host=record.host, name=spec.name, version=spec.model_version, env=spec.env,
                runtime=spec.runtime, sample=spec.sample.resolve() if spec.sample else None,
            )
        except BaseException:
            tie.close()
            raise
        new.pid = proc.pid
        deadline = time.monotonic() + self.options.startup_timeout
        try:
            self.state.put(record)
            _fault_point("started")
            with self.progress.step(f"starting the server for {spec.name} on {record.url}"):
                while True:
                    if proc.poll() is not None:
                        self._fail(record, error_file, f"the new server for {spec.name!r} exited with code {proc.returncode} before it became healthy")
                    if process.ping(new.socket_path):
                        break
                    if time.monotonic() > deadline:
                        self._fail(record, error_file, f"the new server for {spec.name!r} did not become healthy within {self.options.startup_timeout:.0f}s")
                    time.sleep(0.1)
            _fault_point("healthy")
            tie.release()  # still recorded as pending: a later command reaps it if we die now
        except BaseException:
            # Ctrl-C, a signal, a state error, a failed start: stop and forget the new server; the old one never stopped.
            tie.close()
            process.stop_server(proc.pid, new.socket_path, grace=5)
            self._forget_pending(record)
            raise
        return new

    def _forget_pending(self, record: LocalRecord) -> None:
        pending, record.pending = record.pending, None
        if pending is not None:
            pending.remove_files()
        with contextlib.suppress(StateError):  # what stays recorded is reaped later
            if record.server is None and not record.retired:
                self.state.remove(record.name)
            else:
                self.state.put(record)

    def _retire(self, record: LocalRecord) -> None:
        """Drain and stop the servers `record` replaced, then forget them."""
        if not record.retired:
            return
        try:
            for old in record.retired:
                if self._running(old):
                    with self.progress.step(f"moving clients off the previous server (pid {old.pid}) and stopping it"):
                        process.drain_server(old.pid, old.socket_path, seconds=self.options.drain_seconds)
                        _fault_point("draining")
                        process.stop_server(old.pid, old.socket_path)
        finally:
            for old in record.retired:
                process.stop_server(old.pid, old.socket_path, grace=5)
                if record.server is None or old.folder != record.server.folder:
                    old.remove_files()
            record.retired = []
            with contextlib.suppress(StateError):  # a later command finds them stopped and forgets them
                self.state.put(record)

    def _reap(self, record: LocalRecord | None) -> LocalRecord | None:
        """Under the name's lock: stop what a deploy that died left (a pending server, servers
        it was retiring) and forget it; a deployment that never served is forgotten entirely."""
        if record is None or (record.pending is None and not record.retired and record.server is not None):
            return record
        for leftover in [s for s in [record.pending, *record.retired] if s is not None]:
            process.stop_server(leftover.pid, leftover.socket_path, grace=5)
            if record.server is None or leftover.folder != record.server.folder:
                leftover.remove_files()
        record.pending, record.retired = None, []
        if record.server is None:
            self.state.remove(record.name)
            return None
        self.state.put(record)
        return record

    def _fail(self, record: LocalRecord, error_file: Path, message: str) -> None:
        """Keep the failed revision's log for the user and raise (`_start` removes the revision)."""
        new = record.pending
        assert new is not None  # _fail is called while a new server is pending
        folder = Path(new.folder)
        log_tail = process.tail(new.log_path)
        kept_log = folder.parent / "last-failed.log"
        with contextlib.suppress(OSError):
            if new.log_path.exists():
                kept_log.write_bytes(new.log_path.read_bytes())
        try:
            structured = json.loads(error_file.read_text()) if error_file.exists() else None
        except (OSError, ValueError):
            structured = None  # cut short (a full disk): the log tail says what happened
        kept = ""
        if record.server is not None:
            state = self._status(record)
            kept = f"; the previous version keeps serving at {record.url}" if state.serving else f"; the previous version is left as it was ({state.value})"
        hint = f"full log: {kept_log}"
        if isinstance(structured, dict) and structured.get("exit_code") == ModelError.exit_code:
            raise ModelError(f"{message}: {structured.get('message')}{kept}", hint=structured.get("hint") or hint, details=log_tail)
        raise DeployFailed(message + kept, hint=hint, details=log_tail)

    # --- read -------------------------------------------------------------------------------
    def _record(self, name: str) -> LocalRecord:
        record = self._settled(self.state.get(name))
        if record is None:
            raise DeploymentNotFound(f"no local deployment named {name!r}", hint="see `cloudml list` for what exists")
        return record

    def _settled(self, record: LocalRecord | None) -> LocalRecord | None:
        """`record`, with what a killed deploy left reaped, unless a deploy is still running."""
        if record is None or (record.pending is None and not record.retired and record.server is not None):
            return record
        with self.state.lock(record.name, wait=False) as held:
            return self._reap(self.state.get(record.name)) if held else record

    @staticmethod
    def _running(server: Server) -> bool:
        return server.pid > 0 and process.is_running(server.pid, server.socket_path)

    def _status(self, record: LocalRecord) -> DeploymentStatus:
        if record.server is None:
            return DeploymentStatus.CREATING
        if not self._running(record.server):
            return DeploymentStatus.UPDATING if record.pending else DeploymentStatus.DEAD
        return DeploymentStatus.HEALTHY if process.ping(record.server.socket_path) else DeploymentStatus.UNHEALTHY

    def _to_deployment(self, record: LocalRecord) -> Deployment:
        created, updated = record.timestamps()
        server = record.server
        details: dict[str, Any] = {"pid": record.pid, "port": record.port}
        if server is not None:
            details.update(log=str(server.log_path), package=server.package)
            details.update(_served_runtime(Path(server.package)))
        return Deployment(
            name=record.name, provider=self.provider, status=self._status(record), endpoint_url=record.url,
            model_version=record.model_version, model_hash=record.model_hash or None, model_path=record.model_path or None,
            created_at=created, updated_at=updated, tags=record.tags, details=details,
        )

    def get(self, name: str) -> Deployment:
        return self._to_deployment(self._record(name))

    def list(self) -> list[Deployment]:
        records = [self._settled(r) for r in self.state.all()]
        return [self._to_deployment(r) for r in records if r is not None]

    def predict(self, name: str, *, instances: builtins.list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
        record = self._record(name)
        payload: dict[str, Any] = {"instances": instances}
        if parameters:
            payload["parameters"] = parameters
        start = time.perf_counter()
        try:
            result = httpclient.request("POST", f"{record.url}/invocations", payload=payload, timeout=self.options.request_timeout)
        except OSError as exc:
            status = self._status(record)
            raise EndpointUnavailable(
                f"deployment {name!r} did not answer at {record.url} ({exc.__class__.__name__}); its server is {status.value}",
                hint=f"see `cloudml logs {name}`, then redeploy with `cloudml deploy`",
            ) from None
        latency = (time.perf_counter() - start) * 1000
        body = result.json()
        if result.status >= 400:
            error = body.get("error") if isinstance(body, dict) else body
            expected = body.get("expected") if isinstance(body, dict) else None
            raise PredictionRejected(
                f"deployment {name!r} rejected the request ({result.status}): {error}",
                status_code=result.status,
                hint=f"expected inputs: {json.dumps(expected)}" if expected else None,
            )
        return Prediction(deployment=name, predictions=body["predictions"], model_version=record.model_version, latency_ms=round(latency, 2))

    def logs(self, name: str, *, tail: int = 100, follow: bool = False) -> Iterator[str]:
        record = self._record(name)
        if record.server is None:
            raise DeploymentNotFound(f"local deployment {name!r} has no server yet", hint="wait for its deploy to finish")
        log_path = record.server.log_path
        text = process.tail(log_path, tail)
        if text:
            yield from text.splitlines()
        if not follow:
            return
        with log_path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            while True:
                line = handle.readline()
                if line:
                    yield line.decode(errors="replace").rstrip("\n")
                    continue
                current = self.state.get(name)
                if current is None or current.server is None or current.server.folder != record.server.folder:
                    return  # deleted or replaced: this log is finished
                time.sleep(0.2)

    def delete(self, name: str, *, purge: bool = False) -> bool:  # local packages always go
        with _signals_unwind(), self.state.lock(name):
            record = self.state.get(name)
            if record is None:
                return False
            servers = [s for s in [record.server, record.pending, *record.retired] if s is not None]
            with self.progress.step(f"stopping {name} (pid {record.pid})"):
                for server in servers:
                    process.stop_server(server.pid, server.socket_path)
            # Files first: on a full disk, that makes the room the state write needs; if we die
            # before it, the record names stopped servers, and deleting again finishes.
            for server in servers:
                server.remove_files()
            with contextlib.suppress(OSError):
                for leftover in (self.options.home / "deployments" / name).iterdir():
                    leftover.unlink()  # last-failed.log
                (self.options.home / "deployments" / name).rmdir()
            self.state.remove(name)
            return True


def _package_version(source) -> int | None:
    if source.format != "package":
        return None
    return Manifest.read(source.path).model_version


def _served_version(server: Server) -> int | None:
    try:
        return Manifest.read(Path(server.package)).model_version
    except (OSError, ValueError, ModelError):
        return None


def _served_runtime(package: Path) -> dict[str, Any]:
    """What `status` shows of how a package is served (nothing while it is still being packaged)."""
    try:
        manifest = Manifest.read(package)
    except ModelError:
        return {}
    shown: dict[str, Any] = served_details(manifest.runtime)
    shown["inputs"] = {name: spec.describe() for name, spec in manifest.signature.inputs.items()}
    return shown


def _fingerprint(model_hash: str, version: int, spec: DeploymentSpec) -> str:
    """What requires a new server when it changes: the model, its version, its environment and how it is served."""
    sample = hashlib.sha256(spec.sample.read_bytes()).hexdigest() if spec.sample and spec.sample.is_file() else None
    blob = json.dumps({"model": model_hash, "version": version, "env": spec.env, "runtime": spec.runtime, "sample": sample}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
