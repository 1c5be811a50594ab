"""A client for the OCI distribution API (what ECR, Artifact Registry, ACR and Docker Hub speak).

Standard library only. Authentication follows the registry's challenge: a 401 with
`WWW-Authenticate: Bearer realm=...,service=...,scope=...` is answered by fetching a token from
the realm (anonymously, or with the caller's username/password as basic auth), one with `Basic`
by sending the caller's username/password. A caller may also give a ready bearer token. Cloud
registries fit these: ECR takes basic `AWS:<GetAuthorizationToken password>`, Artifact Registry
basic `oauth2accesstoken:<access token>` at its token realm, ACR basic
`00000000-0000-0000-0000-000000000000:<refresh token>` at its token realm.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode, urljoin, urlsplit

from cloudml import __version__
from cloudml.errors import ConfigError
from cloudml.images.errors import ImageNotFound, RegistryAuthError, RegistryError, RegistryUnreachable
from cloudml.images.oci import ACCEPT, INDEXES, digest_of, select_platform

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_REDIRECTS = (301, 302, 303, 307, 308)
# Registries log it, and the emulators record the calls of cloudml's by it.
_USER_AGENT = f"cloudml/{__version__}"
# Configs and manifests are small; anything bigger read into memory is not one.
MAX_DOCUMENT = 16 << 20


@dataclass(frozen=True)
class Reference:
    """host[:port]/repository[:tag][@sha256:...]; no host means Docker Hub (`python:3.11-slim`)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        bad = lambda why: ConfigError(
            f"{text!r} is not an image reference: {why}",
            hint="write it as HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/cloudml/runtime:1.0",
        )
        rest, _, digest = text.strip().partition("@")
        if digest and not _DIGEST.match(digest):
            raise bad(f"the digest {digest!r} is not sha256:<64 hex digits>")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DOCKER_HUB, rest
        name, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
        if colon and not _TAG.match(tag):
            raise bad(f"the tag {tag!r} is not valid")
        if registry == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"
        if not _REPOSITORY.match(name):
            raise bad(f"the repository {name!r} is not valid (lowercase letters, digits and . _ - separators)")
        return cls(registry, name, tag or None, digest or None)

    @property
    def reference(self) -> str:
        """What the manifest endpoints take: the digest when pinned, else the tag (default 'latest')."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Credentials:
    """Basic username/password (also used at a token realm), or a ready bearer token."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or traceback
    token: str | None = field(default=None, repr=False)

    def basic(self) -> str | None:
        if self.username is None:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()


@dataclass(frozen=True)
class RegistryTarget:
    """Where a cloud's images go: `f"{host}/{repository}:{tag}"`, pushed with `credentials`."""

    host: str
    repository: str
    credentials: Credentials
    plain_http: bool


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _merge_scopes(scopes: list[str]) -> list[str]:
    """One scope per resource with the union of its actions ('repository:a:push,pull' and ours
    'repository:a:pull,push' are one), first-seen order."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        merged.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return [f"{resource}:{','.join(sorted(actions))}" for resource, actions in merged.items()]


def _is_loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    return name in ("localhost", "::1") or name.startswith("127.")


class RegistryClient:
    """One registry. `plain_http` None means plain HTTP for loopback addresses (as Docker does), HTTPS otherwise."""

    def __init__(self, registry: str, *, credentials: Credentials | None = None, plain_http: bool | None = None, timeout: float = 120.0):
        self.registry = registry
        self.host = _DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.scheme = "http" if (plain_http if plain_http is not None else _is_loopback(self.host)) else "https"
        self.base_url = f"{self.scheme}://{self.host}"
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False  # the registry challenged with Basic

    # -- transport ------------------------------------------------------------------------------

    @contextmanager
    def _open(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None) -> Iterator[http.client.HTTPResponse]:
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "", parts.port, timeout=self.timeout, blocksize=1 << 20)
        try:
            try:
                conn.request(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=body,
                             headers={"User-Agent": _USER_AGENT, **headers})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:  # refused, DNS, TLS, timeout, not HTTP
                raise self._unreachable(parts.scheme, parts.netloc, exc) from None
            try:
                yield resp
            except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:  # the answer was cut short
                raise self._unreachable(parts.scheme, parts.netloc, exc) from None
        finally:
            conn.close()

    @staticmethod
    def _unreachable(scheme: str, netloc: str, exc: BaseException) -> RegistryUnreachable:
        hint = "check the registry address and that it is running"
        if scheme == "https":
            hint += "; a registry without TLS needs plain_http=True"
        return RegistryUnreachable(f"cannot reach the registry at {scheme}://{netloc} ({type(exc).__name__}: {exc})", hint=hint)

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self.credentials.token:
            return {"Authorization": f"Bearer {self.credentials.token}"}
        # A pull,push token for the repository serves its pulls too.
        token = self._tokens.get(scope) or self._tokens.get(scope.rsplit(":", 1)[0] + ":pull,push")
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credentials.basic():
            return {"Authorization": self.credentials.basic() or ""}
        return {}

    def _fetch_token(self, params: dict[str, str], scope: str) -> None:
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{self.registry} sent a Bearer challenge without a realm", hint="the registry's auth configuration is broken")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in _merge_scopes([scope, *(params.get("scope") or "").split()])]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Accept": "application/json"}
        if self.credentials.basic():
            headers["Authorization"] = self.credentials.basic() or ""
        with self._open("GET", url, headers, None) as resp:
            body = resp.read(MAX_DOCUMENT)
            status = resp.status
        if status in (401, 403):
            raise RegistryAuthError(
                f"the token service of {self.registry} refused " + ("the credentials given" if self.credentials.username else "an anonymous request"),
                status=status,
                hint="check the registry username/password (or log in again: cloud registry tokens expire)"
                if self.credentials.username
                else "this registry needs credentials; pass them to the client",
            )
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if status != 200 or not token:
            raise RegistryAuthError(
                f"the token service of {self.registry} answered {status} without a token", status=status, hint="the registry's auth service is failing"
            )
        self._tokens[scope] = str(token)

    def request(
        self,
        method: str,
        url: str,
        *,
        repository: str,
        push: bool = False,
        headers: dict[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        expect: tuple[int, ...] = (200,),
        dest: BinaryIO | None = None,
    ) -> Response:
        """One API call, answering the auth challenge and following redirects. With `dest` the
        body is streamed into it (the Response's body is then empty). Errors become RegistryError."""
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        url = url if "://" in url else self.base_url + url
        sent_auth = fetched = False
        for _ in range(8):
            same_host = urlsplit(url).netloc == self.host
            send = {**(headers or {}), **(self._auth_header(scope) if same_host else {})}
            sent_auth = sent_auth or "Authorization" in send
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            with self._open(method, url, send, body) as resp:
                status, got = resp.status, {k.lower(): v for k, v in resp.getheaders()}
                if status in expect and dest is not None and method != "HEAD":
                    while chunk := resp.read(1 << 20):
                        dest.write(chunk)
                    return Response(status, got, b"")
                data = b"" if method == "HEAD" else resp.read(MAX_DOCUMENT)
            if status in _REDIRECTS and method in ("GET", "HEAD") and got.get("location"):
                url = urljoin(url, got["location"])
                continue
            if status == 401 and same_host and not self.credentials.token:
                scheme, params = _challenge(got.get("www-authenticate", ""))
                if scheme == "bearer" and not fetched:
                    # No token for this scope yet, or one that expired during a long push: fetch one, once per call.
                    fetched = True
                    self._fetch_token(params, scope)
                    continue
                if scheme == "basic" and not self._basic and self.credentials.basic():
                    self._basic = True
                    continue
            if status in expect:
                return Response(status, got, data)
            challenge = _challenge(got.get("www-authenticate", ""))[1].get("error", "") if status == 401 else ""
            raise self._error(method, url, status, data, repository, authenticated=sent_auth, insufficient=challenge == "insufficient_scope")
        raise RegistryError(f"{method} {url}: too many redirects or auth rounds", hint="the registry keeps redirecting or re-challenging")

    def _error(self, method: str, url: str, status: int, body: bytes, repository: str, *, authenticated: bool, insufficient: bool = False) -> RegistryError:
        try:
            first = (json.loads(body).get("errors") or [{}])[0]
            code, detail = str(first.get("code") or ""), str(first.get("message") or "")
        except (ValueError, AttributeError, IndexError):
            code, detail = "", body[:200].decode(errors="replace").strip()
        what = (
            f"{self.registry}/{repository}: {method} {urlsplit(url).path} answered {status}" + (f" {code}" if code else "") + (f" ({detail})" if detail else "")
        )
        if status == 403 or insufficient:  # a token without the actions asked for is a 401 "insufficient_scope"
            return RegistryAuthError(
                f"denied: {what}",
                status=status,
                code=code or "DENIED",
                hint="the credentials lack permission for this repository (pull, or push to create images)",
            )
        if status == 401:
            hint = (
                "the credentials were refused; log in again (cloud registry tokens expire)"
                if authenticated
                else "this registry needs credentials; pass them to the client"
            )
            return RegistryAuthError(f"unauthorized: {what}", status=status, code=code or "UNAUTHORIZED", hint=hint)
        if status == 404:
            return ImageNotFound(
                f"not found: {what}",
                status=status,
                code=code or "NOT_FOUND",
                hint="check the image name, tag or digest, and that it was pushed to this registry",
            )
        return RegistryError(what, status=status, code=code or None, hint="the registry refused the request; its message says why")

    # -- API ------------------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: raises RegistryUnreachable when nothing answers, RegistryError when what answers is not a registry."""
        with self._open("GET", self.base_url + "/v2/", {}, None) as resp:
            resp.read(MAX_DOCUMENT)
            status, version = resp.status, resp.getheader("Docker-Distribution-API-Version", "")
        if status not in (200, 401) and not version:
            raise RegistryError(f"{self.base_url}/v2/ answered {status}: not an OCI registry", status=status, hint="check the registry address")

    def blob_exists(self, repository: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository=repository, expect=(200, 404))
        return resp.status == 200

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob it holds in `from_repository` into `repository` (no bytes
        sent). False when it will not (it then opened an upload session, which is cancelled)."""
        start = f"/v2/{repository}/blobs/uploads/?{urlencode({'mount': digest, 'from': from_repository})}"
        resp = self.request("POST", start, repository=repository, push=True, headers={"Content-Length": "0"}, body=b"", expect=(201, 202))
        if resp.status == 201:
            return True
        if resp.headers.get("location"):
            try:
                self.request("DELETE", urljoin(self.base_url + start, resp.headers["location"]), repository=repository, push=True, expect=(204, 404))
            except RegistryError:
                pass  # an abandoned session expires on its own
        return False

    def push_blob(self, repository: str, digest: str, size: int, source: Path | bytes) -> None:
        """Upload a blob monolithically: POST an upload session, then PUT the bytes to its Location ?digest=."""
        start = f"/v2/{repository}/blobs/uploads/"
        resp = self.request("POST", start, repository=repository, push=True, headers={"Content-Length": "0"}, body=b"", expect=(202,))
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{self.registry}/{repository}: the upload start gave no Location", hint="the registry does not follow the distribution API")
        url = urljoin(self.base_url + start, location)
        url += ("&" if "?" in url else "?") + f"digest={quote(digest)}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(source, bytes):
            self.request("PUT", url, repository=repository, push=True, headers=headers, body=source, expect=(201, 204))
        else:
            with open(source, "rb") as fh:
                self.request("PUT", url, repository=repository, push=True, headers=headers, body=fh, expect=(201, 204))

    def pull_blob(self, repository: str, digest: str, dest: Path) -> Path:
        """Stream a blob into `dest`, checking its digest (a mismatch deletes the file and raises)."""
        partial = dest.with_name(dest.name + ".partial")
        with open(partial, "wb") as fh:
            hashing = _HashingWriter(fh)
            self.request("GET", f"/v2/{repository}/blobs/{digest}", repository=repository, dest=hashing)  # type: ignore[arg-type]
        if hashing.digest() != digest:
            partial.unlink()
            raise RegistryError(
                f"{self.registry}/{repository}: blob {digest} arrived with digest {hashing.digest()}", hint="retry; the registry or a proxy corrupted it"
            )
        partial.replace(dest)
        return dest

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A small blob (an image config) in memory, digest checked."""
        data = self.request("GET", f"/v2/{repository}/blobs/{digest}", repository=repository).body
        if digest_of(data) != digest:
            raise RegistryError(
                f"{self.registry}/{repository}: blob {digest} arrived with digest {digest_of(data)}", hint="retry; the registry or a proxy corrupted it"
            )
        return data

    def get_manifest(self, repository: str, reference: str, *, accept: str = ACCEPT) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index by tag or digest."""
        resp = self.request("GET", f"/v2/{repository}/manifests/{reference}", repository=repository, headers={"Accept": accept})
        digest = digest_of(resp.body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(
                f"{self.registry}/{repository}: manifest {reference} arrived with digest {digest}", hint="retry; the registry or a proxy altered it"
            )
        media_type = (resp.headers.get("content-type") or "").split(";")[0].strip()
        try:
            media_type = json.loads(resp.body).get("mediaType") or media_type
        except (ValueError, AttributeError):
            raise RegistryError(
                f"{self.registry}/{repository}:{reference}: the manifest is not JSON", hint="the registry returned something other than a manifest"
            ) from None
        return resp.body, media_type, digest

    def get_image_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """Like get_manifest, with an index resolved to its linux/amd64 image."""
        data, media_type, digest = self.get_manifest(repository, reference)
        if media_type in INDEXES:
            chosen = select_platform(data)
            data, media_type, digest = self.get_manifest(repository, chosen.digest)
        return data, media_type, digest

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest names, or None when the registry has no such manifest."""
        resp = self.request("HEAD", f"/v2/{repository}/manifests/{reference}", repository=repository, headers={"Accept": ACCEPT}, expect=(200, 404))
        if resp.status == 404:
            return None
        return resp.headers.get("docker-content-digest") or self.get_manifest(repository, reference)[2]

    def list_tags(self, repository: str, *, page_size: int = 1000) -> list[str]:
        """Every tag of `repository` (GET /v2/<name>/tags/list, following the Link header's next
        pages); empty when the registry has no such repository."""
        tags: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list?{urlencode({'n': page_size})}"
        while url:
            resp = self.request("GET", url, repository=repository, headers={"Accept": "application/json"}, expect=(200, 404))
            if resp.status == 404:
                return tags
            try:
                tags += [str(t) for t in json.loads(resp.body).get("tags") or []]
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.registry}/{repository}: the tag list is not JSON",
                                    hint="the registry does not follow the distribution API") from None
            found = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', resp.headers.get("link", ""))
            url = urljoin(self.base_url + "/", found.group(1)) if found else None
        return tags

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        resp = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            push=True,
            headers={"Content-Type": media_type},
            body=data,
            expect=(201, 200),
        )
        digest = digest_of(data)
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryError(
                f"{self.registry}/{repository}: the registry stored the manifest as {stored}, not {digest}", hint="the registry rewrote the manifest"
            )
        return digest


class _HashingWriter:
    def __init__(self, sink: BinaryIO):
        self.sink, self.sha = sink, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.sink.write(data)

    def digest(self) -> str:
        return f"sha256:{self.sha.hexdigest()}"
