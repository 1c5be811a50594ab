"""An AWS-compatible endpoint on one local port: moto for S3, IAM, STS, CloudWatch Logs and
Application Auto Scaling, with SageMaker hosting, S3 bucket-policy denials and scheduled faults
layered on top (see sagemaker.py, s3policy.py, faults.py). Any boto3 client reaches it with
`AWS_ENDPOINT_URL=http://127.0.0.1:<port>`.

Control routes (JSON), for tests:
    GET    /_cloudml/health     ready check
    POST   /_cloudml/faults     {"action": "CreateEndpoint", "code": "ResourceLimitExceeded", ...}
    DELETE /_cloudml/faults     clear scheduled faults
    GET    /_cloudml/fleet      the serving processes behind the endpoints
    GET    /_cloudml/calls      every API call as an IAM action, with its user agent (DELETE: and clear)
    POST   /_cloudml/registry/expire-tokens   every ECR authorization token issued so far stops working

ECR: moto's repositories, with a real registry behind GetAuthorizationToken (ecr.py).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudml.emulators.aws import s3policy
from cloudml.emulators.aws.ecr import EcrRegistry
from cloudml.emulators.aws.sagemaker import SageMakerHosting, ServiceError, use_current_instance_types
from cloudml.emulators.container import ContainerHost
from cloudml.emulators.faults import Fault, Faults

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

ACCOUNT = "123456789012"
ROLE_NAME = "cloudml-sagemaker-execution"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
BUCKET = "cloudml-artifacts"
SAGEMAKER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_INVOKE = re.compile(r"^/endpoints/([^/]+)/invocations$")


def _json(status: int, payload: Any, start_response, headers: dict[str, str] | None = None):
    body = json.dumps(payload, default=str).encode()
    start_response(f"{status} {'OK' if status < 400 else 'Error'}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or {}).items()])
    return [body]


class EmulatorApp:
    """WSGI app in front of moto's: answers what it emulates itself, passes the rest on."""

    def __init__(self, moto_app, hosting: SageMakerHosting, faults: Faults, ecr: EcrRegistry | None = None):
        self.moto_app = moto_app
        self.hosting = hosting
        self.faults = faults
        self.ecr = ecr
        # IAM action and user agent of the latest API calls (bounded: the emulator may run for days).
        self.calls: deque[dict[str, str]] = deque(maxlen=100_000)
        self._calls_lock = threading.Lock()

    def _record(self, service: str, action: str, environ) -> None:
        self.record(f"{service}:{action}", environ.get("HTTP_USER_AGENT", ""))

    def record(self, action: str, user_agent: str) -> None:
        with self._calls_lock:
            self.calls.append({"action": action, "user_agent": user_agent})

    def __call__(self, environ, start_response):
        from werkzeug.wsgi import get_input_stream

        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path.startswith("/_cloudml/"):
            return self._control(path, method, environ, start_response)
        body = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        region, service = (scope.group(1), scope.group(2)) if scope else ("us-east-1", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        invoke = _INVOKE.match(path) if method == "POST" else None
        self._record(service or "unknown", _action_name(service, target, method, path, environ, body, invoke), environ)
        try:
            if invoke:
                return self._invoke(region, invoke.group(1), body, environ, start_response)
            if service == "s3":
                refused = self._s3_check(environ, method, path, start_response)
                if refused is not None:
                    return refused
            elif target:
                action = target.rsplit(".", 1)[-1]
                fault = self.faults.take(action)
                if fault is not None:
                    return _json(fault.status, {"__type": fault.code, "message": fault.message}, start_response)
                if target.startswith("SageMaker."):
                    answer = self.hosting.handle(action, json.loads(body or b"{}"), region)
                    if answer is not None:
                        return _json(200, answer, start_response)
                token = self.ecr.authorization_token(region) if action == "GetAuthorizationToken" and service == "ecr" and self.ecr else None
                if token is not None:
                    return _json(200, token, start_response)
        except ServiceError as exc:
            return _json(exc.status, {"__type": exc.code, "message": exc.message}, start_response)
        return self.moto_app(environ, start_response)

    def _s3_check(self, environ, method: str, path: str, start_response):
        from moto.s3.models import s3_backends

        bucket, key, action = s3policy.s3_request(method, path, environ.get("QUERY_STRING", ""), environ.get("HTTP_HOST", ""))
        fault = self.faults.take(action.removeprefix("s3:"))
        if fault is not None:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code><Message>{fault.message}</Message></Error>').encode()
            start_response(f"{fault.status} Error", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body] if method != "HEAD" else []
        if not bucket:
            return None
        try:
            policy = s3_backends[ACCOUNT]["global"].get_bucket(bucket).policy
        except Exception:  # noqa: BLE001 - no such bucket: moto answers that
            return None
        if s3policy.denied(policy, bucket=bucket, key=key, action=action):
            body = s3policy.access_denied_xml(f"{bucket}/{key or ''}")
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body] if method != "HEAD" else []
        return None

    def _invoke(self, region: str, name: str, body: bytes, environ, start_response):
        fault = self.faults.take("InvokeEndpoint")
        if fault is not None:
            return _json(fault.status, {"message": fault.message}, start_response, {"x-amzn-ErrorType": fault.code})
        headers = {"Content-Type": environ.get("CONTENT_TYPE", "application/json"), "Accept": environ.get("HTTP_ACCEPT", "application/json")}
        try:
            status, response_headers, payload = self.hosting.invoke(region, name, body, headers)
        except ServiceError as exc:
            return _json(exc.status, {"message": exc.message}, start_response, {"x-amzn-ErrorType": exc.code})
        start_response(f"{status} {'OK' if status < 400 else 'Error'}", [*response_headers.items(), ("Content-Length", str(len(payload)))])
        return [payload]

    def _control(self, path: str, method: str, environ, start_response):
        if path == "/_cloudml/health":
            return _json(200, {"ok": True}, start_response)
        if path == "/_cloudml/faults":
            if method == "POST":
                from werkzeug.wsgi import get_input_stream

                spec = json.loads(get_input_stream(environ).read() or b"{}")
                self.faults.add(Fault(**spec))
            elif method == "DELETE":
                self.faults.clear()
            return _json(200, self.faults.pending(), start_response)
        if path == "/_cloudml/fleet":
            return _json(200, self.hosting.describe_fleet(), start_response)
        if path == "/_cloudml/registry/expire-tokens" and method == "POST" and self.ecr is not None:
            self.ecr.expire_tokens()
            return _json(200, {"ok": True}, start_response)
        if path == "/_cloudml/calls":
            with self._calls_lock:
                calls = list(self.calls)
                if method == "DELETE":
                    self.calls.clear()
            return _json(200, calls, start_response)
        return _json(404, {"error": f"no control route {path}"}, start_response)


def _action_name(service: str, target: str, method: str, path: str, environ, body: bytes, invoke) -> str:
    """The API action of a request, as IAM names it (after the `service:` prefix)."""
    if invoke:
        return "InvokeEndpoint"
    if target:
        return target.rsplit(".", 1)[-1]
    if service == "s3":
        return s3policy.s3_request(method, path, environ.get("QUERY_STRING", ""), environ.get("HTTP_HOST", ""))[2].removeprefix("s3:")
    from urllib.parse import parse_qs

    form = parse_qs(body.decode(errors="replace")) if body else {}
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return (form.get("Action") or query.get("Action") or [f"{method} {path}"])[0]


class EmulatorServer:
    """The emulator in this process (threads): `start()`, `url`, `stop()`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 4566, state_dir: Path | None = None,
                 provisioning_delay: float = 1.0, health_timeout: float = 180.0):
        self.host, self.port = host, port
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="cloudml-aws-emulator-"))
        self.hosting = SageMakerHosting(self.state_dir / "instances", account=ACCOUNT, provisioning_delay=provisioning_delay, health_timeout=health_timeout)
        self.faults = Faults()
        self.ecr = EcrRegistry(self.state_dir / "registry", account=ACCOUNT, record=self._record, faults=self.faults)
        self.containers = self.hosting.containers = ContainerHost(self.ecr.registry, credentials=self.ecr.pull_credentials)
        self._app: EmulatorApp | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _record(self, action: str, user_agent: str) -> None:
        if self._app is not None:
            self._app.record(action, user_agent)

    def start(self) -> EmulatorServer:
        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        use_current_instance_types()
        app = self._app = EmulatorApp(DomainDispatcherApplication(create_backend_app), self.hosting, self.faults, self.ecr)
        self.ecr.start()
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="aws-emulator")
        self._thread.start()
        return self

    def init_resources(self, *, region: str = "us-east-1") -> dict[str, str]:
        """What a fresh account needs for cloudml: a SageMaker execution role and a bucket."""
        import boto3

        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=region)
        iam = session.client("iam", endpoint_url=self.url)
        if ROLE_NAME not in [r["RoleName"] for r in iam.list_roles()["Roles"]]:
            iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))
            iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="cloudml-execution", PolicyDocument=json.dumps(_execution_policy()))
        s3 = session.client("s3", endpoint_url=self.url)
        if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
            kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            s3.create_bucket(Bucket=BUCKET, **kwargs)
        return {"role_arn": ROLE_ARN, "bucket": BUCKET}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.hosting.stop_all()
        self.containers.close()
        self.ecr.stop()
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _execution_policy() -> dict:
    from importlib.resources import files

    return json.loads(files("cloudml.deploy_templates").joinpath("aws-sagemaker-execution-policy.json").read_text())


def client_env(url: str, *, region: str = "us-east-1") -> dict[str, str]:
    """Environment for boto3 clients and the aws provider to use the emulator."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "CLOUDML_AWS_ROLE_ARN": ROLE_ARN,
    }
