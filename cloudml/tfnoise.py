"""TensorFlow's native start-up lines: printed by every process that loads it, about the build and
the machine, never about the model. TF_CPP_MIN_LOG_LEVEL=2 silences some at the source (not the
absl and oneDNN ones, which no log level stops); the places that show a log to people leave the
rest out with this one list, so a server's last lines are its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

TF_NOISE = (
    "WARNING: All log messages before absl::InitializeLog()",
    "oneDNN custom operations",
    "cpu_feature_guard",
    "oneDNN supports DT_BOOL only on platforms with AVX-512",  # a masked LSTM on a CPU without AVX-512
    "To enable the following instructions",
    # tensorflow (not tensorflow-cpu) on a machine without a GPU:
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
    "Could not find cuda drivers on your machine",
)


def is_noise(line: str) -> bool:
    return any(marker in line for marker in TF_NOISE)


def without_noise(lines: Iterable[str]) -> Iterator[str]:
    return (line for line in lines if not is_noise(line))


def clean_text(text: str | None) -> str | None:
    """`text` without its noise lines; None when nothing else is left."""
    if not text:
        return text
    return "\n".join(without_noise(text.splitlines())) or None
