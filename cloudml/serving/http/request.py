"""The request every handler gets, on the direct path and through Starlette's router alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudml.serving.errors import (
    CallerGone,
    InvalidInput,
    PayloadTooLarge,
    UnacceptableFormat,
    UnsupportedFormat,
)

# The ASGI scope extension under which the server (cloudml.serving.protocol) gives a zero-argument
# callable telling whether the request's connection is gone. Other servers may not: then None.
CLIENT_GONE = "cloudml.client_gone"
# Where the dispatcher leaves the arrival time for requests it hands to Starlette's router.
RECEIVED = "cloudml.received"

JSON_TYPES = {"application/json", "text/json"}
JSONLINES_TYPES = {"application/jsonlines", "application/jsonl", "application/x-jsonlines"}
CSV_TYPES = {"text/csv"}


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-case, as ASGI gives them
    path_params: dict[str, str]
    received: float  # time.perf_counter() when the server started on it
    receive: Callable[[], Any]  # the ASGI receive channel
    gone: Callable[[], bool] | None

    @classmethod
    def from_scope(cls, scope: dict, receive, received: float) -> HttpRequest:
        extensions = scope.get("extensions")
        return cls(
            scope["method"],
            scope["path"],
            {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]},
            scope.get("path_params") or {},
            received,
            receive,
            extensions.get(CLIENT_GONE) if extensions else None,
        )

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "application/json").split(";")[0].strip().lower()

    def require_json(self) -> None:
        media = self.media_type
        if media not in JSON_TYPES and not media.endswith("+json"):
            raise UnsupportedFormat(f"unsupported Content-Type {media!r}; send application/json")

    def require_json_answer(self) -> None:
        accept = self.headers.get("accept", "application/json")
        if not accepts_json(accept):
            raise UnacceptableFormat(f"cannot answer with Accept {accept!r}; this endpoint answers application/json")

    async def body(self, max_bytes: int, *, expected: Any = None) -> bytes:
        """The whole body, refused past `max_bytes` (before reading when Content-Length says so)."""
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {max_bytes} bytes; send fewer instances per request")
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise CallerGone("the caller went away while sending its request")
            chunk = message.get("body")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes; send fewer instances per request")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if not size:
            raise InvalidInput('request body is empty; send {"instances": [...]}', expected=expected)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def accepts_json(accept: str) -> bool:
    """Whether an Accept header admits application/json. It is a list of media ranges, each with
    an optional q (`text/csv, application/json;q=0.5`), so any range with q > 0 can match."""
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media not in ("application/json", "application/*", "*/*", ""):
            continue
        q = next((p.partition("=")[2].strip() for p in params if p.partition("=")[0].strip() == "q"), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True  # a malformed q is not a reason to refuse the response
    return False
