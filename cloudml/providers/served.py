"""What `status` shows of how a deployment's package is served: the runtime backend, the framework
(and version) the model came from, and why it is not served by ONNX Runtime when it could have
been. Local reads it from the package's manifest; the clouds keep it in tags or labels, each
within its own limits (see `one_line`)."""

from __future__ import annotations

import re

from cloudml.contract import Runtime

RUNTIME = "runtime"
FRAMEWORK = "framework"
NOT_ONNX = "not_onnx_because"


def served_details(runtime: Runtime) -> dict[str, str]:
    """The `details` entries for a package served by `runtime`."""
    shown = {RUNTIME: runtime.backend, FRAMEWORK: f"{runtime.framework} {runtime.framework_version or ''}".strip()}
    if runtime.fallback_reason:
        shown[NOT_ONNX] = runtime.fallback_reason
    return shown


def one_line(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters: cut at a word and ended with "..." when longer
    (a reason is read by people; its start says what went wrong)."""
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 3]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."
