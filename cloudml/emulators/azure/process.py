"""`cloudml emulator azure` in the foreground, and `AzureEmulator`: the emulator in its own
process, for tests and scripts.

    with AzureEmulator() as azure:
        os.environ.update(azure.env)        # DefaultAzureCredential, requests and `cloudml -p azure` use it
        client = azure.ml_client()          # a plain MLClient against the emulated workspace
        azure.refuse_next("onlineEndpoints/deployments/write", code="QuotaExceeded")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloudml.emulators.process import EmulatorProcess


def run_foreground(*, host: str, port: int, provisioning_delay: float, health_timeout: float, ready_file: Path | None) -> int:
    from cloudml.emulators.foreground import require_modules, serve_until_stopped

    require_modules({"azure.storage.blob": "azure-storage-blob", "cryptography": "cryptography", "azure.ai.ml": "azure-ai-ml"},
                    extra="azure-emulator", title="Azure")
    from cloudml.emulators.azure.server import CLOUD_NAME, AzureEmulatorServer

    server = AzureEmulatorServer(host=host, port=port, provisioning_delay=provisioning_delay, health_timeout=health_timeout)

    def announce():
        lines = [
            f"Azure ML emulator (cloud {CLOUD_NAME}) listening on {server.url}, blob storage (Azurite) on {server.azurite.account_url}.",
            "Use it with (the https certificate is self-signed; REQUESTS_CA_BUNDLE trusts it):",
        ]
        return lines, server.client_env(), {"metadata": server.cloud_metadata()}

    return serve_until_stopped(server, address=f"{host}:{port}", ready_file=ready_file, announce=announce)


class AzureEmulator(EmulatorProcess):
    cloud = "azure"
    title = "Azure ML"

    def __init__(self, *, port: int = 0, provisioning_delay: float = 1.0, health_timeout: float = 180.0, log_path: Path | None = None):
        super().__init__(port=port, log_path=log_path)
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout

    def command_options(self) -> list[str]:
        return ["--provisioning-delay", str(self.provisioning_delay), "--health-timeout", str(self.health_timeout)]

    def start(self, timeout: float = 90.0) -> AzureEmulator:  # Azurite and a TLS certificate come first
        super().start(timeout)
        return self

    @property
    def subscription_id(self) -> str:
        return self.env["CLOUDML_AZURE_SUBSCRIPTION_ID"]

    @property
    def resource_group(self) -> str:
        return self.env["CLOUDML_AZURE_RESOURCE_GROUP"]

    @property
    def workspace(self) -> str:
        return self.env["CLOUDML_AZURE_WORKSPACE"]

    @property
    def storage_url(self) -> str:
        return self.env["CLOUDML_AZURE_STORAGE_URL"]

    def ml_client(self, credential: Any = None):
        """A plain azure-ai-ml MLClient on the emulated workspace, as a user would build one: the
        emulator as a custom cloud (the process environment must hold `env` for the credential
        and the certificate)."""
        import os

        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential

        # MLClient records its cloud in the process environment, where child processes would
        # inherit a name only this process defined: leave the variable as it was.
        previous = os.environ.get("AZUREML_CURRENT_CLOUD")
        try:
            # The SDK keeps custom clouds process-wide by name: one name per emulator address.
            return MLClient(credential or DefaultAzureCredential(), self.subscription_id, self.resource_group, self.workspace,
                            cloud=f"CloudMLEmulator{urlsplit(self.url).port}", cloud_metadata=self.ready["metadata"], show_progress=False)
        finally:
            if previous is None:
                os.environ.pop("AZUREML_CURRENT_CLOUD", None)
            else:
                os.environ["AZUREML_CURRENT_CLOUD"] = previous

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        import requests

        response = requests.request(method, f"{self.url}/_cloudml/{route}", json=payload, timeout=30, verify=self.env["REQUESTS_CA_BUNDLE"])
        if response.status_code != 200:
            raise RuntimeError(f"the Azure emulator refused {method} /_cloudml/{route}: {response.status_code} {response.text[:300]}")
        return response.json()

    def refuse_next(self, action: str, *, code: str = "InternalServerError", message: str | None = None, status: int = 400, times: int = 1) -> None:
        """Make the next `times` calls of `action` fail: an RBAC action such as
        `onlineEndpoints/deployments/write` (after Microsoft.MachineLearningServices/workspaces/,
        or in full) or an emulator handler name such as `put_deployment`."""
        if not action.startswith("Microsoft.") and "/" in action:
            action = f"Microsoft.MachineLearningServices/workspaces/{action}"
        super().refuse_next(action, code=code, message=message, status=status, times=times)
