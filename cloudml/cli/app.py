"""The `cloudml` command. Heavy modules (TensorFlow, cloud SDKs, even pydantic) are imported
inside the commands that need them, so `cloudml --help` stays instant."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, NamedTuple, Optional

import typer

if TYPE_CHECKING:
    from cloudml.providers.base import Deployer

app = typer.Typer(
    name="cloudml",
    help="Deploy TensorFlow/Keras models to a local endpoint, AWS SageMaker, Vertex AI or Azure ML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProviderOpt = typer.Option(None, "--provider", "-p", envvar="CLOUDML_PROVIDER", help="local (default), aws, gcp, azure or a plug-in.", show_default=False)
ConfigOpt = typer.Option(None, "--config", "-c", envvar="CLOUDML_CONFIG", help="cloudml.yaml to read (default: ./cloudml.yaml if present).", show_default=False)
OptionOpt = typer.Option(None, "--option", "-o", help="Provider option KEY=VALUE (repeatable), e.g. -o port=8080.", show_default=False)
OutputOpt = typer.Option("text", "--output", envvar="CLOUDML_OUTPUT", help="text or json.")


def _config_path(config: Optional[Path]) -> Optional[Path]:
    if config is not None:
        return config
    default = Path("cloudml.yaml")
    return default if default.is_file() else None


class Result(NamedTuple):
    """What a command prints: `data` as JSON for scripts, `text` for people; and its exit code."""

    data: Any
    text: str
    code: int = 0


def _settings(provider: Optional[str], config: Optional[Path], options: Optional[List[str]], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from cloudml.spec import collect_settings, parse_key_values

    overrides = dict(overrides or {})
    if provider:
        overrides["provider"] = provider
    data = collect_settings(config=_config_path(config), overrides=overrides)
    data.setdefault("provider", "local")
    flag_options = parse_key_values(options, what="option")
    if flag_options:
        data.setdefault("provider_options", {}).setdefault(data["provider"], {}).update(flag_options)
    return data


def _deployer(data: dict[str, Any], *, progress: bool = True) -> "Deployer":
    from cloudml.cli.output import SpinnerProgress
    from cloudml.providers.registry import get_deployer

    name = data["provider"]
    options = data.get("provider_options", {}).get(name, {})
    return get_deployer(name, progress=SpinnerProgress() if progress else None, **options)


def _name(name: Optional[str], data: dict[str, Any]) -> str:
    from cloudml.errors import ConfigError

    resolved = name or data.get("name")
    if not resolved:
        raise ConfigError("which deployment? pass its NAME", hint="or set name: in cloudml.yaml")
    return resolved


def _target(name: Optional[str], provider: Optional[str], config: Optional[Path], options: Optional[List[str]], *, progress: bool = False) -> tuple["Deployer", str]:
    """The deployer and deployment name a command acts on (flags, env and cloudml.yaml merged)."""
    data = _settings(provider, config, options)
    return _deployer(data, progress=progress), _name(name, data)


def _run(output: str, fn) -> None:
    """Run a command body, print its `Result`, and turn cloudml errors into a message and an exit code."""
    from cloudml.errors import CloudMLError, ConfigError, ExitCode

    as_json = output == "json"
    try:
        if output not in ("text", "json"):
            raise ConfigError(f"--output must be text or json, not {output!r}")
        result = fn()
        code = result
        if isinstance(result, Result):
            from cloudml.cli.output import emit

            emit(result.data, as_json=as_json, text=result.text)
            code = result.code
    except CloudMLError as exc:
        from cloudml.cli.output import report_error

        report_error(exc, as_json=as_json)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(code or 0)


def _describe(dep) -> str:
    from rich.markup import escape

    colour = {"healthy": "green", "dead": "red", "failed": "red", "unhealthy": "yellow"}.get(dep.status.value, "cyan")
    lines = [
        f"[bold]{escape(dep.name)}[/bold] ({dep.provider}) [{colour}]{dep.status.value}[/{colour}]",
        f"  endpoint: {escape(dep.endpoint_url or '-')}",
        f"  model:    version {dep.model_version} {escape(dep.model_hash or '')}",
        f"  updated:  {dep.updated_at.isoformat(timespec='seconds')}",
    ]
    for key, value in dep.details.items():
        lines.append(f"  {key}: {escape(str(value))}")
    return "\n".join(lines)


@app.command()
def deploy(
    model: Optional[Path] = typer.Argument(None, help=".keras, .h5, SavedModel folder or cloudml package.", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Deployment name (3-32 lowercase letters, digits, hyphens).", show_default=False),
    provider: Optional[str] = ProviderOpt,
    config: Optional[Path] = ConfigOpt,
    model_version: Optional[int] = typer.Option(None, "--model-version", help="Version folder number (default: the source's, else 1).", show_default=False),
    instance_type: Optional[str] = typer.Option(None, "--instance-type", help="Machine type (cloud providers).", show_default=False),
    min_replicas: Optional[int] = typer.Option(None, "--min-replicas", show_default=False),
    max_replicas: Optional[int] = typer.Option(None, "--max-replicas", show_default=False),
    env: Optional[List[str]] = typer.Option(None, "--env", "-e", help="Serving environment variable KEY=VALUE (repeatable).", show_default=False),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="Tag KEY=VALUE (repeatable).", show_default=False),
    skip_preflight: bool = typer.Option(False, "--skip-preflight", help="Cloud providers: skip loading the model locally and probing it before uploading."),
    option: Optional[List[str]] = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """Package MODEL and deploy it (same model again: no-op; new model: replaced once healthy).

    A replacement starts beside the running version and takes traffic only once it answers its
    health check; if it fails, the previous version keeps serving and the command exits 5 with
    the new server's log tail.
    """

    def body() -> Result:
        from cloudml.spec import parse_key_values, validate_spec

        overrides: dict[str, Any] = {"name": name, "model": str(model) if model else None, "model_version": model_version}
        resources = {k: v for k, v in {"instance_type": instance_type, "min_replicas": min_replicas, "max_replicas": max_replicas}.items() if v is not None}
        if resources:
            overrides["resources"] = resources
        if env:
            overrides["env"] = parse_key_values(env, what="env")
        if tag:
            overrides["tags"] = parse_key_values(tag, what="tag")
        data = _settings(provider, config, option, overrides)
        if skip_preflight:
            _skip_preflight(data)
        result = _deployer(data).deploy(validate_spec(data))
        return Result(result, f"{result.action}: {_describe(result.deployment)}")

    _run(output, body)


def _skip_preflight(data: dict[str, Any]) -> None:
    from cloudml.errors import ConfigError
    from cloudml.providers.registry import load_provider

    name = data["provider"]
    if "preflight" not in load_provider(name).Options.model_fields:
        raise ConfigError(f"--skip-preflight does not apply to provider {name!r}", hint="it is for cloud providers, whose deploys run a local preflight first")
    data.setdefault("provider_options", {}).setdefault(name, {})["preflight"] = False


@app.command()
def predict(
    name: Optional[str] = typer.Argument(None, help="Deployment name.", show_default=False),
    instances: Optional[str] = typer.Argument(None, help='Inline JSON: [[...], ...] or {"instances": [...]}; "-" reads stdin.', show_default=False),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="JSON file with the instances ('-' for stdin).", show_default=False),
    provider: Optional[str] = ProviderOpt,
    config: Optional[Path] = ConfigOpt,
    option: Optional[List[str]] = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """Send instances to a deployment and print its predictions."""

    def body() -> Result:
        payload = _read_instances(instances, file)
        deployer, target = _target(name, provider, config, option)
        result = deployer.predict(target, instances=payload["instances"], parameters=payload.get("parameters"))
        import json

        return Result(result, json.dumps({"predictions": result.predictions}))

    _run(output, body)


def _read_instances(inline: Optional[str], file: Optional[Path]) -> dict[str, Any]:
    import json

    from cloudml.errors import ConfigError

    if inline is not None and file is not None:
        raise ConfigError("give the instances inline or with --file, not both")
    if file is not None:
        where = "stdin" if str(file) == "-" else str(file)
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    elif inline == "-" or (inline is None and not sys.stdin.isatty()):
        where, text = "stdin", sys.stdin.read()
    elif inline is not None:
        where, text = "the command line", inline
    else:
        raise ConfigError("no instances given", hint='pass them inline (\'[[0.1, ...]]\'), with --file FILE, or on stdin')
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"instances from {where} are not valid JSON: {exc}") from None
    if isinstance(value, list):
        value = {"instances": value}
    if not isinstance(value, dict) or not isinstance(value.get("instances"), list):
        raise ConfigError(f'instances from {where} must be a JSON list or {{"instances": [...]}}')
    return value


@app.command()
def status(
    name: Optional[str] = typer.Argument(None, help="Deployment name.", show_default=False),
    provider: Optional[str] = ProviderOpt,
    config: Optional[Path] = ConfigOpt,
    option: Optional[List[str]] = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """Show a deployment; exits 8 when it exists but is not serving."""

    def body() -> Result:
        from cloudml.errors import ExitCode

        deployer, target = _target(name, provider, config, option)
        dep = deployer.get(target)
        return Result(dep, _describe(dep), ExitCode.OK if dep.status.serving else ExitCode.NOT_HEALTHY)

    _run(output, body)


@app.command("list")
def list_(
    provider: Optional[str] = ProviderOpt,
    config: Optional[Path] = ConfigOpt,
    option: Optional[List[str]] = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """List the deployments cloudml made on a provider."""

    def body() -> Result:
        from rich.markup import escape

        data = _settings(provider, config, option)
        deployments = _deployer(data, progress=False).list()
        rows = [f"{escape(d.name):<32} {d.status.value:<10} v{d.model_version or '-':<4} {escape(d.endpoint_url or '-')}" for d in deployments]
        return Result(deployments, "\n".join(rows) if rows else f"no deployments on {data['provider']}")

    _run(output, body)


@app.command()
def logs(
    name: Optional[str] = typer.Argument(None, help="Deployment name.", show_default=False),
    tail: int = typer.Option(100, "--tail", help="How many of the last lines to show."),
    follow: bool = typer.Option(False, "--follow", "-F", help="Keep printing new lines."),
    provider: Optional[str] = ProviderOpt,
    config: Optional[Path] = ConfigOpt,
    option: Optional[List[str]] = OptionOpt,
) -> None:
    """Print the deployment's serving log."""

    def body() -> int:
        deployer, target = _target(name, provider, config, option)
        for line in deployer.logs(target, tail=tail, follow=follow):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return 0

    _run("text", body)


@app.command()
def delete(
    name: Optional[str] = typer.Argument(None, help="Deployment name.", show_default=False),
    provider: Optional[str] = ProviderOpt,
    config: Optional[Path] = ConfigOpt,
    purge: bool = typer.Option(False, "--purge", help="Also delete the stored model artifacts (S3 objects); kept by default for a redeploy."),
    option: Optional[List[str]] = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """Delete a deployment and everything cloudml created for it (idempotent)."""

    def body() -> Result:
        deployer, target = _target(name, provider, config, option, progress=True)
        deleted = deployer.delete(target, purge=purge)
        text = f"deleted {target}" if deleted else f"nothing to delete: no deployment named {target}"
        return Result({"name": target, "deleted": deleted}, text)

    _run(output, body)


@app.command()
def package(
    model: Path = typer.Argument(..., help=".keras, .h5 or SavedModel folder."),
    out: Path = typer.Option(Path("build/package"), "--out", help="Folder to write the package to."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Model name (default: from the file name).", show_default=False),
    model_version: Optional[int] = typer.Option(None, "--model-version", show_default=False),
    container: bool = typer.Option(False, "--container", help="Also write a Docker build context to OUT/container."),
    output: str = OutputOpt,
) -> None:
    """Package MODEL: versioned SavedModel + manifest, model.tar.gz, optional Docker context."""

    def body() -> Result:
        from cloudml.cli.output import SpinnerProgress
        from cloudml.packaging import package_model

        with SpinnerProgress().step(f"packaging {model}"):
            packaged = package_model(model, out, name=name, version=model_version)
        result: dict[str, Any] = {
            "folder": str(packaged.folder),
            "archive": str(packaged.archive),
            "manifest": packaged.manifest.model_dump(mode="json"),
        }
        if container:
            from cloudml.packaging.container import render_build_context

            result["container"] = str(render_build_context(packaged, out / "container"))
        text = "\n".join([f"model folder: {result['folder']}", f"model.tar.gz: {result['archive']}"] + ([f"docker context: {result['container']}  (docker build --platform linux/amd64 {result['container']})"] if container else []) + [f"hash: {packaged.manifest.content_hash}", f"tensorflow: {packaged.manifest.tensorflow_version}"])
        return Result(result, text)

    _run(output, body)


@app.command()
def serve(
    model: Path = typer.Argument(..., help="Packaged model folder, model.tar.gz, .keras, .h5 or SavedModel folder."),
    host: str = typer.Option("127.0.0.1", "--host", envvar="CLOUDML_HOST", help="Address to bind; 0.0.0.0 to accept remote clients."),
    port: int = typer.Option(8080, "--port", envvar="CLOUDML_PORT"),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Model name in TF Serving routes (default: the manifest's).", show_default=False),
    model_version: Optional[int] = typer.Option(None, "--model-version", show_default=False),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", envvar="CLOUDML_MAX_BODY_BYTES", help="Larger requests get 413."),
    batching: Optional[bool] = typer.Option(None, "--batching/--no-batching", help="Merge concurrent requests into one model call (default on; env CLOUDML_BATCHING).", show_default=False),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", help="Most instances per model call (default 64; env CLOUDML_MAX_BATCH_SIZE).", show_default=False),
    max_batch_wait_ms: Optional[float] = typer.Option(None, "--max-batch-wait-ms", help="How long a lone request may wait for company (default 0; env CLOUDML_MAX_BATCH_WAIT_MS).", show_default=False),
    max_queue_size: Optional[int] = typer.Option(None, "--max-queue-size", min=1, help="Requests that may wait for the model; more get 503 with Retry-After (default 512; env CLOUDML_MAX_QUEUE_SIZE).", show_default=False),
    request_deadline_ms: Optional[float] = typer.Option(None, "--request-deadline-ms", min=1, help="A request not started this long after it arrived gets 503 without running (default 30000; env CLOUDML_REQUEST_DEADLINE_MS).", show_default=False),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Serving processes (default: 1 per 4 cores, at most 8; env CLOUDML_WORKERS).", show_default=False),
    log_level: str = typer.Option("info", "--log-level"),
    package_dir: Optional[Path] = typer.Option(None, "--package-dir", hidden=True),
    reuse_port: bool = typer.Option(False, "--reuse-port", hidden=True),
    unix_socket: Optional[Path] = typer.Option(None, "--unix-socket", hidden=True),
    error_file: Optional[Path] = typer.Option(None, "--error-file", hidden=True),
) -> None:
    """Serve a model over HTTP with the SageMaker, Vertex AI, Azure ML and TF Serving contracts."""

    def body() -> int:
        import contextlib
        import tempfile

        from cloudml.errors import CloudMLError
        from cloudml.serving.batching import BatchingConfig
        from cloudml.serving.server import configure_logging, report_startup_error, serving_workers
        from cloudml.serving.server import serve as run_server

        def package_to_serve(cleanup: contextlib.ExitStack) -> Path:
            """The model itself when it is a package folder, else the model packaged into
            --package-dir (or a temporary folder that lives as long as the server)."""
            import logging

            from cloudml.packaging import inspect_source, package_model

            source = inspect_source(model)
            if source.format == "package":
                return source.path
            target = package_dir or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="cloudml-serve-")))
            logging.getLogger("cloudml.serving").info("packaging %s into %s", model, target)
            return package_model(source, target, name=name, version=model_version, archive=False).folder

        configure_logging(log_level)
        # Before packaging, which starts TensorFlow: it reads its thread settings only then.
        count = serving_workers(workers)
        with contextlib.ExitStack() as cleanup:
            try:
                config = BatchingConfig.from_env(enabled=batching, max_batch_size=max_batch_size, max_wait_ms=max_batch_wait_ms,
                                                 max_queue_size=max_queue_size, deadline_ms=request_deadline_ms)
                folder = package_to_serve(cleanup)
            except CloudMLError as exc:
                return report_startup_error(exc, error_file)
            return run_server(
                folder, host=host, port=port, max_body_bytes=max_body_bytes, batching=config, workers=count, reuse_port=reuse_port,
                unix_socket_path=unix_socket, error_file=error_file, log_level=log_level,
            )

    _run("text", body)


@app.command()
def providers(output: str = OutputOpt) -> None:
    """List providers, whether each is ready, and what to install when it is not."""

    def body() -> Result:
        from rich.markup import escape

        from cloudml.providers.registry import entries

        rows = []
        for entry in entries().values():
            state = entry.state()
            rows.append({"name": entry.name, "state": state, "source": entry.source, "description": entry.description,
                         "install": entry.install_hint() if state == "missing-extra" else None})
        text = "\n".join(escape(f"{r['name']:<8} {r['state']:<14} {r['description']}" + (f"  ({r['install']})" if r["install"] else "")) for r in rows)
        return Result(rows, text)

    _run(output, body)


emulator_app = typer.Typer(
    help="Offline emulators of the clouds: try and test deployments without an account.",
    no_args_is_help=True,
)
app.add_typer(emulator_app, name="emulator")


@emulator_app.command("aws")
def emulator_aws(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(4566, "--port", help="Port (LocalStack's by default; 0 picks a free one)."),
    region: str = typer.Option("us-east-1", "--region"),
    init: bool = typer.Option(True, "--init/--no-init", help="Create the SageMaker execution role and the cloudml-artifacts bucket."),
    provisioning_delay: float = typer.Option(1.0, "--provisioning-delay", help="Seconds an endpoint stays Creating before its container starts."),
    health_timeout: float = typer.Option(180.0, "--health-timeout", help="Seconds a container gets to answer /ping before the endpoint fails."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", hidden=True),
) -> None:
    """Run an AWS-compatible endpoint (S3, IAM, STS, CloudWatch Logs, Auto Scaling, SageMaker
    hosting with real predictions) until Ctrl-C. Point clients at it with the printed variables."""

    def body() -> int:
        from cloudml.emulators.foreground import require_modules, serve_until_stopped

        require_modules({"moto": "moto[server]", "boto3": "boto3"}, extra="aws-emulator", title="AWS")
        from cloudml.emulators.aws.server import EmulatorServer, client_env

        server = EmulatorServer(host=host, port=port, provisioning_delay=provisioning_delay, health_timeout=health_timeout)

        def announce():
            if init:
                server.init_resources(region=region)
            return [f"AWS emulator listening on {server.url} (Ctrl-C to stop). Use it with:"], client_env(server.url, region=region), {}

        return serve_until_stopped(server, address=f"{host}:{port}", ready_file=ready_file, announce=announce)

    _run("text", body)


@emulator_app.command("gcp")
def emulator_gcp(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8085, "--port", help="Port of the Vertex AI (and Cloud Logging) API; 0 picks a free one."),
    storage_port: int = typer.Option(0, "--storage-port", help="Port of the GCS emulator; 0 picks a free one."),
    project: str = typer.Option("cloudml-emulator", "--project"),
    location: str = typer.Option("us-central1", "--location"),
    provisioning_delay: float = typer.Option(1.0, "--provisioning-delay", help="Seconds a long-running operation takes before its work starts."),
    health_timeout: float = typer.Option(180.0, "--health-timeout", help="Seconds a model server gets to answer its health route before the deployment fails."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", hidden=True),
) -> None:
    """Run an offline Vertex AI (REST API with real predictions, Cloud Logging entries:list) and
    GCS until Ctrl-C. Point clients at it with the printed variables."""

    def body() -> int:
        from cloudml.emulators.foreground import require_modules, serve_until_stopped

        require_modules({"gcp_storage_emulator": "gcp-storage-emulator", "google.cloud.aiplatform": "google-cloud-aiplatform",
                         "google.cloud.storage": "google-cloud-storage"}, extra="gcp-emulator", title="GCP")
        from cloudml.emulators.gcp.server import EmulatorServer, client_env

        server = EmulatorServer(host=host, port=port, storage_port=storage_port, provisioning_delay=provisioning_delay, health_timeout=health_timeout)

        def announce():
            banner = f"GCP emulator: Vertex AI on {server.url}, GCS on {server.storage_url} (Ctrl-C to stop). Use it with:"
            return [banner], client_env(server.url, server.storage_url, project=project, location=location), {"storage_url": server.storage_url}

        return serve_until_stopped(server, address=f"{host}:{port}", ready_file=ready_file, announce=announce)

    _run("text", body)


@emulator_app.command("azure")
def emulator_azure(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", help="Port of the Azure Resource Manager / Azure ML endpoint (https; 0 picks a free one)."),
    provisioning_delay: float = typer.Option(1.0, "--provisioning-delay", help="Seconds a deployment stays Creating before its container starts."),
    health_timeout: float = typer.Option(180.0, "--health-timeout", help="Seconds a container gets to answer its readiness route before the deployment fails."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", hidden=True),
) -> None:
    """Run an Azure ML workspace (ARM and Azure ML REST, online endpoints serving real
    predictions, Azurite blob storage) until Ctrl-C. Point clients at it with the printed variables."""
    from cloudml.emulators.azure.process import run_foreground

    _run("text", lambda: run_foreground(host=host, port=port, provisioning_delay=provisioning_delay,
                                        health_timeout=health_timeout, ready_file=ready_file))


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()
