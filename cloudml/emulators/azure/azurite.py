"""Azurite (npm `azurite`), the Azure Blob Storage emulator, as a child process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cloudml.errors import ProviderUnavailable

# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO = Path(__file__).resolve().parents[3]


def find_azurite() -> str:
    """$CLOUDML_AZURITE, then azurite-blob on PATH, then ./node_modules/.bin (cwd, then this repo)."""
    explicit = os.environ.get("CLOUDML_AZURITE")
    if explicit:
        if not Path(explicit).is_file():
            raise ProviderUnavailable(f"CLOUDML_AZURITE points at {explicit}, which does not exist",
                                      hint="point it at node_modules/.bin/azurite-blob (run `npm install azurite` to get it), "
                                           "or unset it to search PATH and ./node_modules")
        return explicit
    on_path = shutil.which("azurite-blob")
    if on_path:
        return on_path
    for base in (Path.cwd(), REPO):
        candidate = base / "node_modules" / ".bin" / "azurite-blob"
        if candidate.is_file():
            return str(candidate)
    raise ProviderUnavailable(
        "the Azure emulator needs Azurite (the Azure Blob Storage emulator) and cannot find it",
        hint="run `npm install azurite` in this folder (needs Node.js), or set CLOUDML_AZURITE to its azurite-blob script",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Azurite:
    def __init__(self, workdir: Path, *, log_path: Path):
        self.workdir = workdir
        self.log_path = log_path
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.account_url};")

    def start(self, timeout: float = 30.0) -> Azurite:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [find_azurite(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.workdir),
                   "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProviderUnavailable(f"Azurite exited with code {self.proc.returncode}: {self.log_path.read_text()[-2000:]}",
                                          hint="check the Node.js install (`node --version`) and `npm install azurite`")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ProviderUnavailable(f"Azurite did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
