"""The `cloudml` command. Heavy modules (TensorFlow, cloud SDKs, even pydantic) are imported
inside the commands that need them, so `cloudml --help` stays instant."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import typer

from cloudml.cli.group import CloudMLGroup

if TYPE_CHECKING:
    from cloudml.config import Config
    from cloudml.providers.base import Deployer


app = typer.Typer(
    name="cloudml",
    cls=CloudMLGroup,
    help="Deploy TensorFlow/Keras models to a local endpoint, AWS SageMaker, Vertex AI or Azure ML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# --provider and --config have no typer envvar: cloudml.config reads CLOUDML_PROVIDER and
# CLOUDML_CONFIG with the rest of the environment, once, so every variable follows one set of rules.
ProviderOpt = typer.Option(None, "--provider", "-p", help="local (default), aws, gcp, azure or a plug-in (env CLOUDML_PROVIDER).", show_default=False)
ConfigOpt = typer.Option(None, "--config", "-c", help="cloudml.yaml to read (env CLOUDML_CONFIG; default: ./cloudml.yaml if present).", show_default=False)
OptionOpt = typer.Option(None, "--option", "-o",
    help="Provider option KEY=VALUE (repeatable), e.g. -o port=8080; lists: a,b or JSON. `cloudml providers NAME` lists them.", show_default=False)
OutputOpt = typer.Option("text", "--output", envvar="CLOUDML_OUTPUT", help="text or json (env CLOUDML_OUTPUT); with json, errors too are JSON on stdout.")
OUTPUTS = ("text", "json")
RUNTIME_HELP = "auto (ONNX Runtime when the ONNX conversion verifies, else TensorFlow), onnx or tensorflow."
SAMPLE_HELP = 'A request file ({"instances": [...]}) the conversion is also verified on; required for TorchScript .pt files.'
RUNTIMES = ("auto", "onnx", "tensorflow")


def _runtime_choice(value: str | None) -> Any:
    from cloudml.errors import ConfigError

    choice = (value or "auto").lower()
    if choice not in RUNTIMES:
        raise ConfigError(f"--runtime {value!r} is not one of {', '.join(RUNTIMES)}", hint="leave it at auto unless you need one backend")
    return choice


def describe_manifest(manifest: Any) -> list[str]:
    """What serves a package and why, one line each, for `package` and `status`."""
    runtime = manifest.runtime
    inputs = ", ".join(f"{name}: {spec.describe()}" for name, spec in manifest.signature.inputs.items())
    made_by = f"{runtime.framework} {runtime.framework_version or ''}".strip()
    lines = [f"runtime: {runtime.backend} (from {made_by})", f"inputs: {inputs}"]
    if runtime.verification is not None and runtime.tolerance is not None:
        check = runtime.verification
        lines.append(f"verified: {'yes' if check.passed else 'no'}, largest difference {check.max_abs_diff:.3g} (abs) / {check.max_rel_diff:.3g} (rel) "
                     f"over {check.probes} probe batches; tolerance atol {runtime.tolerance.atol:g}, rtol {runtime.tolerance.rtol:g}")
    if runtime.fallback_reason:
        lines.append(f"not served by onnx: {runtime.fallback_reason}")
    return lines


class Result(NamedTuple):
    """What a command prints: `data` as JSON for scripts, `text` for people; and its exit code."""

    data: Any
    text: str
    code: int = 0


def _resolve(provider: str | None, config: Path | None, options: list[str] | None, *,
             spec: dict[str, Any] | None = None, skip_preflight: bool = False) -> Config:
    """cloudml.yaml, CLOUDML_* variables and these flags, merged and checked by cloudml.config."""
    from cloudml.config import DEFAULT_CONFIG, option_flags, resolve
    from cloudml.providers.options import OptionLayer

    layers = [option_flags(options)]
    if skip_preflight:
        layers.append(OptionLayer({"preflight": False}, labels={"preflight": "--skip-preflight"},
                                  refusal="--skip-preflight does not apply to provider {provider}: it has no preflight option",
                                  hint="it is for cloud providers, whose deploys run a local preflight first"))
    return resolve(config=config, provider=provider, spec=spec, spec_labels=SPEC_FLAGS, options=layers, default_config=DEFAULT_CONFIG)


SPEC_FLAGS = {"name": "--name", "model": "the MODEL argument", "model_version": "--model-version", "resources.instance_type": "--instance-type",
              "resources.min_replicas": "--min-replicas", "resources.max_replicas": "--max-replicas", "env": "--env", "tags": "--tag"}


def _deployer(config: Config, *, progress: bool = True) -> Deployer:
    from cloudml.cli.output import SpinnerProgress

    return config.deployer(progress=SpinnerProgress() if progress else None)


def _name(name: str | None, config: Config) -> str:
    from cloudml.errors import ConfigError

    resolved = name or config.name
    if not resolved:
        raise ConfigError("which deployment? pass its NAME", hint="or set name: in cloudml.yaml (or CLOUDML_NAME)")
    return resolved


def _target(name: str | None, provider: str | None, config: Path | None, options: list[str] | None, *, progress: bool = False) -> tuple[Deployer, str]:
    """The deployer and deployment name a command acts on (flags, env and cloudml.yaml merged)."""
    resolved = _resolve(provider, config, options)
    return _deployer(resolved, progress=progress), _name(name, resolved)


def _run(output: str, fn) -> None:
    """Run a command body, print its `Result`, and turn cloudml errors into a message and an exit code."""
    from cloudml.errors import CloudMLError, ConfigError, Interrupted

    output = output.lower()
    as_json = output == "json"
    try:
        if output not in OUTPUTS:
            from cloudml.validation import did_you_mean

            suggestion = did_you_mean(output, OUTPUTS)
            raise ConfigError(f"--output must be text or json, not {output!r}", hint=f"did you mean --output {suggestion}?" if suggestion else None)
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
        interrupted = Interrupted("interrupted", hint="run the command again to finish it")
        if as_json:  # people pressed Ctrl-C themselves; a script is owed its one error object
            from cloudml.cli.output import report_error

            report_error(interrupted, as_json=True)
        raise typer.Exit(interrupted.exit_code) from None
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
    model: Path | None = typer.Argument(None, help=".keras, .h5, .pt2, .pt, .onnx, SavedModel folder or cloudml package.", show_default=False),
    name: str | None = typer.Option(None, "--name", "-n", help="Deployment name (3-32 lowercase letters, digits, hyphens).", show_default=False),
    runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP, show_default=False),
    sample: Path | None = typer.Option(None, "--sample", help=SAMPLE_HELP, show_default=False),
    provider: str | None = ProviderOpt,
    config: Path | None = ConfigOpt,
    model_version: int | None = typer.Option(None, "--model-version", help="Version folder number (default: the source's, else 1).", show_default=False),
    instance_type: str | None = typer.Option(None, "--instance-type", help="Machine type (cloud providers).", show_default=False),
    min_replicas: int | None = typer.Option(None, "--min-replicas", show_default=False),
    max_replicas: int | None = typer.Option(None, "--max-replicas", show_default=False),
    env: list[str] | None = typer.Option(None, "--env", "-e", help="Serving environment variable KEY=VALUE (repeatable).", show_default=False),
    tag: list[str] | None = typer.Option(None, "--tag", "-t", help="Tag KEY=VALUE (repeatable).", show_default=False),
    skip_preflight: bool = typer.Option(False, "--skip-preflight",
        help="Cloud providers: skip loading the model locally and probing it before uploading (the option preflight=false)."),
    option: list[str] | None = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """Package MODEL and deploy it (same model again: no-op; new model: replaced once healthy).

    A replacement starts beside the running version and takes traffic only once it answers its
    health check; if it fails, the previous version keeps serving and the command exits 5 with
    the new server's log tail.
    """

    def body() -> Result:
        from cloudml.spec import parse_key_values

        flags: dict[str, Any] = {"name": name, "model": str(model) if model else None, "model_version": model_version,
                                 "runtime": runtime, "sample": str(sample) if sample else None,
                                 "resources": {"instance_type": instance_type, "min_replicas": min_replicas, "max_replicas": max_replicas},
                                 "env": parse_key_values(env, what="env"), "tags": parse_key_values(tag, what="tag")}
        resolved = _resolve(provider, config, option, spec=flags, skip_preflight=skip_preflight)
        spec = resolved.spec()
        result = _deployer(resolved).deploy(spec)
        return Result(result, f"{result.action}: {_describe(result.deployment)}")

    _run(output, body)


@app.command()
def predict(
    name: str | None = typer.Argument(None, help="Deployment name.", show_default=False),
    instances: str | None = typer.Argument(None, help='Inline JSON: [[...], ...] or {"instances": [...]}; "-" reads stdin.', show_default=False),
    file: Path | None = typer.Option(None, "--file", "-f", help="JSON file with the instances ('-' for stdin).", show_default=False),
    provider: str | None = ProviderOpt,
    config: Path | None = ConfigOpt,
    option: list[str] | None = OptionOpt,
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


def _read_instances(inline: str | None, file: Path | None) -> dict[str, Any]:
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
    name: str | None = typer.Argument(None, help="Deployment name.", show_default=False),
    provider: str | None = ProviderOpt,
    config: Path | None = ConfigOpt,
    option: list[str] | None = OptionOpt,
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
    provider: str | None = ProviderOpt,
    config: Path | None = ConfigOpt,
    option: list[str] | None = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """List the deployments cloudml made on a provider."""

    def body() -> Result:
        from rich.markup import escape

        resolved = _resolve(provider, config, option)
        deployments = _deployer(resolved, progress=False).list()
        rows = [f"{escape(d.name):<32} {d.status.value:<10} v{d.model_version or '-':<4} {escape(d.endpoint_url or '-')}" for d in deployments]
        return Result(deployments, "\n".join(rows) if rows else f"no deployments on {resolved.provider}")

    _run(output, body)


@app.command()
def logs(
    name: str | None = typer.Argument(None, help="Deployment name.", show_default=False),
    tail: int = typer.Option(100, "--tail", help="How many of the last lines to show."),
    follow: bool = typer.Option(False, "--follow", "-F", help="Keep printing new lines."),
    provider: str | None = ProviderOpt,
    config: Path | None = ConfigOpt,
    option: list[str] | None = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """Print the deployment's serving log, without TensorFlow's start-up noise (with --output json:
    one {"deployment", "line"} object per line)."""

    def body() -> int:
        import json

        from cloudml.tfnoise import without_noise

        as_json = output.lower() == "json"
        deployer, target = _target(name, provider, config, option)
        for line in without_noise(deployer.logs(target, tail=tail, follow=follow)):
            sys.stdout.write((json.dumps({"deployment": target, "line": line}) if as_json else line) + "\n")
            sys.stdout.flush()
        return 0

    _run(output, body)


@app.command()
def delete(
    name: str | None = typer.Argument(None, help="Deployment name.", show_default=False),
    provider: str | None = ProviderOpt,
    config: Path | None = ConfigOpt,
    purge: bool = typer.Option(False, "--purge",
        help="Also delete the stored model artifacts (S3 objects, GCS objects, Azure blobs); kept by default for a redeploy."),
    option: list[str] | None = OptionOpt,
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
    model: Path = typer.Argument(..., help=".keras, .h5, .pt2, .pt, .onnx file or SavedModel folder."),
    out: Path = typer.Option(Path("build/package"), "--out", help="Folder to write the package to."),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
    sample: Path | None = typer.Option(None, "--sample", help=SAMPLE_HELP, show_default=False),
    name: str | None = typer.Option(None, "--name", "-n", help="Model name (default: from the file name).", show_default=False),
    model_version: int | None = typer.Option(None, "--model-version", show_default=False),
    container: bool = typer.Option(False, "--container", hidden=True),
    output: str = OutputOpt,
) -> None:
    """Package MODEL: versioned model (ONNX when it verifies) + manifest, and model.tar.gz.

    The serving image is not per model: `cloudml image build MODEL --push HOST/REPO` builds and
    pushes the runtime image MODEL is served with."""

    def body() -> Result:
        from cloudml.cli.output import SpinnerProgress
        from cloudml.errors import UsageError
        from cloudml.packaging import inspect_source
        from cloudml.preflight.prepare import prepare_model

        if container:
            raise UsageError("--container is gone: cloudml no longer writes a Dockerfile, it builds the serving image itself (no Docker needed)",
                             hint=f"`cloudml image build {model} --push HOST/REPO` builds and pushes the runtime image this model is served with "
                                  "(or --provider aws|gcp|azure for the repository that cloud's deploys use)")
        choice = _runtime_choice(runtime)
        # In a child process, as a deploy does: TensorFlow's and the converters' native log lines
        # are shown only when packaging fails.
        with SpinnerProgress().step(f"packaging {model}"):
            packaged = prepare_model(inspect_source(model), out, name=name, version=model_version, probe=False, runtime=choice, sample=sample)
        result: dict[str, Any] = {
            "folder": str(packaged.folder),
            "archive": str(packaged.archive),
            "manifest": packaged.manifest.model_dump(mode="json"),
        }
        text = "\n".join([f"model folder: {result['folder']}", f"model.tar.gz: {result['archive']}",
                          f"hash: {packaged.manifest.content_hash}", *describe_manifest(packaged.manifest)])
        return Result(result, text)

    _run(output, body)


@app.command()
def serve(
    model: Path = typer.Argument(..., help="Packaged model folder, model.tar.gz, .keras, .h5, .pt2, .pt, .onnx or SavedModel folder."),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
    sample: Path | None = typer.Option(None, "--sample", help=SAMPLE_HELP, show_default=False),
    host: str = typer.Option("127.0.0.1", "--host", envvar="CLOUDML_HOST", help="Address to bind; 0.0.0.0 to accept remote clients."),
    port: int = typer.Option(8080, "--port", envvar="CLOUDML_PORT"),
    name: str | None = typer.Option(None, "--name", "-n", help="Model name in TF Serving routes (default: the manifest's).", show_default=False),
    model_version: int | None = typer.Option(None, "--model-version", show_default=False),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", envvar="CLOUDML_MAX_BODY_BYTES", help="Larger requests get 413."),
    batching: bool | None = typer.Option(None, "--batching/--no-batching",
        help="Merge concurrent requests into one model call (default on; env CLOUDML_BATCHING).", show_default=False),
    max_batch_size: int | None = typer.Option(None, "--max-batch-size",
        help="Most instances per model call (default 64; env CLOUDML_MAX_BATCH_SIZE).", show_default=False),
    max_batch_wait_ms: float | None = typer.Option(None, "--max-batch-wait-ms",
        help="How long a lone request may wait for company (default 0; env CLOUDML_MAX_BATCH_WAIT_MS).", show_default=False),
    max_queue_size: int | None = typer.Option(None, "--max-queue-size", min=1,
        help="Requests that may wait for the model; more get 503 with Retry-After (default 512; env CLOUDML_MAX_QUEUE_SIZE).", show_default=False),
    request_deadline_ms: float | None = typer.Option(None, "--request-deadline-ms", min=1,
        help="A request not started this long after it arrived gets 503 without running (default 30000; env CLOUDML_REQUEST_DEADLINE_MS).", show_default=False),
    workers: int | None = typer.Option(None, "--workers", min=1,
        help="Serving processes (default: 1 per 4 cores, at most 8; env CLOUDML_WORKERS).", show_default=False),
    log_level: str = typer.Option("info", "--log-level"),
    package_dir: Path | None = typer.Option(None, "--package-dir", hidden=True),
    snapshot: Path | None = typer.Option(None, "--snapshot", hidden=True),
    digest: str | None = typer.Option(None, "--digest", hidden=True),
    reuse_port: bool = typer.Option(False, "--reuse-port", hidden=True),
    unix_socket: Path | None = typer.Option(None, "--unix-socket", hidden=True),
    error_file: Path | None = typer.Option(None, "--error-file", hidden=True),
    output: str = OutputOpt,
) -> None:
    """Serve a model over HTTP with the SageMaker, Vertex AI, Azure ML and TF Serving contracts.

    Logs go to stderr; with --output json a start-up failure is also one JSON error on stdout."""

    def body() -> int:
        import contextlib
        import tempfile

        from cloudml.errors import CloudMLError
        from cloudml.serving.batching import BatchingConfig
        from cloudml.serving.handover import tie_to_parent
        from cloudml.serving.server import configure_logging, report_startup_error, serving_workers
        from cloudml.serving.server import serve as run_server

        def package_to_serve(cleanup: contextlib.ExitStack) -> Path:
            """The model itself when it is a package folder, else the model packaged into
            --package-dir (or a temporary folder that lives as long as the server), in a child
            process: a server that ONNX Runtime serves never loads TensorFlow or a converter."""
            import logging

            from cloudml.packaging import inspect_source
            from cloudml.packaging.snapshot import copy_of
            from cloudml.preflight.prepare import prepare_model

            choice = _runtime_choice(runtime)
            source = copy_of(model, snapshot) if snapshot else inspect_source(model)
            if source.format == "package":
                return source.path
            target = package_dir or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="cloudml-serve-")))
            logging.getLogger("cloudml.serving").info("packaging %s into %s", model, target)
            # A local deploy hands over the copy of the model it hashed (--snapshot, --digest): packaged without reading the model again.
            packaged = prepare_model(source, target, name=name, version=model_version, probe=False, runtime=choice, sample=sample, archive=False,
                                     digest=digest, snapshot=snapshot)
            logging.getLogger("cloudml.serving").info("%s", "; ".join(describe_manifest(packaged.manifest)))
            return packaged.folder

        configure_logging(log_level)
        # First: a local deploy killed while this server packages and starts must not leave it running.
        tie_to_parent()
        # Before packaging, which starts TensorFlow: it reads its thread settings only then.
        count = serving_workers(workers)
        as_json = output.lower() == "json"
        with contextlib.ExitStack() as cleanup:
            # The server reports a start-up failure in its error file; for scripts it becomes the JSON error.
            report = error_file or (Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="cloudml-serve-error-"))) / "error.json"
                                    if as_json else None)
            try:
                config = BatchingConfig.from_env(enabled=batching, max_batch_size=max_batch_size, max_wait_ms=max_batch_wait_ms,
                                                 max_queue_size=max_queue_size, deadline_ms=request_deadline_ms)
                folder = package_to_serve(cleanup)
            except CloudMLError as exc:
                code = report_startup_error(exc, report)
            else:
                code = run_server(
                    folder, host=host, port=port, max_body_bytes=max_body_bytes, batching=config, workers=count, reuse_port=reuse_port,
                    unix_socket_path=unix_socket, error_file=report, log_level=log_level,
                )
            if code and as_json and report is not None:
                raise _reported(report, code)
        return code

    _run(output, body)


def _reported(error_file: Path, code: int):
    import json

    from cloudml.errors import ReportedError

    try:
        info = json.loads(error_file.read_text())
    except (OSError, ValueError):
        info = {"error": "CloudMLError", "message": f"the server stopped with exit code {code}", "hint": "its log on stderr says why"}
    return ReportedError({**info, "exit_code": code})


@app.command()
def providers(
    name: str | None = typer.Argument(None, help="A provider: list its options (type, default, environment variable).", show_default=False),
    output: str = OutputOpt,
) -> None:
    """List providers, whether each is ready, and what to install when it is not; with NAME, its options."""

    def body() -> Result:
        from rich.markup import escape

        from cloudml.providers.registry import entries

        if name is not None:
            return _provider_options(name)
        rows = []
        for entry in entries().values():
            state = entry.state()
            rows.append({"name": entry.name, "state": state, "source": entry.source, "description": entry.description,
                         "install": entry.install_hint() if state == "missing-extra" else None})
        text = "\n".join(escape(f"{r['name']:<8} {r['state']:<14} {r['description']}" + (f"  ({r['install']})" if r["install"] else "")) for r in rows)
        return Result(rows, text + "\n\n`cloudml providers NAME` lists a provider's options.")

    _run(output, body)


def _provider_options(name: str) -> Result:
    import json

    from rich.markup import escape

    from cloudml.providers.options import describe_options, env_prefix
    from cloudml.providers.registry import canonical_name, entries, load_provider

    name = canonical_name(name)
    entry = entries()[name]
    options = describe_options(load_provider(name).Options, name)
    defaults = {row["name"]: "(required)" if row["required"] else ("-" if row["default"] is None else json.dumps(row["default"], default=str))
                for row in options}
    table = [("OPTION", "TYPE", "DEFAULT", "ENVIRONMENT VARIABLE")] + [(row["name"], row["type"], defaults[row["name"]], row["env"]) for row in options]
    widths = [max(len(cells[i]) for cells in table) for i in range(3)]
    lines = [f"{name}: {entry.description}" if entry.description else name, ""]
    rows: list[dict[str, Any] | None] = [None, *options]  # None: the header line
    for cells, row in zip(table, rows, strict=True):
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths + [0], strict=True)).rstrip())
        if row is not None and (row["description"] or row.get("syntax")):
            lines.append("      " + " ".join(part for part in (row["description"], f"(as text: {row['syntax']})" if row.get("syntax") else "") if part))
    lines += ["", f"Give them as -o KEY=VALUE, in the `{name}:` section of cloudml.yaml, or as the {env_prefix(name)}* variables above "
                  "(priority: file < environment < flags)."]
    text = escape("\n".join(lines))
    return Result({"name": name, "description": entry.description, "options": options}, text)


emulator_app = typer.Typer(
    cls=CloudMLGroup,
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
    ready_file: Path | None = typer.Option(None, "--ready-file", hidden=True),
    output: str = OutputOpt,
) -> None:
    """Run an AWS-compatible endpoint (S3, IAM, STS, CloudWatch Logs, Auto Scaling, SageMaker
    hosting with real predictions) until Ctrl-C. Point clients at it with the printed variables."""

    def body(ready: Path | None) -> int:
        from cloudml.emulators.foreground import require_modules, serve_until_stopped

        require_modules({"moto": "moto[server]", "boto3": "boto3"}, extra="aws-emulator", title="AWS")
        from cloudml.emulators.aws.server import EmulatorServer, client_env

        server = EmulatorServer(host=host, port=port, provisioning_delay=provisioning_delay, health_timeout=health_timeout)

        def announce():
            if init:
                server.init_resources(region=region)
            registry = server.ecr.registry.host if server.ecr.registry.running else None
            return ([f"AWS emulator listening on {server.url}, its ECR registry on {registry or '(none)'} (Ctrl-C to stop). Use it with:"],
                    client_env(server.url, region=region), {"registry": registry})

        return serve_until_stopped(server, address=f"{host}:{port}", ready_file=ready, announce=announce)

    _foreground(output, ready_file, body)


@emulator_app.command("gcp")
def emulator_gcp(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8085, "--port", help="Port of the Vertex AI (and Cloud Logging) API; 0 picks a free one."),
    storage_port: int = typer.Option(0, "--storage-port", help="Port of the GCS emulator; 0 picks a free one."),
    project: str = typer.Option("cloudml-emulator", "--project"),
    location: str = typer.Option("us-central1", "--location"),
    provisioning_delay: float = typer.Option(1.0, "--provisioning-delay", help="Seconds a long-running operation takes before its work starts."),
    health_timeout: float = typer.Option(180.0, "--health-timeout", help="Seconds a model server gets to answer its health route before the deployment fails."),
    ready_file: Path | None = typer.Option(None, "--ready-file", hidden=True),
    output: str = OutputOpt,
) -> None:
    """Run an offline Vertex AI (REST API with real predictions, Cloud Logging entries:list) and
    GCS until Ctrl-C. Point clients at it with the printed variables."""

    def body(ready: Path | None) -> int:
        from cloudml.emulators.foreground import require_modules, serve_until_stopped

        require_modules({"gcp_storage_emulator": "gcp-storage-emulator", "google.cloud.aiplatform": "google-cloud-aiplatform",
                         "google.cloud.storage": "google-cloud-storage"}, extra="gcp-emulator", title="GCP")
        from cloudml.emulators.gcp.server import EmulatorServer, client_env

        server = EmulatorServer(host=host, port=port, storage_port=storage_port, provisioning_delay=provisioning_delay, health_timeout=health_timeout)

        def announce():
            banner = (f"GCP emulator: Vertex AI and Artifact Registry on {server.url}, GCS on {server.storage_url}, "
                      f"the docker registry on {server.registry_host} (Ctrl-C to stop). Use it with:")
            env = client_env(server.url, server.storage_url, project=project, location=location, registry_host=server.registry_host)
            return [banner], env, {"storage_url": server.storage_url, "key_file": str(server.key_file)}

        return serve_until_stopped(server, address=f"{host}:{port}", ready_file=ready, announce=announce)

    _foreground(output, ready_file, body)


@emulator_app.command("azure")
def emulator_azure(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", help="Port of the Azure Resource Manager / Azure ML endpoint (https; 0 picks a free one)."),
    provisioning_delay: float = typer.Option(1.0, "--provisioning-delay", help="Seconds a deployment stays Creating before its container starts."),
    health_timeout: float = typer.Option(180.0, "--health-timeout", help="Seconds a container gets to answer its readiness route before the deployment fails."),
    ready_file: Path | None = typer.Option(None, "--ready-file", hidden=True),
    output: str = OutputOpt,
) -> None:
    """Run an Azure ML workspace (ARM and Azure ML REST, online endpoints serving real
    predictions, Azurite blob storage) until Ctrl-C. Point clients at it with the printed variables."""
    from cloudml.emulators.azure.process import run_foreground

    _foreground(output, ready_file, lambda ready: run_foreground(host=host, port=port, provisioning_delay=provisioning_delay,
                                                                 health_timeout=health_timeout, ready_file=ready))


def _foreground(output: str, ready_file: Path | None, run) -> None:
    """Run an emulator until stopped: `run(ready_file)`. People read its banner on stdout; with
    --output json the banner goes to stderr, and stdout gets the ready file's one object
    ({"url", "env", ...}, what EmulatorProcess reads) once it listens."""
    if output.lower() != "json":
        _run(output, lambda: run(ready_file))
        return
    import contextlib
    import tempfile
    import threading

    scripts = sys.stdout

    def body() -> int:
        with tempfile.TemporaryDirectory(prefix="cloudml-emulator-") as scratch:
            ready = ready_file or Path(scratch) / "ready.json"
            stopped = threading.Event()
            relay = threading.Thread(target=_relay_ready, args=(ready, stopped, scripts), daemon=True)
            relay.start()
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return run(ready)
            finally:
                stopped.set()
                relay.join()

    _run(output, body)


def _relay_ready(ready: Path, stopped, out) -> None:
    import json

    while True:
        try:
            info = json.loads(ready.read_text())  # a half-written file does not parse: try again
        except (OSError, ValueError):
            if stopped.is_set():
                return
            stopped.wait(0.1)
            continue
        out.write(json.dumps(info) + "\n")
        out.flush()
        return


image_app = typer.Typer(
    cls=CloudMLGroup,
    help="The serving runtime images (one per backend and version, not per model): build and push them without Docker, list them.",
    no_args_is_help=True,
)
app.add_typer(image_app, name="image")
PushOpt = typer.Option(None, "--push", metavar="HOST/REPO", help="The repository to push to (no tag: the tag names the contents).", show_default=False)
ImageProviderOpt = typer.Option(None, "--provider", "-p", show_default=False,
    help="aws, gcp or azure: the repository that provider's deploys (-o build_image=true) use, with its login; instead of --push.")


def _image_deployer(provider: str | None, config: Path | None, option: list[str] | None, extra: list[str], progress: Any = None) -> Any:
    """The cloud deployer whose registry --provider names, its options from the usual layers (plus `extra` -o flags)."""
    from cloudml.cli.images import cloud_deployer

    if provider is None:
        return None
    resolved = _resolve(provider, config, [*(option or []), *extra])
    return cloud_deployer(resolved.deployer(progress=progress), resolved.provider)


@image_app.command("build")
def image_build(
    model: Path | None = typer.Argument(None, metavar="[MODEL]", show_default=False,
                                        help="The model whose runtime image to build (packaged as deploy would, in a temporary folder)."),
    backend: str | None = typer.Option(None, "--backend", help="onnx or tensorflow: build that runtime's image, without a model (CI pre-builds).",
                                       show_default=False),
    backend_version: str | None = typer.Option(None, "--backend-version",
        help="With --backend: the ONNX Runtime or TensorFlow version (default: the one installed here).", show_default=False),
    runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP, show_default=False),
    sample: Path | None = typer.Option(None, "--sample", help=SAMPLE_HELP, show_default=False),
    push: str | None = PushOpt,
    provider: str | None = ImageProviderOpt,
    config: Path | None = ConfigOpt,
    option: list[str] | None = OptionOpt,
    base_image: str | None = typer.Option(None, "--base-image", help="The base image (default python:3.11-slim; with --provider: the option base_image).",
                                          show_default=False),
    wheelhouse: Path | None = typer.Option(None, "--wheelhouse",
        help="A folder of linux/amd64 wheels to install from, offline (with --provider: the option wheelhouse).", show_default=False),
    plain_http: bool | None = typer.Option(None, "--plain-http/--no-plain-http",
        help="With --push: HTTP instead of HTTPS, for the base's registry too (default: plain HTTP for loopback addresses only).", show_default=False),
    output: str = OutputOpt,
) -> None:
    """Build the runtime image MODEL is served with and push it (nothing is built when the registry has it).

    Logins for --push: CLOUDML_REGISTRY_USERNAME/CLOUDML_REGISTRY_PASSWORD, else the auth files of
    podman/docker login ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json)."""

    def body() -> Result:
        from rich.markup import escape

        from cloudml.cli import images
        from cloudml.cli.output import SpinnerProgress
        from cloudml.images.runtime import DEFAULT_BASE

        repo = images.check_target(push, provider, plain_http=plain_http, flag="--push", command="build")
        images.check_source(model, backend, backend_version, runtime, sample)
        choice = _runtime_choice(runtime)
        extra = [f"base_image={base_image}"] * (base_image is not None) + [f"wheelhouse={wheelhouse}"] * (wheelhouse is not None)
        progress = SpinnerProgress()
        deployer = _image_deployer(provider, config, option, extra, progress)
        data, text = images.build(model=model, backend=backend, backend_version=backend_version, runtime=choice, sample=sample, repo=repo,
                                  deployer=deployer, base_image=base_image or DEFAULT_BASE, wheelhouse=wheelhouse, plain_http=plain_http,
                                  progress=progress)
        return Result({**data, "provider": deployer.provider if deployer else None}, escape(text))

    _run(output, body)


@image_app.command("list")
def image_list(
    repository: str | None = typer.Argument(None, metavar="[HOST/REPO]", help="The repository to list (no tag).", show_default=False),
    provider: str | None = ImageProviderOpt,
    config: Path | None = ConfigOpt,
    option: list[str] | None = OptionOpt,
    output: str = OutputOpt,
) -> None:
    """List the cloudml runtime images in a repository: tag, digest, backend and version, cloudml version, size."""

    def body() -> Result:
        from rich.markup import escape

        from cloudml.cli import images

        repo = images.check_target(repository, provider, plain_http=None, flag="REPO", command="list")
        deployer = _image_deployer(provider, config, option, [])
        data, text = images.listing(repo=repo, deployer=deployer)
        return Result({**data, "provider": deployer.provider if deployer else None}, escape(text))

    _run(output, body)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()
