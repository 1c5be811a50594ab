"""The serving logs of an endpoint, from Cloud Logging (`entries:list`): Vertex AI writes each
model server's stdout/stderr as entries of resource type `aiplatform.googleapis.com/Endpoint`."""

from __future__ import annotations

import time
from collections.abc import Iterator

from cloudml.errors import DeployFailed
from cloudml.providers.gcp.session import GcpSession


def log_filter(gcp: GcpSession, endpoint_id: str) -> str:
    return (f'resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id="{endpoint_id}" '
            f'AND resource.labels.location="{gcp.location}"')


def _list(gcp: GcpSession, body: dict) -> dict:
    response = gcp.http.post(f"{gcp.logging_url}/v2/entries:list", json=body, timeout=60)
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        hint = "the caller needs roles/logging.viewer" if response.status_code == 403 else None
        raise DeployFailed(f"Cloud Logging refused entries:list ({response.status_code}): {message}", hint=hint)
    return response.json()


def _line(entry: dict) -> str:
    payload = entry.get("textPayload")
    if payload is None:
        json_payload = entry.get("jsonPayload") or {}
        payload = json_payload.get("message") or str(json_payload)
    deployed = entry.get("resource", {}).get("labels", {}).get("deployed_model_id", "")
    return f"{deployed} | {payload.rstrip()}"


def tail(gcp: GcpSession, endpoint_id: str, lines: int = 100) -> list[str]:
    """The last `lines` lines, oldest first."""
    if lines <= 0:
        return []
    body = {"resourceNames": [f"projects/{gcp.project}"], "filter": log_filter(gcp, endpoint_id), "orderBy": "timestamp desc", "pageSize": lines}
    entries = _list(gcp, body).get("entries", [])
    return [_line(e) for e in reversed(entries)]


def follow(gcp: GcpSession, endpoint_id: str, *, lines: int, poll: float = 2.0) -> Iterator[str]:
    """`tail`, then new entries as they arrive (timestamp >= the last one seen, deduplicated)."""
    body = {"resourceNames": [f"projects/{gcp.project}"], "filter": log_filter(gcp, endpoint_id), "orderBy": "timestamp desc", "pageSize": max(lines, 1)}
    first = list(reversed(_list(gcp, body).get("entries", [])))
    seen = {e.get("insertId") for e in first}
    since = first[-1]["timestamp"] if first else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    yield from (_line(e) for e in first[-lines:] if lines)
    while True:
        time.sleep(poll)
        query = {"resourceNames": [f"projects/{gcp.project}"], "filter": f'{log_filter(gcp, endpoint_id)} AND timestamp>="{since}"',
                 "orderBy": "timestamp asc", "pageSize": 1000}
        for entry in _list(gcp, query).get("entries", []):
            if entry.get("insertId") in seen:
                continue
            seen.add(entry.get("insertId"))
            since = max(since, entry["timestamp"])
            yield _line(entry)
