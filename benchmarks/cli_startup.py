"""How long `cloudml --help` takes, next to `python -c "import tensorflow"`.

    .venv/bin/python benchmarks/cli_startup.py [--runs 10]

Every command runs as a child of this process, round-robin (help, script help, tensorflow,
help, ...), so slow drift on the machine spreads over all of them instead of one. One untimed
run of each comes first to warm the page cache. Then `python -X importtime` checks what
`--help` imports: it exits 1 if TensorFlow or a cloud SDK shows up, so CI can run it too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Top-level package names that `--help` must never import.
FORBIDDEN = {
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "tf_keras": "Keras",
    "boto3": "AWS SDK",
    "botocore": "AWS SDK",
    "sagemaker": "AWS SDK",
    "sagemaker_core": "AWS SDK",
    "vertexai": "Google Cloud SDK",
    "google.cloud": "Google Cloud SDK",
    "google.auth": "Google Cloud SDK",
    "azure": "Azure SDK",
    "msal": "Azure SDK",
}
# Not forbidden, but worth seeing when they show up (the CLI means to defer them).
NOTABLE = ("numpy", "pydantic", "yaml", "orjson", "starlette", "uvicorn", "rich", "typer", "click")


def commands() -> dict[str, list[str]]:
    python = sys.executable
    script = Path(python).with_name("cloudml")
    if not script.is_file():
        sys.exit(f"no `cloudml` console script next to {python}; run this with the venv's python")
    return {
        "python -m cloudml --help": [python, "-m", "cloudml", "--help"],
        "cloudml --help (console script)": [str(script), "--help"],
        'python -c "import tensorflow"': [python, "-c", "import tensorflow"],
    }


def child_env() -> dict[str, str]:
    # TensorFlow's C++ banner goes to stderr; silence it so it cannot slow the terminal.
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def time_once(argv: list[str]) -> float:
    """Wall-clock seconds for one run; fails loudly rather than timing an error path."""
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(), timeout=120)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def measure(runs: int) -> dict[str, list[float]]:
    cmds = commands()
    for argv in cmds.values():
        time_once(argv)  # warm-up, not counted
    samples: dict[str, list[float]] = {label: [] for label in cmds}
    for _ in range(runs):
        for label, argv in cmds.items():
            samples[label].append(time_once(argv))
    return samples


def print_table(samples: dict[str, list[float]]) -> None:
    width = max(len(label) for label in samples)
    print(f"{'command':<{width}}  {'mean ms':>8}  {'median ms':>9}  {'min ms':>7}")
    for label, values in samples.items():
        ms = [v * 1000 for v in values]
        print(f"{label:<{width}}  {statistics.mean(ms):>8.1f}  {statistics.median(ms):>9.1f}  {min(ms):>7.1f}")
    tf = statistics.median(samples['python -c "import tensorflow"'])
    print()
    for label in list(samples)[:2]:
        ratio = statistics.median(samples[label]) / tf
        print(f"{label}: {ratio:.3f} x the tensorflow import (medians; {1 / ratio:.0f}x faster)")


def imported_modules(argv: list[str]) -> dict[str, tuple[int, int]]:
    """Modules imported while running `argv` under -X importtime: name -> (cumulative us, depth)."""
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(), timeout=120, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    modules: dict[str, tuple[int, int]] = {}
    for line in result.stderr.splitlines():
        # "import time:       self [us] |   cumulative | imported package"; nesting is 2 spaces a level
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        modules[name.strip()] = (int(cumulative), depth)
    return modules


def forbidden_in(modules: dict[str, int]) -> list[str]:
    return sorted(
        name for name in modules
        if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN)
    )


def check_imports() -> bool:
    python = sys.executable
    script = str(Path(python).with_name("cloudml"))
    ok = True
    print()
    print("imports during --help (python -X importtime):")
    for label, argv in {
        "python -m cloudml --help": [python, "-X", "importtime", "-m", "cloudml", "--help"],
        "cloudml --help (console script)": [python, "-X", "importtime", script, "--help"],
    }.items():
        modules = imported_modules(argv)
        bad = forbidden_in(modules)
        seen = [name for name in NOTABLE if name in modules]
        # Top-level imports only: their cumulative times add up to the whole import cost.
        slowest = sorted(((us, name) for name, (us, depth) in modules.items() if depth == 0), reverse=True)[:3]
        print(f"  {label}: {len(modules)} modules; slowest top-level: " + ", ".join(f"{name} {us / 1000:.1f} ms" for us, name in slowest))
        print(f"    tensorflow / cloud SDKs: {', '.join(bad) if bad else 'none (ok)'}")
        print(f"    also imported: {', '.join(seen) if seen else '-'}")
        ok = ok and not bad
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (default: %(default)s)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    print(f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs, {args.runs} runs each")
    print("load average at start: {:.2f} {:.2f} {:.2f}\n".format(*os.getloadavg()))  # other work skews timings
    print_table(measure(args.runs))
    print("load average at end:   {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0 if check_imports() else 1


if __name__ == "__main__":
    sys.exit(main())
