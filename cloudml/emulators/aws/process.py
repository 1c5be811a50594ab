"""`AwsEmulator`: the emulator in its own process, for tests and scripts.

    with AwsEmulator() as aws:
        os.environ.update(aws.env)          # boto3 and `cloudml --provider aws` now use it
        aws.refuse_next("CreateEndpoint", code="ResourceLimitExceeded")
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloudml import httpclient
from cloudml.emulators.aws.server import BUCKET, ROLE_ARN, client_env


class AwsEmulator:
    def __init__(self, *, port: int = 0, region: str = "us-east-1", provisioning_delay: float = 1.0,
                 health_timeout: float = 180.0, log_path: Path | None = None):
        self.port = port
        self.region = region
        self.provisioning_delay = provisioning_delay
        self.health_timeout = health_timeout
        self.log_path = log_path
        self.url: str | None = None
        self.role_arn = ROLE_ARN
        self.bucket = BUCKET
        self._proc: subprocess.Popen | None = None
        self._scratch: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """Variables that point boto3 and the aws provider at this emulator."""
        if self.url is None:
            raise RuntimeError("the emulator is not started")
        return client_env(self.url, region=self.region)

    def start(self, timeout: float = 60.0) -> "AwsEmulator":
        self._scratch = Path(tempfile.mkdtemp(prefix="cloudml-aws-emu-"))
        ready = self._scratch / "ready.json"
        log_path = self.log_path or self._scratch / "emulator.log"
        command = [
            sys.executable, "-m", "cloudml", "emulator", "aws", "--host", "127.0.0.1", "--port", str(self.port),
            "--region", self.region, "--provisioning-delay", str(self.provisioning_delay),
            "--health-timeout", str(self.health_timeout), "--ready-file", str(ready),
        ]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the AWS emulator did not start; its log:\n{Path(log_path).read_text()[-4000:]}")
            time.sleep(0.05)
        self.url = json.loads(ready.read_text())["url"]
        return self

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        result = httpclient.request(method, f"{self.url}/_cloudml/{route}", payload=payload, timeout=30)
        if result.status != 200:
            raise RuntimeError(f"the AWS emulator refused {method} /_cloudml/{route}: {result.status} {result.body[:300]!r}")
        return result.json()

    def refuse_next(self, action: str, *, code: str = "InternalFailure", message: str | None = None, status: int = 400, times: int = 1) -> None:
        """Make the next `times` calls of `action` (CreateEndpoint, PutObject, ...) fail."""
        fault = {"action": action, "code": code, "status": status, "times": times}
        if message:
            fault["message"] = message
        self._call("POST", "faults", fault)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def fleet(self) -> list[dict[str, Any]]:
        """The serving processes behind the emulated endpoints (port, pid, endpoint config)."""
        return self._call("GET", "fleet")

    def calls(self, *, clear: bool = False) -> list[dict[str, str]]:
        """Every API call so far as `{"action": "sagemaker:CreateModel", "user_agent": ...}`."""
        return self._call("DELETE" if clear else "GET", "calls")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self.url = None

    def __enter__(self) -> "AwsEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
