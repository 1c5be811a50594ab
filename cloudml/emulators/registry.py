"""A real OCI registry for the cloud emulators: the CNCF distribution registry (`docker-registry`,
the reference implementation ECR, Artifact Registry and ACR speak) on a loopback port, with its
files under the emulator's state folder, behind a token service that plays the cloud's auth.

The registry runs in its token-auth mode: a client without a token gets `401` with
`WWW-Authenticate: Bearer realm=<token service>/oauth2/token`, fetches a token there with the
cloud's credentials as basic auth (ECR: `AWS:<authorization token>`, Artifact Registry:
`oauth2accesstoken:<access token>`, ACR: `00000000-...:<refresh token>`), and retries with it. The
token service signs JWTs with a key the registry trusts (x5c header, the certificate in the
registry's root bundle). The cloud emulator decides, per request, whether the credentials are
good (`check`) and which repositories may be pushed to (`may_push`); wrong credentials get 401.

`on_grant` sees the access each token grants (the emulators record it as the cloud's permissions).
`routes` lets a cloud add its own endpoints to the token service (ACR's `/oauth2/exchange`).
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ISSUER = "cloudml-emulator"
TOKEN_SECONDS = 300
# (username, password) -> whether the cloud accepts them; None (no Authorization) is an anonymous client.
Check = Callable[[str | None, str | None], bool]
# A route of the token service: (query or form fields, request headers) -> (status, JSON body).
Route = Callable[[dict[str, str], dict[str, str]], tuple[int, dict]]


class RegistryUnavailable(RuntimeError):
    pass


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class LocalRegistry:
    """`start()` runs docker-registry and its token service; `host` is what image references name
    (127.0.0.1:PORT, plain http); `token_url` is the realm; `service` None means the host."""

    def __init__(self, state_dir: Path, *, service: str | None, check: Check, may_push: Callable[[str], bool] | None = None,
                 routes: dict[str, Route] | None = None, on_grant: Callable[[list[dict], str], None] | None = None,
                 host: str = "127.0.0.1", binary: str = "docker-registry"):
        self.state_dir = Path(state_dir)
        self.service = service
        self.check = check
        self.may_push = may_push or (lambda repository: True)
        self.routes = dict(routes or {})
        self.on_grant = on_grant  # (access granted, the client's user agent): for the emulator's recorded calls
        self.bind = host
        self.binary = binary
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._auth: ThreadingHTTPServer | None = None
        self._key: Any = None
        self._cert_der = b""

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    @property
    def token_url(self) -> str:
        assert self._auth is not None
        return f"http://{self.bind}:{self._auth.server_address[1]}/oauth2/token"

    @property
    def auth_url(self) -> str:
        """Where the token service (and any cloud routes on it) listens."""
        assert self._auth is not None
        return f"http://{self.bind}:{self._auth.server_address[1]}"

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None

    def try_start(self) -> bool:
        """Start, or say on stderr why not and go on without a registry (the rest of the emulator
        does not need one): False then."""
        try:
            self.start()
            return True
        except RegistryUnavailable as exc:
            print(f"warning: {exc}; the emulator runs without its container registry", file=sys.stderr, flush=True)
            return False

    def start(self, timeout: float = 30.0) -> LocalRegistry:
        binary = shutil.which(self.binary)
        if binary is None:
            raise RegistryUnavailable(f"{self.binary} is not installed (Debian: apt-get install docker-registry); "
                                      "the emulator's container registry needs it")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        bundle = self._make_signing_key()
        self._start_token_service()
        self.port = _free_port(self.bind)
        self.service = self.service or self.host  # ACR names itself by its login server
        config = self.state_dir / "config.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.state_dir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
            "auth": {"token": {"realm": self.token_url, "service": self.service, "issuer": ISSUER, "rootcertbundle": str(bundle)}},
        }))
        log = open(self.state_dir / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection(self.bind, self.port, timeout=2)
                conn.request("GET", "/v2/")
                if conn.getresponse().status in (200, 401):
                    conn.close()
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        log = (self.state_dir / "registry.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RegistryUnavailable(f"docker-registry did not start on {self.host}; its log:\n{log}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._auth is not None:
            self._auth.shutdown()
            self._auth.server_close()
            self._auth = None

    # -- tokens -----------------------------------------------------------------------------------

    def _make_signing_key(self) -> Path:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudml emulator registry token signer")])
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        bundle = self.state_dir / "token-signer.pem"
        bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return bundle

    def issue(self, subject: str, access: list[dict]) -> str:
        """A registry token (JWT, RS256) granting `access` ([{type, name, actions}])."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 10, "exp": now + TOKEN_SECONDS,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def grant(self, scopes: list[str]) -> list[dict]:
        """The access a good caller gets for the scopes asked: everything, but push only where the
        cloud has the repository (ECR and Artifact Registry refuse pushes to one never created)."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            wanted = [a for a in actions.split(",") if a]
            allowed = [a for a in wanted if a != "push" or self.may_push(name)]
            if "*" in wanted:
                allowed = ["*"] if self.may_push(name) else ["pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def _token(self, query: dict[str, list[str]], headers: dict[str, str]) -> tuple[int, dict]:
        username, password = _basic(headers.get("authorization", ""))
        if not self.check(username, password):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required: the registry credentials are not valid"}]}
        access = self.grant(query.get("scope", []))
        if self.on_grant is not None:
            self.on_grant(access, headers.get("user-agent", ""))
        token = self.issue(username or "anonymous", access)
        return 200, {"token": token, "access_token": token, "expires_in": TOKEN_SECONDS,
                     "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}

    def _start_token_service(self) -> None:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fields = parse_qs(parts.query)
                if raw and "json" not in (self.headers.get("Content-Type") or ""):
                    for key, values in parse_qs(raw.decode(errors="replace")).items():
                        fields.setdefault(key, []).extend(values)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if parts.path == "/oauth2/token" and self.command == "GET":
                    status, body = registry._token(fields, headers)
                elif parts.path in registry.routes:
                    status, body = registry.routes[parts.path]({k: v[-1] for k, v in fields.items()}, headers)
                else:
                    status, body = 404, {"errors": [{"code": "NOT_FOUND", "message": f"no route {self.command} {parts.path}"}]}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self._auth = ThreadingHTTPServer((self.bind, 0), Handler)
        self._auth.daemon_threads = True
        threading.Thread(target=self._auth.serve_forever, daemon=True, name="registry-tokens").start()


def _basic(header: str) -> tuple[str | None, str | None]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        username, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return username, password
