"""Client mistakes against a real server: a 4xx with a JSON error that says what was wrong,
never a 500, and the server keeps answering correctly afterwards. Also `cloudml serve`
itself: its default bind address, body limits, and a model whose warm-up fails."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from conftest import endpoint, rows_close

from cloudml.errors import ExitCode

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MAX_BODY = 10_000
CNN_EXPECTED = {"pixels": "float32[784] per instance"}


def assert_error(response: httpx.Response, status: int, *fragments: str) -> dict:
    """`status`, a JSON body, and an "error" that mentions every fragment (case-insensitive)."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url} -> {response.status_code} (wanted {status}): {response.text[:500]}")
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    for fragment in fragments:
        assert fragment.lower() in body["error"].lower(), f"{fragment!r} not in {body['error']!r}"
    return body


def assert_still_serves(client: httpx.Client, url: str, model, reference) -> None:
    response = client.post(url + "/invocations", json={"instances": model.instances})
    assert response.status_code == 200, response.text[:500]
    served = response.json()["predictions"]
    assert len(served) == len(reference)
    for got, want in zip(served, reference):
        assert np.shape(got) == want.shape and np.allclose(got, want, atol=1e-5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_exit_or_ping(proc: subprocess.Popen, url: str, timeout: float) -> int | None:
    """Poll /ping until it answers 200 (returns 200) or the process exits (returns None)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, trust_env=False) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            try:
                if c.get(url + "/ping").status_code == 200:
                    return 200
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"neither a healthy /ping nor an exit within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start_serve(model: Path, tmp: Path, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudml", "serve", str(model), "--port", str(port), "--package-dir", str(tmp / "package"), *extra],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc, f"http://127.0.0.1:{port}", log_path


# --- bad requests to the deployed CNN -------------------------------------------------------------
def _cnn_cases():
    good = [0.5] * 784
    json_ct = {"Content-Type": "application/json"}
    return [
        # id, method, path, request kwargs, status, fragments the error must mention
        ("malformed-json", "POST", "/invocations", {"content": b'{"instances": [[0.1, 0.2', "headers": json_ct}, 400, ["not valid JSON"]),
        ("wrong-shape-783", "POST", "/invocations", {"json": {"instances": [[0.5] * 783]}}, 400, ["shape [1, 783]", "784"]),
        ("wrong-shape-nested", "POST", "/invocations", {"json": {"instances": [[good]]}}, 400, ["shape", "784"]),
        ("wrong-shape-unbatched", "POST", "/invocations", {"json": {"instances": good}}, 400, ["shape [784]", "[?, 784]"]),
        ("strings-for-floats", "POST", "/invocations", {"json": {"instances": [["0.5"] * 784]}}, 400, ["expected numbers", "got strings"]),
        ("unknown-input", "POST", "/invocations", {"json": {"instances": [{"bogus": good}]}}, 400, ["unknown input", "'bogus'", "'pixels'"]),
        ("missing-input", "POST", "/invocations", {"json": {"instances": [{}]}}, 400, ["missing input", "'pixels'"]),
        ("empty-batch", "POST", "/invocations", {"json": {"instances": []}}, 400, ["empty batch"]),
        ("empty-bare-list", "POST", "/invocations", {"json": []}, 400, ["empty batch"]),
        ("instances-not-a-list", "POST", "/invocations", {"json": {"instances": {"pixels": good}}}, 400, ['"instances" must be a JSON list']),
        ("no-instances-key", "POST", "/invocations", {"json": {"rows": [good]}}, 400, ['{"instances": [...]}']),
        ("text-plain", "POST", "/invocations", {"content": b"0.5,0.5", "headers": {"Content-Type": "text/plain"}}, 415,
         ["unsupported Content-Type 'text/plain'", "application/json"]),
        ("xml", "POST", "/invocations", {"content": b"<instances/>", "headers": {"Content-Type": "application/xml"}}, 415,
         ["unsupported Content-Type 'application/xml'"]),
        ("xml-vertex", "POST", "/predict", {"content": b"<instances/>", "headers": {"Content-Type": "application/xml"}}, 415, ["unsupported Content-Type"]),
        ("xml-tfs", "POST", "/v1/models/seed-cnn:predict", {"content": b"<instances/>", "headers": {"Content-Type": "application/xml"}}, 415,
         ["unsupported Content-Type"]),
        ("ragged-instances", "POST", "/invocations", {"json": {"instances": [good, [0.5] * 700]}}, 400, ["instance 1", "shape [700]", "784"]),
        ("ragged-nested", "POST", "/invocations", {"json": {"instances": [[0.5, [0.5]] + [0.5] * 782]}}, 400, ["instance 0", "ragged"]),
        ("ragged-columns", "POST", "/v1/models/seed-cnn:predict", {"json": {"inputs": [good, [0.5] * 700]}}, 400, ["ragged"]),
        ("columns-unknown-input", "POST", "/v1/models/seed-cnn:predict", {"json": {"inputs": {"bogus": [good]}}}, 400, ["unknown input", "'bogus'"]),
        ("columns-missing-input", "POST", "/v1/models/seed-cnn:predict", {"json": {"inputs": {}}}, 400, ["missing input", "'pixels'"]),
        ("wrong-signature", "POST", "/v1/models/seed-cnn:predict", {"json": {"signature_name": "predict_proba", "instances": [good]}}, 400,
         ["signature 'predict_proba'", "serving_default"]),
        ("empty-body", "POST", "/invocations", {"content": b"", "headers": json_ct}, 400, ["body is empty"]),
        ("empty-body-vertex", "POST", "/predict", {"content": b"", "headers": json_ct}, 400, ["body is empty"]),
        ("empty-body-csv", "POST", "/invocations", {"content": b"", "headers": {"Content-Type": "text/csv"}}, 400, ["body is empty"]),
        ("csv-not-a-number", "POST", "/invocations", {"content": b"0.5,abc\n", "headers": {"Content-Type": "text/csv"}}, 400, ["CSV row 1", "not a number"]),
        ("csv-short-row", "POST", "/invocations", {"content": b"0.5,0.5\n", "headers": {"Content-Type": "text/csv"}}, 400, ["shape [1, 2]", "784"]),
        ("jsonlines-bad-line", "POST", "/invocations", {"content": json.dumps(good).encode() + b"\n[0.5,\n",
                                                        "headers": {"Content-Type": "application/jsonlines"}}, 400, ["line 2", "not valid JSON"]),
        ("accept-csv", "POST", "/invocations", {"json": {"instances": [good]}, "headers": {"Accept": "text/csv"}}, 406, ["Accept 'text/csv'",
                                                                                                                         "application/json"]),
        ("accept-json-q0", "POST", "/invocations", {"json": {"instances": [good]}, "headers": {"Accept": "text/csv, application/json;q=0"}}, 406, ["Accept"]),
        ("get-invocations", "GET", "/invocations", {}, 405, ["method GET is not allowed on /invocations"]),
        ("put-score", "PUT", "/score", {"json": {"data": [good]}}, 405, ["method PUT is not allowed on /score"]),
        ("unknown-route", "GET", "/no/such/route", {}, 404, ["no route /no/such/route"]),
        ("unknown-route-post", "POST", "/v2/models/seed-cnn/infer", {"json": {"instances": [good]}}, 404, ["no route"]),
        ("wrong-model", "POST", "/v1/models/other:predict", {"json": {"instances": [good]}}, 404, ["model 'other' is not served here", "'seed-cnn'"]),
        ("wrong-version", "POST", "/v1/models/seed-cnn/versions/7:predict", {"json": {"instances": [good]}}, 404, ["version 7", "version 1 is"]),
    ]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "fragments"), [c[1:] for c in _cnn_cases()], ids=[c[0] for c in _cnn_cases()])
def test_cnn_client_mistakes(deployed, seed_models, references, client, method, path, kwargs, status, fragments):
    url = endpoint(deployed, "cnn")
    assert_error(client.request(method, url + path, **kwargs), status, *fragments)
    assert_still_serves(client, url, seed_models["cnn"], references["cnn"])


def test_errors_name_the_expected_input(deployed, client):
    """Schema mistakes also say, machine-readably, what the model takes."""
    url = endpoint(deployed, "cnn")
    for payload in ({"instances": [{"bogus": [0.5] * 784}]}, {"instances": [{}]}, {"instances": []}):
        body = assert_error(client.post(url + "/invocations", json=payload), 400)
        assert body["expected"] == CNN_EXPECTED


def test_method_not_allowed_names_the_allowed_method(deployed, client):
    response = client.get(endpoint(deployed, "cnn") + "/invocations")
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"


# --- bad requests to the deployed LSTM ------------------------------------------------------------
def _lstm_cases():
    return [
        ("fractional-tokens", "/invocations", {"instances": [[12, 3.5, 7]]}, ["expected integers", "int64", "non-integer"]),
        ("fractional-tokens-mixed-lengths", "/invocations", {"instances": [[12, 3], [4.25]]}, ["instance 1", "expected integers"]),
        ("string-tokens", "/invocations", {"instances": [["goal", "match"]]}, ["expected numbers", "got strings"]),
        # The seed LSTM is served by ONNX Runtime (its conversion verified), which refuses the ids
        # TensorFlow refuses: Keras's Embedding takes [-10000, 10000) (it wraps a negative id once),
        # where ONNX's Gather alone would also take [-20000, -10000).
        ("out-of-vocabulary", "/invocations", {"instances": [[12, 10000]]},
         ["the model rejected the input: input 'tokens' holds 10000 at [0, 1], outside [-10000, 10000)"]),
        ("out-of-vocabulary-tfs", "/v1/models/seed-lstm:predict", {"instances": [[5], [12, 3, 123456]]},
         ["model rejected the input", "input 'tokens' holds 123456", "outside [-10000, 10000)"]),
        ("negative-beyond-the-table", "/invocations", {"instances": [[12, -10001]]},
         ["the model rejected the input: input 'tokens' holds -10001 at [0, 1], outside [-10000, 10000)"]),
        ("negative-beyond-the-table-tfs", "/v1/models/seed-lstm:predict", {"instances": [[5], [-20000, 3]]},
         ["model rejected the input", "input 'tokens' holds -20000", "outside [-10000, 10000)"]),
        ("beyond-int64", "/invocations", {"instances": [[12, 2**63]]}, ["do not fit in int64"]),
        ("ragged-nesting", "/invocations", {"instances": [[12, 3], [4, [5]]]}, ["instance 1", "ragged"]),
        ("ragged-columns", "/v1/models/seed-lstm:predict", {"inputs": [[12, 3], [4]]}, ["ragged", "'tokens'"]),
        ("scalar-instance", "/invocations", {"instances": [[12, 3], 7]}, ["instance 1", "shape []"]),
        ("unknown-input", "/invocations", {"instances": [{"tokens": [1, 2], "mask": [1, 1]}]}, ["unknown input", "'mask'", "'tokens'"]),
        ("empty-sequence", "/invocations", {"instances": [[]]}, ["model rejected the input"]),
    ]


@pytest.mark.parametrize(("path", "payload", "fragments"), [c[1:] for c in _lstm_cases()], ids=[c[0] for c in _lstm_cases()])
def test_lstm_client_mistakes(deployed, seed_models, references, client, path, payload, fragments):
    url = endpoint(deployed, "lstm")
    body = assert_error(client.post(url + path, json=payload), 400, *fragments)
    # The model's own complaint comes without TensorFlow's boilerplate and node names.
    assert "Graph execution error" not in body["error"] and "[[" not in body["error"]
    assert_still_serves(client, url, seed_models["lstm"], references["lstm"])


def test_lstm_answers_the_ids_keras_takes_as_keras_does(deployed, seed_models, client):
    """At the table's edges, negative ids included (Keras counts -1 as the last row), the
    ONNX-served LSTM answers what the Keras model answers in-process."""
    edges = [[12, 0], [12, 9999], [12, -1], [12, -10000]]
    response = client.post(endpoint(deployed, "lstm") + "/invocations", json={"instances": edges})
    assert response.status_code == 200, response.text
    assert rows_close(response.json()["predictions"], seed_models["lstm"].reference(edges))


def test_lstm_csv_with_fractional_token(deployed, seed_models, references, client):
    url = endpoint(deployed, "lstm")
    response = client.post(url + "/invocations", content=b"12,3,7\n4,5.5\n", headers={"Content-Type": "text/csv"})
    assert_error(response, 400, "instance 1", "expected integers")
    assert_still_serves(client, url, seed_models["lstm"], references["lstm"])


# --- access log ---------------------------------------------------------------------------------------
def _read_until(path: Path, pattern: re.Pattern, count: int, timeout: float = 10.0) -> list[str]:
    """Lines of `path` matching `pattern`, once at least `count` are there (the line is written
    just after the response is sent, so it may trail the client by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in path.read_text(errors="replace").splitlines() if pattern.search(line)]
        if len(lines) >= count or time.monotonic() > deadline:
            time.sleep(0.2)  # and then no more than `count`
            return [line for line in path.read_text(errors="replace").splitlines() if pattern.search(line)]
        time.sleep(0.05)


def test_access_log_has_one_line_per_request_with_latency(deployed, seed_models, client):
    url = endpoint(deployed, "cnn")
    log = Path(deployed["cnn"]["details"]["log"])
    marker = uuid.uuid4().hex
    requests = [("GET", f"/missing-{marker}-a", 404), ("POST", f"/missing-{marker}-b", 404), ("GET", f"/v1/models/m{marker}", 404)]
    for method, path, status in requests:
        assert client.request(method, url + path).status_code == status
    for method, path, status in requests:
        pattern = re.compile(rf'"{method} {re.escape(path)}" {status} (\d+\.\d)ms$')
        lines = _read_until(log, pattern, 1)
        assert len(lines) == 1, f"expected one access line for {method} {path}, got {lines}"
        assert "cloudml.serving.access" in lines[0] and "127.0.0.1" in lines[0]

    # Good and bad predictions are logged alike: one line each, with the status sent.
    ok = re.compile(r'"POST /invocations" 200 \d+\.\dms$')
    rejected = re.compile(r'"POST /invocations" 400 \d+\.\dms$')
    before_ok, before_rejected = len(_read_until(log, ok, 0, timeout=0)), len(_read_until(log, rejected, 0, timeout=0))
    for _ in range(3):
        assert client.post(url + "/invocations", json={"instances": seed_models["cnn"].instances}).status_code == 200
    assert client.post(url + "/invocations", json={"instances": [[1.0] * 3]}).status_code == 400
    assert len(_read_until(log, ok, before_ok + 3)) == before_ok + 3
    assert len(_read_until(log, rejected, before_rejected + 1)) == before_rejected + 1


# --- `cloudml serve` with a small body limit ----------------------------------------------------------
@pytest.fixture(scope="module")
def small_server(seed_models, tmp_path_factory):
    """`cloudml serve` for the CNN with --max-body-bytes 10000, on a free port, default host."""
    proc, url, log_path = start_serve(seed_models["cnn"].path, tmp_path_factory.mktemp("small-server"), "--name", "seed-cnn", "--max-body-bytes", str(MAX_BODY))
    try:
        assert wait_for_exit_or_ping(proc, url, timeout=180) == 200, f"server exited with {proc.returncode}:\n{log_path.read_text()}"
        yield {"url": url, "log": log_path, "proc": proc}
    finally:
        stop(proc)


def test_serve_binds_loopback_by_default(small_server):
    port = urlsplit(small_server["url"]).port
    log = small_server["log"].read_text()
    assert re.search(rf"serving seed-cnn \(version 1\) on http://127\.0\.0\.1:{port}\b", log), log
    tcp = Path("/proc/net/tcp")
    if tcp.exists():  # Linux: the listening socket is on 127.0.0.1 only, not 0.0.0.0
        listening = [line.split()[1] for line in tcp.read_text().splitlines()[1:] if line.split()[3] == "0A"]
        ours = [addr for addr in listening if int(addr.split(":")[1], 16) == port]
        assert ours == [f"0100007F:{port:04X}"], ours


def test_oversized_body_with_content_length(small_server, seed_models, references, client):
    url = small_server["url"]
    body = json.dumps({"instances": seed_models["cnn"].instances}).encode()
    assert len(body) > MAX_BODY
    response = client.post(url + "/invocations", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 413, f"of {len(body)} bytes exceeds the limit of {MAX_BODY} bytes", "fewer instances")
    assert_still_serves_small(client, url, seed_models["cnn"], references["cnn"])


@pytest.mark.parametrize("path", ["/invocations", "/predict", "/score", "/v1/models/seed-cnn:predict"])
def test_oversized_chunked_body(small_server, seed_models, references, client, path):
    """No Content-Length to refuse up front: the server counts while reading and stops at the limit."""
    url = small_server["url"]
    body = json.dumps({"instances": seed_models["cnn"].instances}).encode()

    def chunks():
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    response = client.post(url + path, content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, f"exceeds the limit of {MAX_BODY} bytes")
    assert_still_serves_small(client, url, seed_models["cnn"], references["cnn"])


def test_chunked_body_under_the_limit_is_served(small_server, seed_models, references, client):
    url = small_server["url"]
    body = json.dumps({"instances": seed_models["cnn"].instances[:1]}).encode()
    assert len(body) < MAX_BODY
    response = client.post(url + "/invocations", content=iter([body[:100], body[100:]]), headers={"Content-Type": "application/json"})
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200
    assert np.allclose(response.json()["predictions"], references["cnn"][:1], atol=1e-5)


def assert_still_serves_small(client, url, model, reference) -> None:
    """The good request that fits under the small server's limit: one instance."""
    response = client.post(url + "/invocations", json={"instances": model.instances[:1]})
    assert response.status_code == 200, response.text[:500]
    assert np.allclose(response.json()["predictions"], reference[:1], atol=1e-5)


# --- a model whose warm-up fails ----------------------------------------------------------------------
def _failing_savedmodel(path: Path) -> None:
    import tensorflow as tf

    class AlwaysFails(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            # Data-dependent, so it fails when called, not when traced and saved.
            tf.debugging.assert_equal(tf.reduce_sum(x) * 0.0, 1.0, message="this model always fails")
            return {"y": x * 2.0}

    module = AlwaysFails()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_serve_exits_when_warm_up_fails(tmp_path):
    model = tmp_path / "always-fails"
    _failing_savedmodel(model)
    error_file = tmp_path / "startup-error.json"
    proc, url, log_path = start_serve(model, tmp_path, "--error-file", str(error_file))
    try:
        # It must exit without ever answering /ping with 200.
        assert wait_for_exit_or_ping(proc, url, timeout=180) is None, log_path.read_text()
        proc.wait(timeout=30)
    finally:
        stop(proc)
    log = log_path.read_text()
    assert proc.returncode == ExitCode.MODEL, log
    assert "the model could not be loaded and warmed up: InvalidArgumentError: assertion failed: [this model always fails]" in log
    info = json.loads(error_file.read_text())
    assert info["error"] == "ModelError" and info["exit_code"] == ExitCode.MODEL
    assert "this model always fails" in info["message"] and "Graph execution error" not in info["message"]
