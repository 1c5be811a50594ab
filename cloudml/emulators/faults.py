"""Refusals a test can schedule on any emulator: "the next N calls of ACTION fail with CODE",
the way a real service refuses midway (a quota hit, throttling, an outage)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass


@dataclass
class Fault:
    action: str  # the cloud's API action name: CreateEndpoint, DeployModel, OnlineDeployments_CreateOrUpdate, ...
    code: str = "InternalFailure"
    message: str = "The service refused the request (fault injected by the cloudml emulator)."
    status: int = 400
    times: int = 1


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, action: str) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.action == action:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._pending]
