"""Reading, changing and deleting Vertex AI endpoints and models of one project and region, and
waiting out their long-running operations: the calls the gcp deployer's hooks are made of."""

from __future__ import annotations

import time

from cloudml.errors import DeployFailed
from cloudml.progress import Progress
from cloudml.providers.common import WaitTimedOut
from cloudml.providers.gcp.options import GcpOptions
from cloudml.providers.gcp.session import GcpSession, gcp_errors

RESUME_HINT = "Vertex AI keeps working on it: run the same deploy again to resume waiting"


def short(resource: str) -> str:
    """The id at the end of a resource name (projects/P/locations/L/endpoints/ID -> ID)."""
    return resource.rsplit("/", 1)[-1]


class VertexResources:
    def __init__(self, gcp: GcpSession, options: GcpOptions, progress: Progress):
        self.gcp, self.options, self.progress = gcp, options, progress

    def endpoint_name(self, endpoint_id: str) -> str:
        return f"{self.gcp.parent}/endpoints/{endpoint_id}"

    def model_name(self, model_id: str) -> str:
        return f"{self.gcp.parent}/models/{model_id}"

    # --- operations -----------------------------------------------------------------------
    def get_operation(self, name: str):
        from google.api_core import exceptions as api
        from google.longrunning import operations_pb2

        with gcp_errors(f"reading operation {name}"):
            try:
                return self.gcp.endpoints.get_operation(operations_pb2.GetOperationRequest(name=name))
            except api.NotFound:
                return None

    def wait_operation(self, name: str, goal: str, *, fail: str | None = None):
        """Poll `operations get` until done; with `fail`, an operation error raises DeployFailed.
        Past wait_timeout, raises WaitTimedOut and leaves the operation running."""
        deadline = time.monotonic() + self.options.wait_timeout
        started = time.monotonic()
        interval = min(self.options.poll_interval, 1.0)  # quick first polls: most operations are short
        with self.progress.step(f"waiting {goal}") as step:
            while True:
                operation = self.get_operation(name)
                if operation is None:
                    raise DeployFailed(f"operation {name} disappeared while waiting {goal}")
                if operation.done:
                    if fail and operation.HasField("error"):
                        raise DeployFailed(f"Vertex AI failed {fail}: {operation.error.message}")
                    return operation
                step.update(f"waiting {goal} ({time.monotonic() - started:.0f}s)")
                if time.monotonic() > deadline:
                    endpoint = name.split("/endpoints/")[1].split("/")[0] if "/endpoints/" in name else None
                    raise WaitTimedOut(
                        f"still waiting {goal} after {self.options.wait_timeout:.0f}s (operation {name})",
                        hint=RESUME_HINT + (f", or watch `cloudml status {endpoint} --provider gcp`" if endpoint else ""),
                    )
                time.sleep(interval)
                interval = min(interval * 2, self.options.poll_interval)

    # --- endpoints ------------------------------------------------------------------------
    def get_endpoint(self, resource: str, *, missing_ok: bool = False):
        from google.api_core import exceptions as api

        with gcp_errors(f"reading endpoint {short(resource)}"):
            try:
                return self.gcp.endpoints.get_endpoint(name=resource)
            except api.NotFound:
                if missing_ok:
                    return None
                raise DeployFailed(f"endpoint {resource} disappeared") from None

    def update_endpoint(self, name: str, *, labels: dict[str, str] | None = None, traffic_split: dict[str, int] | None = None) -> None:
        from google.cloud import aiplatform_v1
        from google.protobuf import field_mask_pb2

        endpoint = aiplatform_v1.Endpoint(name=name)
        paths = []
        if labels is not None:
            endpoint.labels = labels
            paths.append("labels")
        if traffic_split is not None:
            endpoint.traffic_split = traffic_split
            paths.append("traffic_split")
        with gcp_errors(f"updating endpoint {short(name)}"):
            self.gcp.endpoints.update_endpoint(endpoint=endpoint, update_mask=field_mask_pb2.FieldMask(paths=paths))

    def undeploy(self, endpoint_name: str, deployed_id: str, *, traffic_split: dict[str, int] | None = None) -> None:
        from google.api_core import exceptions as api

        with gcp_errors(f"undeploying {deployed_id} from {short(endpoint_name)}"):
            try:
                operation = self.gcp.endpoints.undeploy_model(endpoint=endpoint_name, deployed_model_id=deployed_id, traffic_split=traffic_split or {})
            except api.NotFound:
                return
        self.wait_operation(operation.operation.name, f"for {deployed_id} to be undeployed", fail=f"undeploying {deployed_id}")

    def undeploy_all(self, endpoint) -> None:
        """Least-used first; a model with traffic hands it to the one undeployed last."""
        split = dict(endpoint.traffic_split)
        order = sorted(endpoint.deployed_models, key=lambda dm: split.get(dm.id, 0))
        for index, deployed in enumerate(order):
            rest = order[index + 1:]
            handover = {rest[-1].id: 100} if rest and split.get(deployed.id, 0) > 0 else None
            self.undeploy(endpoint.name, deployed.id, traffic_split=handover)
            if handover:
                split = handover

    def deployments_under_way(self, endpoint, model_name: str) -> set[str]:
        """Ids of the Model's deployments onto this endpoint that have started but are not on it
        yet: Vertex adds the Model's reference when a deployModel starts, the endpoint's
        DeployedModel when it is done (a failed one drops the reference)."""
        model = self.get_model(model_name)
        on_endpoint = {dm.id for dm in endpoint.deployed_models}
        return {ref.deployed_model_id for ref in (model.deployed_models if model is not None else [])
                if ref.endpoint == endpoint.name and ref.deployed_model_id not in on_endpoint}

    def wait_deployments_under_way(self, endpoint, model_name: str):
        """Poll until one of those deployments is on the endpoint or all have failed; returns the endpoint."""
        pending = self.deployments_under_way(endpoint, model_name)
        deadline = time.monotonic() + self.options.wait_timeout
        while pending:
            time.sleep(min(self.options.poll_interval, 2.0))
            endpoint = self.get_endpoint(endpoint.name)
            if pending & {dm.id for dm in endpoint.deployed_models}:
                break
            pending &= self.deployments_under_way(endpoint, model_name)
            if pending and time.monotonic() > deadline:
                raise WaitTimedOut(f"model {short(model_name)} is still deploying on endpoint {short(endpoint.name)} after {self.options.wait_timeout:.0f}s",
                                   hint=f"{RESUME_HINT}, or watch `cloudml status {short(endpoint.name)} --provider gcp`")
        return endpoint

    def delete_endpoint(self, resource: str) -> None:
        """Delete the Endpoint resource itself (what serves on it must be undeployed first)."""
        from google.api_core import exceptions as api

        with gcp_errors(f"deleting endpoint {short(resource)}"):
            try:
                operation = self.gcp.endpoints.delete_endpoint(name=resource)
            except api.NotFound:
                return
        self.wait_operation(operation.operation.name, f"for endpoint {short(resource)} to be deleted", fail=f"deleting endpoint {resource}")

    # --- models ---------------------------------------------------------------------------
    def get_model(self, name: str):
        from google.api_core import exceptions as api

        with gcp_errors(f"reading model {short(name)}"):
            try:
                return self.gcp.models.get_model(name=name)
            except api.NotFound:
                return None

    def wait_for_model(self, name: str) -> None:
        """Wait until the model exists (another run's upload of it is under way)."""
        self._wait_until_made(lambda: self.get_model(name), f"model {name} is still uploading")

    def wait_for_endpoint(self, name: str):
        """Wait until the endpoint exists (an earlier run's create of it is under way); returns it."""
        return self._wait_until_made(lambda: self.get_endpoint(name, missing_ok=True), f"endpoint {short(name)} is still being created")

    def _wait_until_made(self, read, still: str):
        deadline = time.monotonic() + self.options.wait_timeout
        with self.progress.step(f"waiting: {still} (an earlier run started it)"):
            while (found := read()) is None:
                if time.monotonic() > deadline:
                    raise WaitTimedOut(f"{still} after {self.options.wait_timeout:.0f}s", hint=RESUME_HINT)
                time.sleep(min(self.options.poll_interval, 2.0))
        return found

    def delete_model(self, name: str) -> bool:
        """True when there was a model to delete."""
        from google.api_core import exceptions as api

        with gcp_errors(f"deleting model {short(name)}"):
            try:
                operation = self.gcp.models.delete_model(name=name)
            except api.NotFound:
                return False
        self.wait_operation(operation.operation.name, f"for model {short(name)} to be deleted", fail=f"deleting model {name}")
        return True
