"""Package a model, and optionally probe it, in a child process.

Cloud providers build the artifact on the user's machine before uploading anything. Doing it in
a child keeps TensorFlow (its import time, its memory, its native log lines on stderr) out of
the CLI's process; the child's stderr is shown only when it fails. The child reports through a
result file (see result.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cloudml.contract import RuntimeChoice
from cloudml.errors import CloudMLError, ModelError
from cloudml.packaging import PackagedModel, package_model
from cloudml.packaging.source import ModelSource
from cloudml.preflight.result import Failed, Packaged, read_result, write_result
from cloudml.tfnoise import without_noise


def prepare_model(source: ModelSource, out_dir: Path, *, name: str | None, version: int | None, probe: bool,
                  digest: str | None = None, runtime: RuntimeChoice = "auto", sample: Path | None = None,
                  archive: bool = True, snapshot: Path | None = None) -> PackagedModel:
    """`package_model(source, out_dir, name=, version=, digest=, runtime=, sample=, archive=)`
    then, with `probe`, the probe, in a child process. Pass `digest=source_hash(source)` when the
    caller has it: the model is then read once, and refused if it no longer hashes to `digest`;
    with `snapshot` (the copy `snapshot_model` made, and its digest) it is not read at all.
    `sample` is a sample request file. The child is also what keeps TensorFlow and the converters
    out of a server that ONNX Runtime serves."""
    with tempfile.TemporaryDirectory(prefix="cloudml-prepare-") as scratch:
        result_path = Path(scratch) / "result.json"
        command = [sys.executable, "-m", "cloudml.preflight.prepare", str(source.path), "--out", str(out_dir),
                   "--result", str(result_path), "--runtime", runtime]
        for flag, value in (("--name", name), ("--version", version), ("--digest", digest), ("--sample", sample),
                             ("--snapshot", snapshot)):
            if value is not None:
                command += [flag, str(value)]
        if probe:
            command.append("--probe")
        if not archive:
            command.append("--no-archive")
        proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
        result = read_result(result_path)
    return outcome(result, returncode=proc.returncode, stderr=proc.stderr, model=source.path.name)


def outcome(result: Packaged | Failed | None, *, returncode: int, stderr: str, model: str) -> PackagedModel:
    """The packaged model the child reported, or its error raised here: as itself when the
    error table knows it, else (an unknown kind, no result or a garbled one) a ModelError that
    carries the child's stderr."""
    if isinstance(result, Packaged) and returncode == 0:
        return PackagedModel(folder=result.folder, manifest=result.manifest, archive=result.archive, archive_digest=result.archive_digest)
    if isinstance(result, Failed) and (error := result.error()) is not None:
        raise error
    what = f"{result.kind}: {result.message}" if isinstance(result, Failed) else f"exit {returncode}"
    raise ModelError(
        f"packaging {model} failed ({what})",
        hint="`cloudml package MODEL` reproduces it in the foreground",
        details=_stderr_tail(stderr),
    )


def _stderr_tail(stderr: str, lines: int = 30) -> str | None:
    kept = list(without_noise(stderr.splitlines()))
    return "\n".join(kept[-lines:]) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudml.preflight.prepare")
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--version", type=int)
    parser.add_argument("--digest")
    parser.add_argument("--snapshot", type=Path)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--runtime", choices=["auto", "onnx", "tensorflow"], default="auto")
    parser.add_argument("--sample", type=Path)
    parser.add_argument("--no-archive", dest="archive", action="store_false")
    args = parser.parse_args(argv)
    try:
        from cloudml.packaging.sample import read_sample

        instances = read_sample(args.sample) if args.sample else None
        packaged = package_model(args.model, args.out, name=args.name, version=args.version, digest=args.digest, runtime=args.runtime,
                                 sample=instances, archive=args.archive, snapshot=args.snapshot)
        if args.probe:
            from cloudml.preflight.probe import probe_archive

            assert packaged.archive is not None, "the probe reads the archive"
            probe_archive(packaged.archive)
    except CloudMLError as exc:
        write_result(args.result, Failed.from_error(exc))
        return 1
    write_result(args.result, Packaged(folder=packaged.folder, archive=packaged.archive, archive_digest=packaged.archive_digest,
                                       manifest=packaged.manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
