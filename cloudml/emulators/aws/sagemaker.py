"""SageMaker hosting as the service behaves, on top of moto's resource store.

moto keeps Models, EndpointConfigs and Endpoints but accepts duplicate names, makes endpoints
InService at once, has no UpdateEndpoint and answers invoke_endpoint with canned data. Here:
names are unique, instance types and roles are checked, an endpoint is Creating until a real
serving container (hosting.py: the Model's image, or the host's runtime) started from its
model.tar.gz answers /ping (Failed otherwise, with the reason
and the container log in CloudWatch), UpdateEndpoint is blue/green with rollback, and
invoke_endpoint returns the model's real outputs.
"""

from __future__ import annotations

import json
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from cloudml.emulators.aws.hosting import HostedModel
from cloudml.emulators.aws.s3policy import as_list
from cloudml.emulators.container import ContainerHost

HEALTH_CHECK_FAILED = (
    "The primary container for production variant {variant} did not pass the ping health check "
    "({why}). Please check CloudWatch logs for this endpoint."
)


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class SageMakerHosting:
    def __init__(self, root: Path, *, account: str, provisioning_delay: float, health_timeout: float):
        self.root = root
        self.account = account
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout
        self.hosted: dict[tuple[str, str], HostedModel] = {}  # (region, endpoint) -> serving process
        self.containers: ContainerHost | None = None  # runs the Models' images that are in the emulator's ECR
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        # Containers log continuously; CloudWatch gets their new lines every half second.
        threading.Thread(target=self._ship_forever, daemon=True, name="log-shipper").start()

    def _ship_forever(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                hosted = list(self.hosted.values())
            for h in hosted:
                h.ship_logs()

    # --- moto's stores ------------------------------------------------------------------
    def backend(self, region: str):
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[self.account][region]

    def _arn(self, kind: str, name: str, region: str) -> str:
        return f"arn:aws:sagemaker:{region}:{self.account}:{kind}/{name.lower()}"

    # --- control plane ------------------------------------------------------------------
    def handle(self, action: str, body: dict, region: str) -> dict | None:
        """The response for actions emulated here; None to let moto answer."""
        handler = getattr(self, f"_{action}", None)
        return handler(body, region) if handler else None

    def _CreateModel(self, body: dict, region: str) -> None:
        name = body["ModelName"]
        if name in self.backend(region)._models:
            raise ServiceError("ValidationException", f'Cannot create already existing model "{self._arn("model", name, region)}".')
        self._check_role(body.get("ExecutionRoleArn", ""))
        return None

    def _ListModels(self, body: dict, region: str) -> dict:
        """ListModels with its filters and pages, which moto ignores (it lists every model)."""
        models = list(self.backend(region)._models.values())
        wanted = (body.get("NameContains") or "").lower()
        models = [m for m in models if wanted in m.model_name.lower()]
        if body.get("CreationTimeAfter") is not None:
            models = [m for m in models if m.creation_time.timestamp() > float(body["CreationTimeAfter"])]
        if body.get("CreationTimeBefore") is not None:
            models = [m for m in models if m.creation_time.timestamp() < float(body["CreationTimeBefore"])]
        by_name = body.get("SortBy") == "Name"
        models.sort(key=lambda m: m.model_name if by_name else m.creation_time, reverse=body.get("SortOrder", "Descending") == "Descending")
        start = int(body.get("NextToken") or 0)
        size = int(body.get("MaxResults") or 10)  # SageMaker's default page size
        page = models[start:start + size]
        answer: dict = {"Models": [{"ModelName": m.model_name, "ModelArn": m.arn, "CreationTime": m.creation_time.timestamp()} for m in page]}
        if start + size < len(models):
            answer["NextToken"] = str(start + size)
        return answer

    def _check_role(self, arn: str) -> None:
        from moto.iam.models import iam_backends

        refusal = ServiceError(
            "ValidationException",
            f"Could not assume role {arn}. Please ensure that the role exists and allows principal 'sagemaker.amazonaws.com' to assume the role.",
        )
        role = next((r for r in iam_backends[self.account]["global"].get_roles() if r.arn == arn), None)
        if role is None:
            raise refusal
        document = role.assume_role_policy_document
        trust = json.loads(document) if isinstance(document, str) else document
        for statement in as_list(trust.get("Statement", [])):
            services = as_list((statement.get("Principal") or {}).get("Service", []))
            if statement.get("Effect") == "Allow" and "sagemaker.amazonaws.com" in services and "sts:AssumeRole" in as_list(statement.get("Action", [])):
                return
        raise refusal

    def _CreateEndpointConfig(self, body: dict, region: str) -> None:
        name = body["EndpointConfigName"]
        if name in self.backend(region).endpoint_configs:
            raise ServiceError("ValidationException", f'Cannot create already existing endpoint configuration "{self._arn("endpoint-config", name, region)}".')
        known = _instance_types()
        for index, variant in enumerate(body.get("ProductionVariants", []), start=1):
            instance_type = variant.get("InstanceType")
            if instance_type is not None and instance_type not in known:
                raise ServiceError(
                    "ValidationException",
                    f"1 validation error detected: Value '{instance_type}' at 'productionVariants.{index}.member.instanceType' "
                    "failed to satisfy constraint: Member must satisfy enum value set",
                )
        return None

    def _CreateEndpoint(self, body: dict, region: str) -> dict:
        backend = self.backend(region)
        name, config = body["EndpointName"], body["EndpointConfigName"]
        if name in backend.endpoints:
            raise ServiceError("ValidationException", f'Cannot create already existing endpoint "{self._arn("endpoint", name, region)}".')
        if config not in backend.endpoint_configs:
            raise ServiceError("ValidationException", f"Could not find endpoint configuration \"{self._arn('endpoint-config', config, region)}\".")
        endpoint = backend.create_endpoint(endpoint_name=name, endpoint_config_name=config, tags=body.get("Tags", []))
        endpoint.endpoint_status = "Creating"
        self._provision(region, name, config, previous=None)
        return {"EndpointArn": endpoint.arn}

    def _UpdateEndpoint(self, body: dict, region: str) -> dict:
        backend = self.backend(region)
        name, config = body["EndpointName"], body["EndpointConfigName"]
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ServiceError("ValidationException", f"Could not find endpoint \"{self._arn('endpoint', name, region)}\".")
        if config not in backend.endpoint_configs:
            raise ServiceError("ValidationException", f"Could not find endpoint configuration \"{self._arn('endpoint-config', config, region)}\".")
        if endpoint.endpoint_status != "InService":
            raise ServiceError("ValidationException", f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
        self._check_autoscaled_instance_types(region, name, backend.endpoint_configs.get(endpoint.endpoint_config_name), backend.endpoint_configs[config])
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        endpoint.last_modified_time = _now()
        # SageMaker names the configuration an update moves to while it runs (DescribeEndpoint's
        # PendingDeploymentSummary); EndpointConfigName stays the serving one until it is done.
        endpoint.pending_deployment_summary = {"EndpointConfigName": config, "StartTime": endpoint.last_modified_time}
        self._provision(region, name, config, previous=endpoint.endpoint_config_name, retain=bool(body.get("RetainAllVariantProperties")))
        return {"EndpointArn": endpoint.arn}

    def _check_autoscaled_instance_types(self, region: str, name: str, current, new) -> None:
        """SageMaker refuses an update that changes the instance type of a variant registered
        with Application Auto Scaling (changing only the model is allowed)."""
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        if current is None:
            return
        targets = {t.resource_id for t in applicationautoscaling_backends[self.account][region].describe_scalable_targets("sagemaker", None, None)}
        before = {v["VariantName"]: v.get("InstanceType") for v in current.production_variants}
        for variant in new.production_variants:
            scaled = f"endpoint/{name}/variant/{variant['VariantName']}" in targets
            if scaled and variant["VariantName"] in before and before[variant["VariantName"]] != variant.get("InstanceType"):
                raise ServiceError(
                    "ValidationException",
                    f"The variant {variant['VariantName']} of endpoint {name} is registered with Application Auto Scaling; "
                    "deregister the scalable target before changing its instance type.",
                )

    def _DeleteEndpoint(self, body: dict, region: str) -> dict:
        backend = self.backend(region)
        name = body["EndpointName"]
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ServiceError("ValidationException", f"Could not find endpoint \"{self._arn('endpoint', name, region)}\".")
        if endpoint.endpoint_status == "Deleting":
            return {}
        endpoint.endpoint_status = "Deleting"
        endpoint.last_modified_time = _now()
        thread = threading.Thread(target=self._tear_down, args=(region, name, endpoint), daemon=True, name=f"delete-{name}")
        self._threads.append(thread)
        thread.start()
        return {}

    def _tear_down(self, region: str, name: str, endpoint) -> None:
        """Deleting takes a while too; the endpoint is listed as Deleting until its fleet is gone."""
        with self._lock:
            hosted = self.hosted.pop((region, name), None)
        if hosted is not None:
            hosted.stop()
        time.sleep(self.provisioning_delay)
        backend = self.backend(region)
        with self._lock:
            if backend.endpoints.get(name) is endpoint:
                backend.delete_endpoint(name)

    # --- the data plane -----------------------------------------------------------------
    def _provision(self, region: str, name: str, config: str, *, previous: str | None, retain: bool = False) -> None:
        thread = threading.Thread(target=self._bring_up, args=(region, name, config, previous, retain), daemon=True, name=f"provision-{name}")
        self._threads.append(thread)
        thread.start()

    def _bring_up(self, region: str, name: str, config_name: str, previous: str | None, retain: bool) -> None:
        backend = self.backend(region)
        time.sleep(self.provisioning_delay)  # instances take a while to come up
        config = backend.endpoint_configs.get(config_name)
        variant = (config.production_variants if config else [{}])[0]
        variant_name = variant.get("VariantName", "primary")
        hosted = None
        try:
            model = backend._models.get(variant.get("ModelName", ""))
            if model is None:
                raise ServiceError("ValidationException", f"Could not find model \"{self._arn('model', variant.get('ModelName', '?'), region)}\".")
            container = model.primary_container or {}
            archive = self._download(container.get("ModelDataUrl", ""))
            hosted = HostedModel(
                self.root, endpoint=name, config=config_name, variant=variant_name, archive=archive,
                env=dict(container.get("Environment") or {}), sink=lambda stream, lines: self._ship(region, name, stream, lines),
                image=container.get("Image") or "", containers=self.containers,
            ).start()
            why = hosted.wait_healthy(self.health_timeout)
            failure = None if why is None else HEALTH_CHECK_FAILED.format(variant=variant_name, why=why)
        except ServiceError as exc:
            failure = exc.message
        with self._lock:
            endpoint = backend.endpoints.get(name)
            gone = endpoint is None or endpoint.endpoint_status == "Deleting"
            if gone or failure is not None:
                if hosted is not None:
                    hosted.stop()
            if gone:
                return  # deleted while it was coming up
            endpoint.last_modified_time = _now()
            endpoint.pending_deployment_summary = None  # the change is over, whichever way it went
            if failure is not None:
                endpoint.failure_reason = failure
                # A failed update is rolled back: the previous fleet never stopped serving.
                endpoint.endpoint_status = "Failed" if previous is None else "InService"
                return
            old_variants = {v["VariantName"]: v for v in endpoint.production_variants}
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
            if retain:
                for v in endpoint.production_variants:
                    for key in ("CurrentInstanceCount", "DesiredInstanceCount", "CurrentWeight", "DesiredWeight"):
                        if key in old_variants.get(v["VariantName"], {}):
                            v[key] = old_variants[v["VariantName"]][key]
            endpoint.failure_reason = None
            endpoint.endpoint_status = "InService"
            old = self.hosted.get((region, name))
            assert hosted is not None  # no failure: it started and answered
            self.hosted[(region, name)] = hosted
        if old is not None:
            old.stop()

    def _download(self, url: str) -> bytes:
        from moto.s3.models import s3_backends

        bucket, _, key = url.removeprefix("s3://").partition("/")
        try:
            found = s3_backends[self.account]["global"].get_object(bucket, key)
            if found is None:
                raise KeyError(key)
            return found.value
        except Exception:  # noqa: BLE001 - any miss reads the same to SageMaker
            raise ServiceError(
                "ValidationException",
                f"Failed to download model data (bucket: {bucket}, key: {key}). Please ensure that there is an object "
                "located at the URL and that the role passed to CreateModel has permissions to download the model.",
            ) from None

    def _ship(self, region: str, endpoint: str, stream: str, lines: list[str]) -> None:
        from moto.logs.models import logs_backends

        logs = logs_backends[self.account][region]
        group = f"/aws/sagemaker/Endpoints/{endpoint}"
        with self._lock:
            if group not in logs.groups:
                logs.create_log_group(group, {})
            logs.ensure_log_stream(group, stream)
            now = int(time.time() * 1000)
            logs.put_log_events(group, stream, [{"timestamp": now, "message": line} for line in lines])

    def invoke(self, region: str, name: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        endpoint = self.backend(region).endpoints.get(name)
        with self._lock:
            hosted = self.hosted.get((region, name))
        if endpoint is None or hosted is None:
            raise ServiceError("ValidationError", f"Endpoint {name} of account {self.account} not found.")
        forward = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
        try:
            answer = hosted.request("POST", "/invocations", body, forward)
        except OSError as exc:
            raise ServiceError("ModelNotReadyException", f"Model for endpoint {name} is not ready: {exc}", status=429) from None
        finally:
            hosted.ship_logs()
        status = answer.status
        if status >= 400:
            kind = "client" if status < 500 else "server"
            text = answer.body.decode(errors="replace")
            error = {
                "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
                "Message": f'Received {kind} error ({status}) from {hosted.variant} with message "{text}". See CloudWatch logs for this endpoint.',
                "OriginalMessage": text,
                "OriginalStatusCode": status,
                "LogStreamArn": f"arn:aws:logs:{region}:{self.account}:log-group:/aws/sagemaker/Endpoints/{name}",
            }
            return 424, {"Content-Type": "application/json", "x-amzn-ErrorType": "ModelError"}, json.dumps(error).encode()
        return 200, {
            "Content-Type": answer.headers.get("content-type", "application/json"),
            "x-Amzn-Invoked-Production-Variant": hosted.variant,
        }, answer.body

    def describe_fleet(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"region": region, "endpoint": name, "endpoint_config": h.config, "port": h.port,
                 "pid": h.proc.pid if h.proc else None, "log_stream": h.stream}
                for (region, name), h in self.hosted.items()
            ]

    def stop_all(self) -> None:
        self._stopping.set()
        with self._lock:
            hosted, self.hosted = list(self.hosted.values()), {}
        for h in hosted:
            h.stop()


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def use_current_instance_types() -> None:
    """moto checks instance types against a list from an older API version (no ml.g5, say);
    check them against the list in botocore's current service model instead, as the API does."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpointConfig

    def validate_instance_type(self, instance_type: str) -> None:
        if instance_type not in _instance_types():
            raise ValidationError(message=f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: Member must satisfy enum value set")

    FakeEndpointConfig.validate_instance_type = validate_instance_type  # type: ignore[method-assign]


@lru_cache(maxsize=1)
def _instance_types() -> frozenset[str]:
    """What the API accepts, from botocore's service model (the emulator does not ask cloudml's provider)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("ProductionVariantInstanceType").enum)
