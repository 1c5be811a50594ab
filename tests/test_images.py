"""The daemonless image builder against a real OCI registry (the CNCF distribution registry),
checked with independent clients: skopeo reads what was pushed, podman pulls and runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import PODMAN_FLAGS, PODMAN_RUN_FLAGS, free_port, start_registry

from cloudml.errors import ExitCode
from cloudml.images import builder, layers, oci
from cloudml.images.errors import ImageNotFound, RegistryAuthError, RegistryError, RegistryUnreachable
from cloudml.images.registry import Credentials, Reference, RegistryClient
from cloudml.progress import Progress

BUSYBOX = next((p for p in (os.environ.get("CLOUDML_TEST_BUSYBOX", ""), "/bin/busybox", "/usr/bin/busybox") if p and Path(p).is_file()), None)
pytestmark = pytest.mark.slow  # starts registries, podman and pip


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    host, proc = start_registry(tmp_path_factory.mktemp("registry"))
    yield host
    proc.terminate()
    proc.wait(10)


def _base_files() -> list[layers.Entry]:
    """A tiny root file system: busybox when the machine has it (so an engine can run the image), else a few files."""
    out = [layers.Entry("etc/os-release", data=b"ID=cloudml-test\n"), layers.Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n")]
    if BUSYBOX:
        out.append(layers.Entry("bin/busybox", source=Path(BUSYBOX), executable=True))
        out += [layers.Entry(f"bin/{tool}", kind="symlink", target="busybox") for tool in ("sh", "cat", "id", "ls")]
    return out


def push_base(host: str, repo: str, tag: str, blob_dir: Path, *, manifest_type: str = oci.DOCKER_MANIFEST, as_index: bool = False) -> str:
    """Push a one-layer base image with cloudml's own client; returns its manifest digest."""
    client = RegistryClient(host)
    layer = layers.build_layer(_base_files(), blob_dir / "base")
    config = oci.canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "LANG=C.UTF-8"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "test base"}],
        }
    )
    client.push_blob(repo, layer.digest, layer.size, layer.path)
    client.push_blob(repo, oci.digest_of(config), len(config), config)
    manifest = oci.image_manifest(manifest_type, config, [oci.layer_descriptor(layer.media_type, layer.digest, layer.size, manifest_type)])
    if not as_index:
        return client.put_manifest(repo, tag, manifest.to_bytes(), manifest.media_type)
    digest = client.put_manifest(repo, manifest.digest, manifest.to_bytes(), manifest.media_type)
    arm_config = config.replace(b'"architecture":"amd64"', b'"architecture":"arm64"')
    client.push_blob(repo, oci.digest_of(arm_config), len(arm_config), arm_config)
    arm = oci.image_manifest(manifest_type, arm_config, list(manifest.layers))
    client.put_manifest(repo, arm.digest, arm.to_bytes(), arm.media_type)
    other = {"mediaType": arm.media_type, "digest": arm.digest, "size": len(arm.to_bytes()), "platform": {"architecture": "arm64", "os": "linux"}}
    mine = {"mediaType": manifest.media_type, "digest": digest, "size": len(manifest.to_bytes()), "platform": {"architecture": "amd64", "os": "linux"}}
    index = oci.canonical({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [other, mine]})
    client.put_manifest(repo, tag, index, oci.OCI_INDEX)
    return digest


def runtime_tree(root: Path, version: str = "1") -> Path:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "pkg" / "version.txt").write_text(f"runtime {version}\n")
    (root / "run.sh").write_text('#!/bin/sh\necho "uid=$(id -u) gid=$(id -g)"\ncat /opt/app/pkg/version.txt\necho "args: $*"\n')
    (root / "run.sh").chmod(0o755)
    return root


SETTINGS = oci.ImageSettings(
    entrypoint=["/bin/sh", "/opt/app/run.sh"],
    env={"CLOUDML_PORT": "8080"},
    exposed_ports=(8080,),
    working_dir="/opt/app",
    labels=builder.version_labels("onnxruntime", "1.32.0", "tensorflow", "2.21.0"),
)


def skopeo_inspect(ref: str, *, config: bool = False) -> dict:
    args = ["skopeo", "inspect", "--tls-verify=false"] + (["--config"] if config else []) + [f"docker://{ref}"]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout)


# -- layers ---------------------------------------------------------------------------------------


def test_same_files_in_other_folders_at_other_times_give_the_same_layer(tmp_path):
    one = runtime_tree(tmp_path / "one")
    two = tmp_path / "elsewhere" / "deeper" / "two"
    shutil.copytree(one, two)
    for path in two.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (two / "pkg" / "version.txt").chmod(0o600)  # a umask difference: normalised to 0644
    a = layers.layer_from_tree(one, tmp_path / "blobs-a", prefix="opt/app")
    b = layers.layer_from_tree(two, tmp_path / "blobs-b", prefix="opt/app")
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert str(tmp_path).encode() not in __import__("gzip").decompress(a.path.read_bytes())
    (two / "pkg" / "version.txt").write_text("runtime 2\n")
    assert layers.layer_from_tree(two, tmp_path / "blobs-c", prefix="opt/app").digest != a.digest


def test_a_layer_lists_sorted_root_owned_entries_with_fixed_times(tmp_path):
    import tarfile

    layer = layers.layer_from_tree(runtime_tree(tmp_path / "tree"), tmp_path / "blobs", prefix="opt/app")
    with tarfile.open(layer.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["opt", "opt/app", "opt/app/pkg", "opt/app/pkg/version.txt", "opt/app/run.sh"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", layers.MTIME)}
    assert {m.name: oct(m.mode) for m in members}["opt/app/run.sh"] == "0o755"
    assert {m.name: oct(m.mode) for m in members}["opt/app/pkg/version.txt"] == "0o644"


def test_a_link_out_of_the_tree_is_refused(tmp_path):
    tree = runtime_tree(tmp_path / "tree")
    (tree / "leak").symlink_to("/etc/hostname")
    with pytest.raises(Exception, match="outside") as info:
        layers.layer_from_tree(tree, tmp_path / "blobs")
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_a_python_package_layer_leaves_out_the_hosts_bytecode(tmp_path):
    import tarfile

    pkg = tmp_path / "src" / "mypkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"host bytecode")
    clean = tmp_path / "clean" / "mypkg"
    clean.mkdir(parents=True)
    (clean / "__init__.py").write_text("X = 1\n")
    layer = layers.python_package_layer(pkg, tmp_path / "blobs", prefix="/opt/cloudml/app/")
    with tarfile.open(layer.path) as tar:
        assert tar.getnames() == ["opt", "opt/cloudml", "opt/cloudml/app", "opt/cloudml/app/mypkg", "opt/cloudml/app/mypkg/__init__.py"]
    assert layers.python_package_layer(clean, tmp_path / "blobs2", prefix="opt/cloudml/app").digest == layer.digest


def test_runtime_tags_name_the_contents_and_are_valid_tags():
    assert builder.runtime_tag("0.1.0", "onnxruntime", "1.32.0") == "0.1.0-onnxruntime-1.32.0-cpu"
    tag = builder.runtime_tag("0.1.0", "torch", "2.13.0+cpu", "gpu")
    assert tag == "0.1.0-torch-2.13.0_cpu-gpu" and Reference.parse(f"127.0.0.1:5000/r:{tag}").tag == tag


def test_credentials_never_show_their_secrets():
    text = repr(Credentials("AWS", "pa55word")) + repr(Credentials(token="t0ken"))
    assert "pa55word" not in text and "t0ken" not in text and "AWS" in text


def test_a_file_below_a_file_is_refused_and_leaves_no_partial_blob(tmp_path):
    with pytest.raises(Exception, match="sits below 'etc/passwd'") as info:
        layers.build_layer([layers.Entry("etc/passwd", data=b"x"), layers.Entry("etc/passwd/oops", data=b"y")], tmp_path / "blobs")
    assert info.value.exit_code == ExitCode.BAD_INPUT and list((tmp_path / "blobs").iterdir()) == []


# -- references -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("python:3.11-slim", ("docker.io", "library/python", "3.11-slim", None)),
        ("127.0.0.1:5000/cloudml/runtime:1.0", ("127.0.0.1:5000", "cloudml/runtime", "1.0", None)),
        ("localhost/a@sha256:" + "a" * 64, ("localhost", "a", None, "sha256:" + "a" * 64)),
        ("123.dkr.ecr.us-east-1.amazonaws.com/cloudml-runtime", ("123.dkr.ecr.us-east-1.amazonaws.com", "cloudml-runtime", None, None)),
    ],
)
def test_references_parse(text, expected):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("text", ["Upper/Case:1", "host:5000/repo:bad tag", "repo@sha256:xyz", ""])
def test_bad_references_are_refused_with_the_expected_form(text):
    with pytest.raises(Exception, match="not an image reference") as info:
        Reference.parse(text)
    assert "HOST[:PORT]/REPOSITORY" in (info.value.hint or "") and info.value.exit_code == ExitCode.BAD_INPUT


# -- build and push -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(registry, tmp_path_factory):
    digest = push_base(registry, "base/tiny", "1", tmp_path_factory.mktemp("base"))
    return f"{registry}/base/tiny:1", digest


def test_a_built_image_has_the_config_skopeo_reads(registry, base, tmp_path):
    base_ref, base_digest = base
    layer = layers.layer_from_tree(runtime_tree(tmp_path / "rt"), tmp_path / "blobs", prefix="opt/app", comment="runtime")
    target = f"{registry}/cloudml/runtime:t1"
    assert builder.exists(target) is None

    result = builder.build(base_ref, [layer], SETTINGS, target)

    assert builder.exists(target) == result.digest
    assert result.base == f"{base_ref}@{base_digest}"
    info = skopeo_inspect(target)
    assert info["Digest"] == result.digest
    assert len(info["Layers"]) == 2 and info["Layers"][1] == layer.digest
    assert info["Labels"]["io.cloudml.runtime"] == "onnxruntime"
    assert info["Labels"]["io.cloudml.framework.version"] == "2.21.0"
    assert info["Labels"][builder.BASE_DIGEST_LABEL] == base_digest
    config = skopeo_inspect(target, config=True)
    assert config["config"]["User"] == "10001"
    assert config["config"]["Entrypoint"] == ["/bin/sh", "/opt/app/run.sh"]
    assert "Cmd" not in config["config"]  # the base's CMD was written for its own entrypoint
    assert "PATH=/bin" in config["config"]["Env"] and "CLOUDML_PORT=8080" in config["config"]["Env"]
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert config["rootfs"]["diff_ids"][-1] == layer.diff_id
    assert all("created" not in h for h in config["history"])
    # The first push sent the runtime layer and the config; the base layer was already in the registry.
    assert {(b.what, b.action) for b in result.blobs} == {("base layer", "mounted"), ("layer runtime", "uploaded"), ("config", "uploaded")}


def test_an_identical_rebuild_uploads_nothing_and_a_changed_layer_only_itself(registry, base, tmp_path):
    base_ref, _ = base
    target = f"{registry}/cloudml/runtime:t2"
    first = builder.build(base_ref, [layers.layer_from_tree(runtime_tree(tmp_path / "a"), tmp_path / "b1", prefix="opt/app")], SETTINGS, target)
    again = builder.build(base_ref, [layers.layer_from_tree(runtime_tree(tmp_path / "copy"), tmp_path / "b2", prefix="opt/app")], SETTINGS, target)
    assert again.digest == first.digest
    assert again.uploaded == [] and again.bytes_uploaded == 0 and again.bytes_skipped > 0

    deps = layers.build_layer([layers.Entry("opt/deps/lib.py", data=b"X = 1\n")], tmp_path / "b3", comment="deps")
    runtime_v2 = layers.layer_from_tree(runtime_tree(tmp_path / "v2", version="2"), tmp_path / "b3", prefix="opt/app", comment="runtime")
    with_deps = builder.build(base_ref, [deps, layers.layer_from_tree(runtime_tree(tmp_path / "v1"), tmp_path / "b3", prefix="opt/app")], SETTINGS, target)
    changed = builder.build(base_ref, [deps, runtime_v2], SETTINGS, target)
    assert changed.digest != with_deps.digest
    assert [(b.what, b.digest) for b in changed.uploaded] == [("layer runtime", runtime_v2.digest), ("config", changed.uploaded[-1].digest)]
    assert skopeo_inspect(target)["Digest"] == changed.digest


class InterruptAfterFirstUpload(Progress):
    """Ctrl-C as the first blob has been sent (progress notes come right after each blob)."""

    def note(self, message: str) -> None:
        if message.endswith("uploaded"):
            raise KeyboardInterrupt


def test_an_interrupted_push_rerun_sends_only_what_had_not_arrived(registry, base, tmp_path):
    base_ref, _ = base
    target = f"{registry}/cloudml/interrupted:1"
    deps = layers.build_layer([layers.Entry("opt/deps/big.bin", data=os.urandom(200_000))], tmp_path / "b", comment="deps")
    runtime = layers.layer_from_tree(runtime_tree(tmp_path / "rt"), tmp_path / "b", prefix="opt/app", comment="runtime")
    with pytest.raises(KeyboardInterrupt):
        builder.build(base_ref, [deps, runtime], SETTINGS, target, progress=InterruptAfterFirstUpload())
    assert builder.exists(target) is None  # no manifest, so no half image under the tag

    rerun = builder.build(base_ref, [deps, runtime], SETTINGS, target)
    assert [(b.what, b.action) for b in rerun.blobs] == [
        ("base layer", "skipped"),
        ("layer deps", "skipped"),
        ("layer runtime", "uploaded"),
        ("config", "uploaded"),
    ]
    assert skopeo_inspect(target)["Digest"] == rerun.digest


def test_an_oci_index_base_resolves_to_its_linux_amd64_image(registry, tmp_path):
    digest = push_base(registry, "base/multi", "1", tmp_path, manifest_type=oci.OCI_MANIFEST, as_index=True)
    layer = layers.layer_from_tree(runtime_tree(tmp_path / "rt"), tmp_path / "blobs", prefix="opt/app")
    result = builder.build(f"{registry}/base/multi:1", [layer], SETTINGS, f"{registry}/other/place:v1")
    assert result.base.endswith(digest)
    info = skopeo_inspect(f"{registry}/other/place:v1")
    assert len(info["Layers"]) == 2
    raw = json.loads(
        subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/other/place:v1"], capture_output=True, check=True).stdout
    )
    assert raw["mediaType"] == oci.OCI_MANIFEST and {d["mediaType"] for d in raw["layers"]} == {oci.OCI_LAYER}


def test_a_missing_base_is_a_clear_error(registry, tmp_path):
    layer = layers.build_layer([layers.Entry("a", data=b"a")], tmp_path)
    with pytest.raises(ImageNotFound) as info:
        builder.build(f"{registry}/base/nothing-here:1", [layer], SETTINGS, f"{registry}/cloudml/runtime:x")
    assert "base image" in info.value.message and "nothing-here" in info.value.message
    assert "base_image" in (info.value.hint or "")
    assert builder.exists(f"{registry}/cloudml/runtime:x") is None


def test_ping_tells_a_registry_from_another_web_server(registry, tmp_path):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    RegistryClient(registry).ping()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RegistryError, match="not an OCI registry"):
            RegistryClient(f"127.0.0.1:{server.server_address[1]}").ping()
    finally:
        server.shutdown()


def test_an_unreachable_registry_is_a_clear_error(tmp_path):
    with pytest.raises(RegistryUnreachable) as info:
        builder.exists(f"127.0.0.1:{free_port()}/cloudml/runtime:1")
    assert "cannot reach the registry" in info.value.message and info.value.hint


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # cost 4: the registry checks it on every request
        except (ImportError, AttributeError):
            bcrypt = pytest.importorskip("bcrypt", reason="no bcrypt to write the registry's htpasswd file")
            return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-registry")
    (root / "htpasswd").write_text(f"pusher:{_bcrypt('s3cret')}\n")
    host, proc = start_registry(root, f"auth:\n  htpasswd:\n    realm: cloudml-test\n    path: {root / 'htpasswd'}\n")
    yield host
    proc.terminate()
    proc.wait(10)


def test_a_registry_wanting_credentials_says_so_and_accepts_the_right_ones(auth_registry, tmp_path):
    layer = layers.build_layer([layers.Entry("a", data=b"a")], tmp_path)
    with pytest.raises(RegistryAuthError) as anonymous:
        RegistryClient(auth_registry).push_blob("cloudml/runtime", layer.digest, layer.size, layer.path)
    assert "unauthorized" in anonymous.value.message and "needs credentials" in (anonymous.value.hint or "")
    with pytest.raises(RegistryAuthError) as wrong:
        builder.exists(f"{auth_registry}/cloudml/runtime:1", credentials=Credentials("pusher", "wrong"))
    assert "refused" in (wrong.value.hint or "")

    good = Credentials("pusher", "s3cret")
    RegistryClient(auth_registry, credentials=good).push_blob("base/tiny", layer.digest, layer.size, layer.path)
    assert RegistryClient(auth_registry, credentials=good).blob_exists("base/tiny", layer.digest)


class RecordingProgress(Progress):
    def __init__(self):
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def test_a_base_on_another_registry_is_copied_through_and_progress_names_each_blob(registry, base, auth_registry, tmp_path):
    base_ref, base_digest = base
    layer = layers.layer_from_tree(runtime_tree(tmp_path / "rt"), tmp_path / "blobs", prefix="opt/app", comment="runtime")
    target, good = f"{auth_registry}/cloudml/runtime:copied", Credentials("pusher", "s3cret")
    progress = RecordingProgress()

    result = builder.build(base_ref, [layer], SETTINGS, target, target_credentials=good, progress=progress)

    assert [(b.what, b.action) for b in result.blobs] == [("base layer", "uploaded"), ("layer runtime", "uploaded"), ("config", "uploaded")]
    assert result.bytes_uploaded == sum(b.size for b in result.blobs) and result.bytes_skipped == 0
    assert progress.lines[0].startswith("base layer ") and progress.lines[0].endswith(f"({result.blobs[0].size:,} bytes): uploaded")
    again = RecordingProgress()
    assert builder.build(base_ref, [layer], SETTINGS, target, target_credentials=good, progress=again).digest == result.digest
    assert all(line.endswith("skipped") for line in again.lines) and len(again.lines) == 3
    assert RegistryClient(auth_registry, credentials=good).get_blob("cloudml/runtime", result.blobs[-1].digest)  # the config, digest checked


# -- a real engine runs what was built ------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed")
@pytest.mark.skipif(BUSYBOX is None, reason="no static busybox for the base image (apt-get install busybox-static, or set CLOUDML_TEST_BUSYBOX)")
def test_podman_pulls_and_runs_the_built_image_as_uid_10001(registry, base, tmp_path):
    base_ref, _ = base
    target = f"{registry}/cloudml/runtime:run"
    layer = layers.layer_from_tree(runtime_tree(tmp_path / "rt", version="7"), tmp_path / "blobs", prefix="opt/app", comment="runtime")
    builder.build(base_ref, [layer], SETTINGS, target)
    try:
        run = subprocess.run(
            ["podman", *PODMAN_FLAGS, "run", "--rm", *PODMAN_RUN_FLAGS, "--tls-verify=false", target, "hello"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run(["podman", *PODMAN_FLAGS, "rmi", "--force", target], capture_output=True, timeout=120)  # leave the machine's image store as it was
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["uid=10001 gid=0", "runtime 7", "args: hello"]


# -- bearer token auth (how Artifact Registry, ACR and Docker Hub work) ----------------------------

TOKEN_USERS = {"pusher": ("s3cret", {"pull", "push"}), "reader": ("r3ad", {"pull"})}


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    """The real registry with token auth, and a token service (the test double at the network
    boundary) that signs JWTs for users by password, granting each only its actions."""
    import base64
    import datetime
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    pytest.importorskip("cryptography", reason="cryptography signs the test token service's JWTs")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID

    root = tmp_path_factory.mktemp("token-registry")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudml test token issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    requests: list[dict] = []

    class TokenService(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            query = parse_qs(urlsplit(self.path).query)
            user, _, password = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:] or b"").decode().partition(":")
            requests.append({"user": user, "scopes": query.get("scope", []), "service": query.get("service", [""])[0]})
            if user not in TOKEN_USERS or TOKEN_USERS[user][0] != password:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", []):
                kind, repo, actions = scope.rsplit(":", 2)  # a name may hold a port: the actions are last
                access.append({"type": kind, "name": repo, "actions": sorted(set(actions.split(",")) & TOKEN_USERS[user][1])})
            t = int(time.time())
            claims = {
                "iss": "cloudml-test-issuer",
                "sub": user,
                "aud": "cloudml-test-registry",
                "iat": t,
                "nbf": t - 10,
                "exp": t + 300,
                "jti": str(t),
                "access": access,
            }
            signing = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "x5c": chain}).encode()) + "." + _b64url(json.dumps(claims).encode())
            token = signing + "." + _b64url(key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256()))
            body = json.dumps({"token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    auth = (
        f"auth:\n  token:\n    realm: {realm}\n    service: cloudml-test-registry\n    issuer: cloudml-test-issuer\n    rootcertbundle: {root / 'cert.pem'}\n"
    )
    host, proc = start_registry(root, auth)
    yield host, requests
    proc.terminate()
    proc.wait(10)
    server.shutdown()


def test_a_token_registry_builds_with_the_right_credentials_and_says_what_is_wrong_otherwise(token_registry, tmp_path):
    host, requests = token_registry
    pusher = Credentials("pusher", "s3cret")
    client = RegistryClient(host, credentials=pusher)
    layer = layers.build_layer(_base_files(), tmp_path / "base")
    config = oci.canonical({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}})
    client.push_blob("base/tiny", layer.digest, layer.size, layer.path)
    client.push_blob("base/tiny", oci.digest_of(config), len(config), config)
    manifest = oci.image_manifest(oci.OCI_MANIFEST, config, [oci.layer_descriptor(layer.media_type, layer.digest, layer.size, oci.OCI_MANIFEST)])
    client.put_manifest("base/tiny", "1", manifest.to_bytes(), manifest.media_type)
    assert {"user": "pusher", "scopes": ["repository:base/tiny:pull,push"], "service": "cloudml-test-registry"} in requests

    runtime = layers.layer_from_tree(runtime_tree(tmp_path / "rt"), tmp_path / "blobs", prefix="opt/app")
    result = builder.build(f"{host}/base/tiny:1", [runtime], SETTINGS, f"{host}/cloudml/runtime:1", base_credentials=pusher, target_credentials=pusher)
    assert builder.exists(f"{host}/cloudml/runtime:1", credentials=Credentials("reader", "r3ad")) == result.digest
    assert [b.action for b in result.blobs] == ["mounted", "uploaded", "uploaded"]  # the base layer linked from base/tiny, not re-sent

    with pytest.raises(RegistryAuthError) as denied:
        reader = Credentials("reader", "r3ad")
        builder.build(f"{host}/base/tiny:1", [runtime], SETTINGS, f"{host}/cloudml/other:2", base_credentials=reader, target_credentials=reader)
    assert denied.value.message.startswith("denied:") and "permission" in (denied.value.hint or "")
    with pytest.raises(RegistryAuthError) as wrong:
        builder.exists(f"{host}/cloudml/runtime:1", credentials=Credentials("pusher", "nope"))
    assert "refused the credentials given" in wrong.value.message
    with pytest.raises(RegistryAuthError) as anonymous:
        builder.exists(f"{host}/cloudml/runtime:1")
    assert "anonymous" in anonymous.value.message and wrong.value.exit_code == ExitCode.DEPLOY_FAILED


# -- the dependency layer from target-platform wheels ---------------------------------------------


def _wheel(
    house: Path, name: str, version: str, tag: str, files: dict[str, str], requires: tuple[str, ...] = (), scripts: dict[str, str] | None = None
) -> Path:
    """A minimal valid wheel, written by hand (no network, no build backend)."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: cloudml-test\nRoot-Is-Purelib: {'true' if tag.endswith('none-any') else 'false'}\nTag: {tag}\n",
    }
    if scripts:
        meta[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    everything = {**files, **meta}
    digest = lambda text: "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record = "".join(f"{path},{digest(text)},{len(text.encode())}\n" for path, text in everything.items()) + f"{info}/RECORD,,\n"
    path = house / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in {**everything, f"{info}/RECORD": record}.items():
            zf.writestr(member, text)
    return path


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    house = tmp_path_factory.mktemp("wheelhouse")
    _wheel(house, "tinylib", "1.0", "py3-none-any", {"tinylib/__init__.py": "from tinydep import VALUE\n"}, requires=("tinydep>=2",))
    _wheel(house, "tinydep", "2.0", "py3-none-any", {"tinydep/__init__.py": "VALUE = 2\ndef main():\n    print(VALUE)\n"}, scripts={"tinydep": "tinydep:main"})
    _wheel(house, "tinydep", "1.0", "py3-none-any", {"tinydep/__init__.py": "VALUE = 1\n"})
    _wheel(house, "nativepkg", "1.0", "cp311-cp311-manylinux_2_28_x86_64", {"nativepkg/__init__.py": "NATIVE = True\n"})
    # Most native wheels (numpy, onnxruntime, tensorflow) carry an older manylinux tag than the newest allowed.
    _wheel(house, "oldglibc", "1.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", {"oldglibc/__init__.py": ""})
    _wheel(house, "maconly", "1.0", "cp311-cp311-macosx_11_0_arm64", {"maconly/__init__.py": ""})
    return house


def test_the_dependency_layer_installs_target_wheels_reproducibly_without_host_paths(wheelhouse, tmp_path):
    import gzip
    import tarfile

    from cloudml.images import wheels

    make = lambda blobs: wheels.dependency_layer(["tinylib", "nativepkg==1.0", "oldglibc"], tmp_path / blobs, find_links=[wheelhouse], no_index=True)
    first, second = make("one"), make("two")
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    assert first.comment == "dependencies nativepkg==1.0 oldglibc==1.0 tinydep==2.0 tinylib==1.0"
    with tarfile.open(first.path) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "root", filter="data")
    assert "opt/cloudml/deps/tinylib/__init__.py" in names and "opt/cloudml/deps/nativepkg/__init__.py" in names
    assert not any("/bin/" in n or n.endswith("/bin") or "__pycache__" in n or n.endswith("direct_url.json") for n in names)
    raw = gzip.decompress(first.path.read_bytes())
    assert str(tmp_path).encode() not in raw and sys.prefix.encode() not in raw
    # What was installed imports from the layer alone, with its dependency resolved to 2.0.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "root" / "opt/cloudml/deps")}
    code = "import tinylib, nativepkg; print(tinylib.VALUE, nativepkg.NATIVE)"
    run = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "2 True", run.stderr


def test_a_package_without_a_wheel_for_the_target_platform_is_a_clear_error(wheelhouse, tmp_path):
    from cloudml.images import wheels

    with pytest.raises(Exception, match="maconly") as info:
        wheels.dependency_layer(["maconly==1.0"], tmp_path, find_links=[wheelhouse], no_index=True)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "no wheel for linux/amd64" in (info.value.hint or "")


def test_a_root_file_system_keeps_absolute_links_but_not_links_above_its_root(tmp_path):
    import tarfile

    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_text("#!\n")
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "etc").mkdir()
    (root / "etc/python").symlink_to("/usr/bin/python3")  # a host path to the host, a path inside the image to the image
    with pytest.raises(Exception, match="outside"):
        layers.entries_from_tree(root)
    entries = layers.entries_from_tree(root, rootfs=True) + [layers.Entry("tmp", kind="dir", mode=0o1777)]
    with tarfile.open(layers.build_layer(entries, tmp_path / "blobs").path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["etc/python"].linkname == "/usr/bin/python3" and members["usr/bin/python3"].linkname == "python3.11"
    assert oct(members["tmp"].mode) == "0o1777"
    (root / "usr/bin/escape").symlink_to("../../../etc/shadow")
    with pytest.raises(Exception, match="outside"):
        layers.entries_from_tree(root, rootfs=True)
