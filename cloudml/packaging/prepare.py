"""Package a model, and optionally probe it (preflight), in a child process.

Cloud providers build the artifact on the user's machine before uploading anything. Doing it in
a child keeps TensorFlow (its import time, its memory, its native log lines on stderr) out of
the CLI's process; the child's stderr is shown only when it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from cloudml import errors
from cloudml.packaging import PackagedModel, package_model
from cloudml.contract import Manifest
from cloudml.packaging.source import ModelSource

_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "oneDNN custom operations", "cpu_feature_guard", "To enable the following instructions")


def prepare_model(source: ModelSource, out_dir: Path, *, name: str, version: int | None, probe: bool) -> PackagedModel:
    command = [sys.executable, "-m", "cloudml.packaging.prepare", str(source.path), "--out", str(out_dir), "--name", name]
    if version is not None:
        command += ["--version", str(version)]
    if probe:
        command.append("--probe")
    proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if "error" in result:
        cls = getattr(errors, result["error"], None)
        if not (isinstance(cls, type) and issubclass(cls, errors.CloudMLError)):
            cls = errors.ModelError
        raise cls(result["message"], hint=result.get("hint"), details=result.get("details"))
    if proc.returncode != 0 or "manifest" not in result:
        stderr = "\n".join(line for line in proc.stderr.splitlines() if not any(n in line for n in _NOISE))
        raise errors.ModelError(
            f"packaging {source.path.name} failed (exit {proc.returncode})",
            hint="`cloudml package MODEL` reproduces it in the foreground",
            details="\n".join(stderr.splitlines()[-30:]) or None,
        )
    return PackagedModel(folder=Path(result["folder"]), manifest=Manifest.model_validate(result["manifest"]), archive=Path(result["archive"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudml.packaging.prepare")
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", type=int)
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args(argv)
    try:
        packaged = package_model(args.model, args.out, name=args.name, version=args.version)
        if args.probe:
            from cloudml.serving.probe import probe_archive

            probe_archive(packaged.archive)
    except errors.CloudMLError as exc:
        print(json.dumps(exc.to_dict()))
        return 1
    print(json.dumps({"folder": str(packaged.folder), "archive": str(packaged.archive), "manifest": packaged.manifest.model_dump(mode="json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
