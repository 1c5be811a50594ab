"""The local provider: each deployment is a `cloudml serve` process on this machine.

A deployment keeps one port for its whole life. A replacement server binds the same port with
SO_REUSEPORT once its model is loaded and warmed up, so traffic moves to it only when it can
answer; then the old server drains and stops. If the replacement fails, it is removed and the
old server never notices.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from cloudml import httpclient
from cloudml.errors import DeployFailed, DeploymentNotFound, EndpointUnavailable, ModelError, PredictionRejected
from cloudml.packaging import inspect_source, source_hash
from cloudml.providers.base import Deployer, ProviderOptions
from cloudml.providers.local import process
from cloudml.providers.local.state import LocalRecord, StateStore
from cloudml.results import Deployment, DeploymentStatus, DeployResult, Prediction, utcnow
from cloudml.spec import DeploymentSpec


def default_home() -> Path:
    return Path(os.environ.get("CLOUDML_HOME") or Path.home() / ".cloudml").expanduser()


class LocalOptions(ProviderOptions):
    home: Path = Field(default_factory=default_home, description="State, packages and logs ($CLOUDML_HOME).")
    host: str = Field(default="127.0.0.1", description="Address to listen on; 0.0.0.0 exposes the endpoint to the network.")
    port: int | None = Field(default=None, ge=0, le=65535, description="Port for a new deployment; a free one when unset.")
    startup_timeout: float = Field(default=180.0, gt=0, description="Seconds to wait for a new server to become healthy.")
    request_timeout: float = Field(default=60.0, gt=0)
    drain_seconds: float = Field(default=2.0, ge=0, description="On replace: how long kept-alive clients get to move to the new server.")


class LocalDeployer(Deployer):
    provider = "local"
    Options = LocalOptions
    options: LocalOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.state = StateStore(self.options.home)

    # --- deploy ---------------------------------------------------------------------------
    def _deploy(self, spec: DeploymentSpec) -> DeployResult:
        source = inspect_source(spec.model)
        if spec.resources.instance_type or spec.resources.max_replicas or spec.resources.min_replicas != 1:
            self.progress.note("note: the local provider runs one server process; resources apply to cloud providers")
        with self.progress.step(f"hashing {source.path.name}"):
            model_hash = source_hash(source)
        fingerprint = _fingerprint(model_hash, spec)
        with self.state.lock(spec.name):
            current = self.state.get(spec.name)
            if current and current.fingerprint == fingerprint and self._status(current) is DeploymentStatus.HEALTHY:
                if current.tags != spec.tags:
                    current.tags = dict(spec.tags)
                    current.updated_at = utcnow().isoformat()
                    self.state.put(current)
                return DeployResult(action="unchanged", deployment=self._to_deployment(current))
            port = current.port if current else (self.options.port or _free_port(self.options.host))
            host = current.host if current else self.options.host
            record = self._start(spec, source.path, model_hash, fingerprint, host=host, port=port)
            record.created_at = current.created_at if current else record.created_at
            self.state.put(record)
            if current:
                with self.progress.step(f"moving clients off the previous server (pid {current.pid}) and stopping it"):
                    process.drain_server(current.pid, current.socket_path, seconds=self.options.drain_seconds)
                    process.stop_server(current.pid, current.socket_path)
                if current.folder != record.folder:
                    shutil.rmtree(current.folder, ignore_errors=True)
            action = "created" if current is None else ("restarted" if current.fingerprint == fingerprint else "updated")
            return DeployResult(action=action, deployment=self._to_deployment(record))

    def _start(self, spec: DeploymentSpec, model: Path, model_hash: str, fingerprint: str, *, host: str, port: int) -> LocalRecord:
        now = utcnow().isoformat()
        folder = self.options.home / "deployments" / spec.name / f"{fingerprint[:12]}-{int(time.time() * 1000)}"
        record = LocalRecord(
            name=spec.name, host=host, port=port, pid=0, fingerprint=fingerprint, model_hash=model_hash,
            model_version=spec.model_version or 1, model_path=str(Path(model).resolve()), folder=str(folder),
            created_at=now, updated_at=now, env=dict(spec.env), tags=dict(spec.tags),
        )
        error_file = folder / "startup-error.json"
        proc = process.start_server(
            model=Path(model).resolve(), package_dir=folder / "package", log_path=record.log_path,
            socket_path=record.socket_path, error_file=error_file, host=host, port=port,
            name=spec.name, version=spec.model_version, env=spec.env,
        )
        record.pid = proc.pid
        deadline = time.monotonic() + self.options.startup_timeout
        with self.progress.step(f"starting the server for {spec.name} on {record.url}"):
            try:
                while True:
                    if proc.poll() is not None:
                        self._fail(record, error_file, f"the new server for {spec.name!r} exited with code {proc.returncode} before it became healthy")
                    if process.ping(record.socket_path):
                        break
                    if time.monotonic() > deadline:
                        process.stop_server(proc.pid, record.socket_path, grace=5)
                        self._fail(record, error_file, f"the new server for {spec.name!r} did not become healthy within {self.options.startup_timeout:.0f}s")
                    time.sleep(0.1)
            except (DeployFailed, ModelError):
                raise  # _fail has stopped and removed what it started
            except BaseException:
                # Ctrl-C, or anything unforeseen while waiting: leave no unrecorded server behind
                # (nothing would ever stop it); the old one never stopped.
                process.stop_server(proc.pid, record.socket_path, grace=5)
                shutil.rmtree(folder, ignore_errors=True)
                raise
        manifest = json.loads((folder / "package" / "model" / "cloudml-manifest.json").read_text())
        record.model_version = manifest["model_version"]
        return record

    def _fail(self, record: LocalRecord, error_file: Path, message: str) -> None:
        """Remove the failed revision, keep its log for the user, and raise."""
        folder = Path(record.folder)
        log_tail = process.tail(record.log_path)
        kept_log = folder.parent / "last-failed.log"
        if record.log_path.exists():
            shutil.copyfile(record.log_path, kept_log)
        structured = json.loads(error_file.read_text()) if error_file.exists() else None
        shutil.rmtree(folder, ignore_errors=True)
        previous = self.state.get(record.name)
        kept = ""
        if previous is not None:
            state = self._status(previous)
            kept = f"; the previous version keeps serving at {previous.url}" if state.serving else f"; the previous version is left as it was ({state.value})"
        hint = f"full log: {kept_log}"
        if structured and structured.get("exit_code") == ModelError.exit_code:
            raise ModelError(f"{message}: {structured.get('message')}{kept}", hint=structured.get("hint") or hint, details=log_tail)
        raise DeployFailed(message + kept, hint=hint, details=log_tail)

    # --- read -------------------------------------------------------------------------------
    def _record(self, name: str) -> LocalRecord:
        record = self.state.get(name)
        if record is None:
            raise DeploymentNotFound(f"no local deployment named {name!r}", hint="see `cloudml list` for what exists")
        return record

    def _status(self, record: LocalRecord) -> DeploymentStatus:
        if not process.is_running(record.pid, record.socket_path):
            return DeploymentStatus.DEAD
        return DeploymentStatus.HEALTHY if process.ping(record.socket_path) else DeploymentStatus.UNHEALTHY

    def _to_deployment(self, record: LocalRecord) -> Deployment:
        created, updated = record.timestamps()
        return Deployment(
            name=record.name, provider=self.provider, status=self._status(record), endpoint_url=record.url,
            model_version=record.model_version, model_hash=record.model_hash, model_path=record.model_path,
            created_at=created, updated_at=updated, tags=record.tags,
            details={"pid": record.pid, "port": record.port, "log": str(record.log_path), "package": str(Path(record.folder) / "package" / "model")},
        )

    def get(self, name: str) -> Deployment:
        return self._to_deployment(self._record(name))

    def list(self) -> list[Deployment]:
        return [self._to_deployment(r) for r in self.state.all()]

    def predict(self, name: str, *, instances: list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
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
        text = process.tail(record.log_path, tail)
        if text:
            yield from text.splitlines()
        if not follow:
            return
        with record.log_path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            while True:
                line = handle.readline()
                if line:
                    yield line.decode(errors="replace").rstrip("\n")
                    continue
                current = self.state.get(name)
                if current is None or current.folder != record.folder:
                    return  # deleted or replaced: this log is finished
                time.sleep(0.2)

    def delete(self, name: str, *, purge: bool = False) -> bool:  # local packages always go
        with self.state.lock(name):
            record = self.state.get(name)
            if record is None:
                return False
            with self.progress.step(f"stopping {name} (pid {record.pid})"):
                process.stop_server(record.pid, record.socket_path)
            self.state.remove(name)
            shutil.rmtree(Path(record.folder).parent, ignore_errors=True)
            return True


def _fingerprint(model_hash: str, spec: DeploymentSpec) -> str:
    """What requires a new server when it changes: the model, its version and its environment."""
    blob = json.dumps({"model": model_hash, "version": spec.model_version, "env": spec.env}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
