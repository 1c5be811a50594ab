"""Is a converted model the same model? Run it beside its original on the same batches and compare
every output elementwise: |converted - original| <= atol + rtol * |original| (numpy's isclose)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cloudml.contract import Tolerance, Verification
from cloudml.packaging.conversion.errors import first_line
from cloudml.packaging.conversion.probes import Arrays

# float32 outputs of the same graph run by two runtimes differ by how each orders its sums, about
# 1e-7 per operation. Measured on the seed models (tf2onnx 1.17, opset 17, onnxruntime 1.32, the
# probes of probes.py plus the seeds' samples): at most 1.2e-7 absolute on the autoencoder, CNN
# and LSTM. A conversion that is wrong (a transposed kernel, padding, a mask dropped) moves outputs
# by 1e-2 or more. These bounds sit well between the two and leave room for deeper models, where
# round-off accumulates, and for outputs far from 1 (rtol).
DEFAULT_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)

Model = Callable[[Arrays], Arrays]


class Comparison(Verification):
    """A Verification that also says, in one line, why it did not pass (for the runtime's fallback_reason)."""

    reason: str | None = None

    def verification(self) -> Verification:
        """As the manifest records it (the reason goes into the runtime's fallback_reason)."""
        return Verification.model_validate(self.model_dump(exclude={"reason"}))


def compare(reference: Model, candidate: Model, batches: list[Arrays], tolerance: Tolerance, *, used_sample: bool) -> Comparison:
    """Run both on every batch; passed when each output of each batch is close (see the module doc).

    A batch the reference itself cannot run is not a valid input to the model and is skipped (none
    left: not passed). Different output names, shapes or dtypes, or a candidate that raises, fail it."""
    worst_abs = worst_rel = worst_excess = 0.0
    worst_output: str | None = None
    compared = 0
    reference_error: str | None = None

    def failed(reason: str) -> Comparison:
        return Comparison(passed=False, probes=compared, max_abs_diff=_finite(worst_abs), max_rel_diff=_finite(worst_rel),
                          worst_output=worst_output, used_sample=used_sample, reason=reason)

    for index, batch in enumerate(batches):
        try:
            expected = reference(batch)
        except Exception as exc:  # the original model refuses this input
            reference_error = reference_error or f"{type(exc).__name__}: {first_line(exc)}"
            continue
        try:
            got = candidate(batch)
        except Exception as exc:
            return failed(f"the converted model failed on probe batch {index} ({_shapes(batch)}): {type(exc).__name__}: {first_line(exc)}")
        if set(got) != set(expected):
            return failed(f"the converted model's outputs are {sorted(got)}, the original's {sorted(expected)}")
        for name, want in expected.items():
            have = np.asarray(got[name])
            want = np.asarray(want)
            if have.shape != want.shape or have.dtype != want.dtype:
                return failed(f"output {name!r} is {have.dtype}{list(have.shape)} from the converted model, {want.dtype}{list(want.shape)} from the original "
                              f"(probe batch {index}: {_shapes(batch)})")
            abs_diff, rel_diff, excess = _differences(have, want, tolerance)
            worst_abs, worst_rel = max(worst_abs, abs_diff), max(worst_rel, rel_diff)
            if excess > worst_excess or worst_output is None:
                worst_excess, worst_output = max(excess, worst_excess), name
        compared += 1
    if not compared:
        return failed(f"the original model failed on every probe batch ({reference_error})")
    if worst_excess > 1:
        return failed(f"outputs differ by up to {_finite(worst_abs):.1e} ({worst_output}), tolerance atol {tolerance.atol:g} rtol {tolerance.rtol:g}")
    return Comparison(passed=True, probes=compared, max_abs_diff=worst_abs, max_rel_diff=worst_rel, worst_output=worst_output, used_sample=used_sample)


def _differences(have: np.ndarray, want: np.ndarray, tolerance: Tolerance) -> tuple[float, float, float]:
    """(max |have - want|, max relative difference where |want| > atol, max of |have - want| / allowed)."""
    if have.size == 0:
        return 0.0, 0.0, 0.0
    if have.dtype.kind not in "fciub":  # strings: equal or not
        same = np.array_equal(have, want)
        return (0.0, 0.0, 0.0) if same else (float("inf"), float("inf"), float("inf"))
    have64, want64 = have.astype(np.float64), want.astype(np.float64)
    diff = np.abs(have64 - want64)
    diff[(have64 == want64) | (np.isnan(have64) & np.isnan(want64))] = 0.0  # the same inf or NaN on both sides agrees
    diff[np.isnan(diff)] = np.inf  # a NaN on one side does not
    magnitude = np.abs(want64)
    allowed = tolerance.atol + tolerance.rtol * np.where(np.isfinite(magnitude), magnitude, 0.0)
    significant = magnitude > tolerance.atol
    rel = float((diff[significant] / magnitude[significant]).max()) if significant.any() else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = float(np.where(diff == 0, 0.0, diff / allowed).max())
    return float(diff.max()), rel, excess


def _finite(value: float) -> float:
    # The manifest is JSON, which has no infinity.
    return value if np.isfinite(value) else float(np.finfo(np.float64).max)


def _shapes(batch: Arrays) -> str:
    return ", ".join(f"{name} {list(value.shape)}" for name, value in batch.items())

