"""The deploy algorithm every cloud provider shares, written once over a few named hooks.

    check the request -> inspect and hash the model -> plan -> read the endpoint -> refuse one
    cloudml did not make -> settle (wait for this plan's unfinished change, refuse another's)
    -> unchanged? -> the image (from the model's metadata) -> package + preflight -> stage the
    artifact -> roll out -> retire the previous version -> clean up the work folder

The failure rules hold for every cloud because they live here, not in the hooks:
- whatever this run created is undone, newest first, when the run fails (an `UndoJournal` the
  hooks record into), so a failed deploy leaves the previous version serving and nothing orphaned;
- a `WaitTimedOut` keeps what it made: the cloud is still working and the next run resumes;
- a resource without cloudml's deployment tag is never updated or deleted, nor reported.

A cloud is a `CloudDeployer` subclass: its plan, how to read and describe its endpoint, and the
steps that talk to its API. The hooks see a typed `Rollout`; they never re-implement the sequence.
"""

from __future__ import annotations

import builtins
import contextlib
import shutil
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field

from cloudml.contract import RuntimeChoice
from cloudml.errors import ConfigError, DeploymentNotFound, ModelError
from cloudml.images.registry import RegistryTarget
from cloudml.progress import Progress
from cloudml.providers.base import Deployer, ProviderOptions, cloudml_home
from cloudml.providers.common import WaitTimedOut
from cloudml.results import Deployment, DeployResult, Prediction
from cloudml.spec import DeploymentSpec

if TYPE_CHECKING:
    from cloudml.contract import Manifest
    from cloudml.images.runtime import RuntimeImage
    from cloudml.packaging import PackagedModel
    from cloudml.packaging.snapshot import Snapshot

Action = Literal["created", "updated"]
LOG_TAIL_LINES = 40  # of the serving log, in the details of a failed deploy


def runtime_of(manifest: Manifest) -> tuple[str, str | None]:
    """The runtime image a package is served with: (backend, version); the version is None for
    ONNX Runtime (the one installed, which packaging verified the model with) and the TensorFlow
    that saved the model for TensorFlow."""
    backend = manifest.runtime.backend
    return backend, manifest.tensorflow_version if backend == "tensorflow" else None


class CloudOptions(ProviderOptions):
    """What every cloud provider accepts; each cloud's options add their own (and may change a default)."""

    image_uri: str | None = Field(default=None, description="Serving image to use instead of the default one for the model.")
    canary_percent: int | None = Field(default=None, ge=1, le=99,
        description="Update: move this share of traffic to the new version first, the rest after canary_wait_seconds; default all at once.")
    canary_wait_seconds: int = Field(default=300, ge=0, le=3600, description="How long a canary runs before the rest of the traffic moves.")
    wait_timeout: float = Field(default=3600.0, gt=0, description="Seconds to wait for the cloud; past it the deploy stops waiting and a later run resumes.")
    poll_interval: float = Field(default=15.0, gt=0, description="Seconds between status polls while waiting.")
    preflight: bool = Field(default=True,
        description="Load the packaged model locally and answer a probe request before uploading anything (--skip-preflight turns it off).")
    work_dir: str | None = Field(default=None, description="Where packages are built; default $CLOUDML_HOME/<provider>-packages.")
    build_image: bool | None = Field(default=None,
        description="Build and push the cloudml serving image for the model's runtime to this cloud's registry, without Docker, and serve with it: "
                    "by default whenever no prebuilt image of the cloud serves the model; true: always; false: never (such a model is refused).")
    base_image: str = Field(default="python:3.11-slim", description="Base of the built serving image (a mirror or a company base).")
    wheelhouse: Path | None = Field(default=None,
        description="A folder of linux/amd64 wheels the built image installs from, offline (no package index); default: the package index.")


def serving_choice(spec: DeploymentSpec, options: CloudOptions) -> Any:
    """What decides the serving image and how the model is packaged, beside the model itself: part
    of a plan's identity, so another --runtime or image option is an update, not "unchanged".
    With everything but image_uri at its default it is image_uri alone, the identity deployments
    made before these options had (so upgrading cloudml moves nothing)."""
    fields = CloudOptions.model_fields
    extra = {
        "runtime": spec.runtime if spec.runtime != "auto" else None,
        "build_image": options.build_image,
        "base_image": options.base_image if options.base_image != fields["base_image"].default else None,
    }
    extra = {key: value for key, value in extra.items() if value is not None}
    return [options.image_uri, extra] if extra else options.image_uri


class UndoJournal:
    """What a deploy created, each with the call that removes it, undone newest first on failure.

    Undoing is best effort: the error that made the run fail is the one the user must see, so a
    step that cannot be undone is reported and the rest are still tried."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def record(self, what: str, undo: Callable[[], object]) -> None:
        self._steps.append((what, undo))

    def undo(self) -> None:
        while self._steps:
            what, undo = self._steps.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - report and keep undoing the rest
                self._progress.note(f"could not remove {what} after the failure: {exc}")

    def __len__(self) -> int:
        return len(self._steps)


@dataclass(frozen=True)
class CloudPlan:
    """What a deploy asks for, resolved to the cloud's names. Each cloud extends it."""

    name: str
    model_hash: str  # "sha256:<hex>" of the model the user gave

    @property
    def hash_hex(self) -> str:
        return self.model_hash.split(":")[-1]


PlanT = TypeVar("PlanT", bound=CloudPlan)
EndpointT = TypeVar("EndpointT")


@dataclass
class Rollout(Generic[PlanT, EndpointT]):
    """One deploy past the unchanged check: what the roll-out hooks work with."""

    spec: DeploymentSpec
    plan: PlanT
    current: EndpointT | None  # the endpoint before this run (None: first deploy)
    packaged: PackagedModel
    image: str
    journal: UndoJournal
    artifact: str = ""  # where stage_artifact put the model (s3://..., gs://..., azureml://...)
    notes: dict[str, Any] = field(default_factory=dict)  # what one hook hands to a later one


class CloudDeployer(Deployer, Generic[PlanT, EndpointT]):
    """A cloud provider: the shared algorithm (`deploy`, `get`, `list`, `predict`, `logs`, `delete`) over its hooks."""

    Options: ClassVar[type[ProviderOptions]] = CloudOptions
    options: CloudOptions
    endpoint_kind: ClassVar[str]  # how the cloud calls what one deployment is: "SageMaker endpoint"
    ownership_mark: ClassVar[str]  # the tag or label naming the deployment: "cloudml:deployment"
    log_name: ClassVar[str]  # what the serving log is called in messages: "CloudWatch log"

    # --- deploy ---------------------------------------------------------------------------
    def _deploy(self, spec: DeploymentSpec) -> DeployResult:
        if self.options.image_uri and self.options.build_image:
            raise ConfigError("image_uri and build_image were both given: the one names the serving image, the other builds it",
                              hint="drop -o build_image=true to serve with image_uri, or drop image_uri to build the cloudml serving image")
        self.check_request(spec)
        from cloudml.packaging import inspect_source
        from cloudml.packaging.snapshot import snapshot_model

        source = inspect_source(spec.model)
        work_root = self._work_root(spec.name)
        try:
            with contextlib.ExitStack() as stack:
                # The one read of the model: its digest plans the deploy and the copy is what is packaged.
                with self.progress.step(f"hashing {source.display_name}"):
                    snapshot = stack.enter_context(snapshot_model(source, work_root))
                return self._deploy_snapshot(spec, snapshot)
        finally:
            # A deploy that ended, or was refused, leaves no empty folders behind (a package kept
            # for a re-run keeps them); a work_dir of the user's own is never removed.
            for folder in (work_root, work_root.parent) if not self.options.work_dir else (work_root,):
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def _deploy_snapshot(self, spec: DeploymentSpec, snapshot: Snapshot) -> DeployResult:
        source = snapshot.original
        plan = self.plan(spec, snapshot.digest)
        current = self.read_endpoint(spec.name)
        if current is not None:
            if self.owner(current) != spec.name:
                raise self.foreign_endpoint(spec.name)
            current = self.settle(current, plan)
        if current is not None and self.is_unchanged(current, plan):
            self.refresh_tags(current, spec, plan)
            self.finish_interrupted_cleanup(current, plan)
            return DeployResult(action="unchanged", deployment=self.get(spec.name))

        # The image is chosen from the model's metadata when it has any, so a model no image can
        # serve is refused at once, before seconds of packaging.
        runtime, image, building = self._serving_image(spec, snapshot, plan)
        work = self._work_root(spec.name) / plan.hash_hex[:16]
        packaged = self._package(snapshot, work, spec, runtime=runtime)
        if image is None and not building:  # the model's metadata did not say: the package does
            try:
                if packaged.manifest.runtime.backend != "tensorflow":
                    raise self._no_onnx_image(f"{source.path} was packaged to be served by ONNX Runtime")
                image = self.prebuilt_image(plan, packaged.manifest.tensorflow_version or "unknown")
            except ModelError as refusal:
                building = self._build_instead(refusal)
        if building:
            image = self._built_image(packaged, work)
        assert image is not None
        rollout: Rollout[PlanT, EndpointT] = Rollout(spec=spec, plan=plan, current=current, packaged=packaged, image=image,
                                                     journal=UndoJournal(self.progress))
        try:
            rollout.artifact = self.stage_artifact(rollout)
            action = self.roll_out(rollout)
        except WaitTimedOut:
            raise  # the cloud is still at it: keep what was made, the next run resumes
        except Exception:
            rollout.journal.undo()
            raise
        # From here on the new version serves: a failure is reported and the next run converges.
        self.retire_previous(rollout)
        shutil.rmtree(work, ignore_errors=True)  # kept only while a re-run could reuse it
        return DeployResult(action=action, deployment=self.get(spec.name))

    def foreign_endpoint(self, name: str, why: str = "already exists and was not created by cloudml") -> ConfigError:
        """The refusal to deploy onto an endpoint cloudml did not make."""
        return ConfigError(f"{self.endpoint_kind} {name!r} {why}", hint="cloudml never takes over endpoints it did not make: choose another --name")

    def _work_root(self, name: str) -> Path:
        """Where the deployment's packages are built, one folder per model digest (kept while a re-run could reuse it)."""
        root = Path(self.options.work_dir) if self.options.work_dir else cloudml_home() / f"{self.provider}-packages"
        return root / name

    def _serving_image(self, spec: DeploymentSpec, snapshot: Snapshot, plan: PlanT) -> tuple[RuntimeChoice, str | None, bool]:
        """(what to package the model for, the image that serves it, whether to build the cloudml
        serving image): image_uri wins; else a prebuilt image of the cloud when one serves the
        model; else the built image, unless build_image is false. The image is None when only the
        package can tell (a model whose metadata names no TensorFlow version)."""
        if self.options.image_uri:
            return spec.runtime, self.options.image_uri, False
        if self.options.build_image:
            return spec.runtime, None, True
        try:
            runtime, image = self._prebuilt(spec, snapshot, plan)
        except ModelError as refusal:
            return spec.runtime, None, self._build_instead(refusal)
        return runtime, image, False

    def _prebuilt(self, spec: DeploymentSpec, snapshot: Snapshot, plan: PlanT) -> tuple[RuntimeChoice, str | None]:
        """The cloud's prebuilt images run TensorFlow only: what only ONNX Runtime can serve, or
        a model newer than every image, is a ModelError."""
        from cloudml.packaging.metadata import tensorflow_version
        from cloudml.packaging.source import FRAMEWORKS

        source = snapshot.original

        framework = FRAMEWORKS.get(source.format)
        if framework not in (None, "tensorflow"):
            raise self._no_onnx_image(f"{source.path} is a {framework} model, which ONNX Runtime serves")
        if spec.runtime == "onnx":
            raise self._no_onnx_image("--runtime onnx was asked for")
        if framework is None:
            # A cloudml package or model.tar.gz: its manifest's TensorFlow version says nothing of
            # the backend it was packaged for (ONNX Runtime, which no prebuilt image has, or
            # TensorFlow); the package decides, after packaging (_deploy).
            return spec.runtime, None
        saved_by = tensorflow_version(snapshot.source)
        image = self.prebuilt_image(plan, saved_by) if saved_by else None
        if spec.runtime == "auto":
            self.progress.note(f"note: served by TensorFlow with {self.provider}'s prebuilt image {image or ''}".rstrip()
                               + " (-o build_image=true serves it with the cloudml image, ONNX Runtime when the model converts)")
        return "tensorflow", image

    def _build_instead(self, refusal: ModelError) -> bool:
        """True (build the cloudml serving image) where no prebuilt image serves the model, unless
        building was turned off, in which case the refusal stands."""
        if self.options.build_image is False:
            raise refusal
        self.progress.note(f"no prebuilt {self.provider} image serves this model ({refusal.message}): "
                           "building the cloudml serving image (-o image_uri=IMAGE serves with your own)")
        return True

    def _no_onnx_image(self, why: str) -> ModelError:
        return ModelError(f"{why}, and {self.provider} has no prebuilt image with ONNX Runtime",
                          hint="leave build_image unset (or true) to build the cloudml serving image and push it to this cloud's registry "
                               "(no Docker needed), or pass -o image_uri=IMAGE")

    def _built_image(self, packaged: PackagedModel, work: Path) -> str:
        """The cloudml serving image for the package's backend in this cloud's registry, built and
        pushed unless the registry has it (one image per runtime, not per model); pinned by digest."""
        backend, version = runtime_of(packaged.manifest)
        image = self.ensure_runtime_image(backend, version, work)
        pushed = f"built and pushed {image.bytes_uploaded / 1e6:.1f} MB" if image.built else "found, nothing pushed"
        self.progress.note(f"image {image.repository}:{image.tag}: {pushed}")
        return image.pinned

    def ensure_runtime_image(self, backend: str, version: str | None, work: Path) -> RuntimeImage:
        """The cloudml runtime image of `backend` at `version` (None: the default) in the repository
        this cloud's deploys use, with the options base_image and wheelhouse: found by its tag, or
        built and pushed (`cloudml image build --provider` pre-pushes what a deploy finds)."""
        from cloudml.images.registry import Reference
        from cloudml.images.runtime import runtime_image

        target = self.registry_target()
        base = self.options.base_image
        # A base kept in the same registry (a company base next to the runtime images) is pulled with the same login.
        base_credentials = target.credentials if Reference.parse(base).registry == target.host else None
        wheelhouse = self.options.wheelhouse
        if wheelhouse is not None and not Path(wheelhouse).is_dir():
            raise ConfigError(f"wheelhouse {wheelhouse} is not a folder", hint="give a folder of linux/amd64 wheels (pip download --platform ...)")
        work.mkdir(parents=True, exist_ok=True)
        with self.progress.step(f"image for {backend} in {target.host}/{target.repository}"):
            return runtime_image(backend, target_repository=f"{target.host}/{target.repository}", backend_version=version, base=base,
                                 base_credentials=base_credentials, target_credentials=target.credentials, plain_http=target.plain_http,
                                 find_links=[Path(wheelhouse)] if wheelhouse else (), no_index=wheelhouse is not None, work_dir=work,
                                 progress=self.progress)

    def _package(self, snapshot: Snapshot, work: Path, spec: DeploymentSpec, *, runtime: RuntimeChoice) -> PackagedModel:
        """Package (and probe) the snapshot: the very bytes that were hashed, not read again."""
        from cloudml.preflight.prepare import prepare_model

        source = snapshot.original
        checks = " and probing it locally (preflight)" if self.options.preflight else ""
        with self.progress.step(f"packaging {source.display_name}{checks}"):
            return prepare_model(source, work, name=spec.name, version=spec.model_version, probe=self.options.preflight, digest=snapshot.digest,
                                 runtime=runtime, sample=spec.sample, snapshot=snapshot.copy)

    # --- hooks: deciding --------------------------------------------------------------------
    def check_request(self, spec: DeploymentSpec) -> None:
        """Refuse what this cloud cannot do before any file is read or any call is made."""

    @abstractmethod
    def plan(self, spec: DeploymentSpec, model_hash: str) -> PlanT:
        """The cloud's names and settings for this spec (no cloud calls that change anything)."""

    @abstractmethod
    def read_endpoint(self, name: str) -> EndpointT | None:
        """The endpoint of that name as the cloud reports it, whoever made it; None when absent."""

    @abstractmethod
    def owner(self, endpoint: EndpointT) -> str | None:
        """The deployment named by the endpoint's ownership tag (None: not cloudml's)."""

    def settle(self, endpoint: EndpointT, plan: PlanT) -> EndpointT | None:
        """Wait for an unfinished change of this plan (an earlier run timed out), refuse one of
        another; may replace an endpoint that can serve nothing (then None: deploy afresh)."""
        return endpoint

    @abstractmethod
    def is_unchanged(self, endpoint: EndpointT, plan: PlanT) -> bool:
        """The endpoint serves exactly this plan, healthy: nothing to do."""

    def refresh_tags(self, endpoint: EndpointT, spec: DeploymentSpec, plan: PlanT) -> None:
        """An unchanged deploy still applies changed user tags."""

    def finish_interrupted_cleanup(self, endpoint: EndpointT, plan: PlanT) -> None:
        """An unchanged deploy still removes what an earlier run of this plan, stopped after the
        new version served but before retire_previous ended, left of the previous version."""

    # --- hooks: doing -----------------------------------------------------------------------
    @abstractmethod
    def prebuilt_image(self, plan: PlanT, tensorflow_version: str) -> str:
        """The serving image when none is configured, for a SavedModel written by that TensorFlow;
        a ModelError when no image can serve it."""

    def registry_target(self) -> RegistryTarget:
        """Where this cloud's serving images go (the repository made sure of) and the login that pushes there."""
        raise ConfigError(f"provider {self.provider!r} has no container registry for build_image", hint="give -o image_uri=IMAGE instead")

    @abstractmethod
    def stage_artifact(self, rollout: Rollout[PlanT, EndpointT]) -> str:
        """Upload the packaged model where the cloud reads it; returns its location."""

    @abstractmethod
    def roll_out(self, rollout: Rollout[PlanT, EndpointT]) -> Action:
        """Create or update the endpoint so that it serves the new version, recording every
        resource created into the journal; returns what was done."""

    def retire_previous(self, rollout: Rollout[PlanT, EndpointT]) -> None:
        """After the new version serves: remove what served before (its models, configs)."""

    # --- reading ----------------------------------------------------------------------------
    def owned_endpoint(self, name: str) -> EndpointT:
        """The deployment's endpoint; DeploymentNotFound when absent or not cloudml's."""
        endpoint = self.read_endpoint(name)
        if endpoint is None:
            raise DeploymentNotFound(f"no {self.endpoint_kind} named {name!r} in {self.location()}",
                                     hint=f"`cloudml list --provider {self.provider}` shows what cloudml deployed")
        if self.owner(endpoint) != name:
            raise DeploymentNotFound(
                f"{self.endpoint_kind} {name!r} was not created by cloudml (no {self.ownership_mark} tag)",
                hint="cloudml only manages what it created; pick another deployment name",
            )
        return endpoint

    def get(self, name: str) -> Deployment:
        return self.describe(self.owned_endpoint(name))

    @abstractmethod
    def describe(self, endpoint: EndpointT) -> Deployment:
        """The endpoint as a provider-neutral Deployment."""

    @abstractmethod
    def location(self) -> str:
        """Where this deployer looks (a region, a project/location, a workspace), for messages."""

    def list(self) -> builtins.list[Deployment]:
        """The endpoints whose ownership mark names themselves, with `listed_extras`, by name."""
        out = []
        for name, endpoint in self.list_endpoints():
            if self.owner(endpoint) == name and (read := self.read_listed(endpoint)) is not None:
                out.append(self.describe(read))
        out += self.listed_extras({deployment.name for deployment in out})
        return sorted(out, key=lambda d: d.name)

    @abstractmethod
    def list_endpoints(self) -> Iterable[tuple[str, EndpointT]]:
        """Every endpoint where this deployer looks, whoever made it, each with its name."""

    def read_listed(self, endpoint: EndpointT) -> EndpointT | None:
        """A listed endpoint of cloudml's as `describe` reads it (None: gone since it was listed)."""
        return endpoint

    def listed_extras(self, listed: set[str]) -> builtins.list[Deployment]:
        """Deployments `list` shows that have no endpoint (`listed`: those that have one)."""
        return []

    # --- serving ----------------------------------------------------------------------------
    # builtins.list: inside the class body `list` is the method above
    def predict(self, name: str, *, instances: builtins.list[Any], parameters: dict[str, Any] | None = None) -> Prediction:
        body: dict[str, Any] = {"instances": instances}
        if parameters:
            body["parameters"] = parameters
        connection = self.connect(name)
        started = time.perf_counter()
        predictions = self.invoke(name, body, connection)
        return Prediction(deployment=name, predictions=predictions, latency_ms=(time.perf_counter() - started) * 1000)

    def connect(self, name: str) -> Any:
        """What a prediction request needs beside its body (Azure: the scoring URI and key), read
        before the latency clock starts; None by default."""
        return None

    @abstractmethod
    def invoke(self, name: str, body: dict[str, Any], connection: Any) -> builtins.list[Any]:
        """Send one request body (`{"instances": ..., "parameters": ...}`) and return its
        predictions; the cloud's failures become cloudml's errors."""

    def logs(self, name: str, *, tail: int = 100, follow: bool = False) -> Iterator[str]:
        endpoint = self.owned_endpoint(name)
        if follow:
            return self.follow_logs(endpoint, tail)
        return iter(self.tail_logs(endpoint, tail))

    @abstractmethod
    def tail_logs(self, endpoint: EndpointT, lines: int) -> builtins.list[str]:
        """The last `lines` lines of what serves on the endpoint."""

    @abstractmethod
    def follow_logs(self, endpoint: EndpointT, lines: int) -> Iterator[str]:
        """The last `lines` lines, then each new one as it comes."""

    def log_details(self, read: Callable[[int], builtins.list[str]], *, empty: str) -> str:
        """The details of a failed deploy: the last LOG_TAIL_LINES lines `read(lines)` returns,
        `empty` when there are none; a log that cannot be read says so."""
        try:
            lines = read(LOG_TAIL_LINES)
        except Exception as exc:  # noqa: BLE001 - the failure matters more than its log
            return f"(could not read the {self.log_name}: {exc})"
        return "\n".join(lines) if lines else empty

    # --- delete -----------------------------------------------------------------------------
    def delete(self, name: str, *, purge: bool = False) -> bool:
        endpoint = self.read_endpoint(name)
        deleted = False
        if endpoint is not None:
            if self.owner(endpoint) != name:
                raise DeploymentNotFound(f"{self.endpoint_kind} {name!r} was not created by cloudml; not deleting it")
            with self.progress.step(f"deleting endpoint {name}"):
                self.delete_endpoint(endpoint)
            deleted = True
        deleted = self.delete_leftovers(name) or deleted
        if purge:
            deleted = self.purge_artifacts(name) or deleted
        return deleted

    @abstractmethod
    def delete_endpoint(self, endpoint: EndpointT) -> None:
        """Remove a cloudml endpoint and what serves on it, waiting until it is gone."""

    @abstractmethod
    def delete_leftovers(self, name: str) -> bool:
        """Remove the deployment's other tagged resources (models, configs); True when any went."""

    @abstractmethod
    def purge_artifacts(self, name: str) -> bool:
        """Remove the deployment's stored model artifacts; True when any went."""
