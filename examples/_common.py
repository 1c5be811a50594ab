"""Command-line plumbing shared by the train_*.py examples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(name: str, default_epochs: int, description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("build/models") / f"{name}.h5",
        help="where to save the model; .h5 (legacy, the default) or .keras (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=default_epochs, help="default: %(default)s")
    parser.add_argument("--limit", type=int, default=None, help="cap on training samples (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    return parser.parse_args(argv)


def sibling(out: Path, suffix: str) -> Path:
    """build/models/cnn.h5 -> build/models/cnn<suffix>."""
    return out.with_name(out.stem + suffix)


def save_outputs(model, instances: list, out: Path, extra: dict[str, object] | None = None) -> list[Path]:
    """Save the model, its sample request and any extra JSON files; return the paths written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)  # the suffix picks the format: .h5 legacy HDF5 or .keras
    files = {".sample.json": {"instances": instances}, **(extra or {})}
    written = [out]
    for suffix, payload in files.items():
        path = sibling(out, suffix)
        path.write_text(json.dumps(payload) + "\n")
        written.append(path)
    return written
