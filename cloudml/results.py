"""Typed results every provider returns; each prints as JSON with `.to_json()`."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DeploymentStatus(str, Enum):
    CREATING = "creating"
    UPDATING = "updating"
    HEALTHY = "healthy"  # serving and answering its health check
    UNHEALTHY = "unhealthy"  # running but not answering its health check
    DEAD = "dead"  # its server is gone
    FAILED = "failed"  # the provider reports a failure
    DELETING = "deleting"

    @property
    def serving(self) -> bool:
        return self is DeploymentStatus.HEALTHY


class _JSONModel(BaseModel):
    def to_json(self, *, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)


class Deployment(_JSONModel):
    name: str
    provider: str
    status: DeploymentStatus
    endpoint_url: str | None = None
    model_version: int | None = None
    model_hash: str | None = None
    model_path: str | None = None
    created_at: datetime
    updated_at: datetime
    tags: dict[str, str] = Field(default_factory=dict)
    # Provider-specific facts worth showing (pid and log file locally, ARNs in the cloud).
    details: dict[str, Any] = Field(default_factory=dict)


class DeployResult(_JSONModel):
    action: Literal["created", "updated", "unchanged", "restarted"]
    deployment: Deployment


class Prediction(_JSONModel):
    deployment: str
    predictions: list[Any]
    model_version: int | None = None
    latency_ms: float | None = None
