"""The packaged model in the workspace's default blob datastore, at a content-addressed path, so
a re-run finds what an earlier run uploaded and nothing is uploaded twice.

azure-ai-ml's own upload (`Model(path=<local folder>)`) always builds the account URL as
https://<account>.blob.<cloud storage suffix>; uploading here lets `storage_url` point at another
blob endpoint (Azurite), and the model is then registered with its azureml://datastores/ path.
"""

from __future__ import annotations

from pathlib import Path

from cloudml.providers.azure.session import azure_errors

MARKER = "cloudml-manifest.json"  # uploaded last: its presence means the folder is complete


def datastore_path(datastore: str, blob_prefix: str) -> str:
    return f"azureml://datastores/{datastore}/paths/{blob_prefix}/"


def container_client(ml, storage_url: str | None):
    """The default datastore's blob container, with the credential azure-ai-ml itself uses
    (the datastore's secret from listSecrets, or the caller's identity)."""
    from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info
    from azure.storage.blob import ContainerClient

    with azure_errors("reading the workspace's default datastore"):
        datastore = ml.datastores.get_default()
        overrides = {"account_url": storage_url} if storage_url else {}
        info = get_datastore_info(ml.datastores, datastore.name, **overrides)
    return datastore.name, ContainerClient(info["account_url"], info["container_name"], credential=info["credential"])


def upload_folder(container, folder: Path, prefix: str, *, metadata: dict[str, str]) -> bool:
    """Upload `folder` under `prefix` unless a complete copy of it is there; True when uploaded.

    The prefix is the model's hash, but one model packages differently for another runtime: the
    copy there counts only when its manifest is this package's."""
    from azure.core.exceptions import ResourceNotFoundError

    with azure_errors(f"checking {prefix} in the workspace blob store"):
        try:
            if container.get_blob_client(f"{prefix}/{MARKER}").download_blob().readall() == (folder / MARKER).read_bytes():
                return False
        except ResourceNotFoundError:
            pass
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.name == MARKER)
    with azure_errors(f"uploading the model to {prefix} in the workspace blob store"):
        for path in files:
            with path.open("rb") as data:
                container.upload_blob(f"{prefix}/{path.relative_to(folder).as_posix()}", data, overwrite=True, metadata=metadata)
    return True


def delete_prefix(container, prefix: str) -> int:
    with azure_errors(f"deleting {prefix} from the workspace blob store"):
        names = [b.name for b in container.list_blobs(name_starts_with=prefix)]
        for name in names:
            container.delete_blob(name)
    return len(names)
