"""The serving benchmark on two commits, side by side in one run: is a change slower than before?

    .venv/bin/python benchmarks/compare.py --baseline REF [--candidate REF] [--model cnn.h5]
        [--runtime tensorflow|onnx|auto] [--rounds 4] [--duration 10] [--concurrency 32] [--json out.json]

Each side is cloudml's source at a commit (`git archive REF`; the candidate is this working tree
unless --candidate is given), run by this virtual environment's Python with PYTHONPATH pointing at
that source, so the dependencies are the same and only cloudml's code differs. Both sides deploy
the same model (the seed CNN, trained by examples/train_cnn.py unless --model is given) with
`cloudml deploy --provider local`, each in its own CLOUDML_HOME, passing `--runtime R` where that
side's CLI has the flag (a commit from before runtime backends serves TensorFlow only, which is
what the default `--runtime tensorflow` compares it with). The script checks that each serving
process runs its own side's source, then measures:

1. 1 client on each side;
2. --rounds rounds at --concurrency clients, the sides taking turns at going first (A B, B A, ...),
   because this kind of VM drifts by 10% within minutes: only figures taken side by side compare.

It prints requests/s, p50/p99 and the mean batch the server formed for every round, the
candidate / baseline ratio of each round and their median, and the verdict against "not slower"
(median ratio >= 0.97, the spread of paired rounds here); the verdict is printed, never asserted.
All traffic goes to 127.0.0.1; both deployments are deleted at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from deployments import CLI, Deployed
from drive import drive
from frame import run_benchmark
from report import fmt
from serve import machine_info, one_instance, train_model

REPO = Path(__file__).resolve().parent.parent
SIDES = ("baseline", "candidate")
NOT_SLOWER = 0.97


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git commit (or branch, tag) to compare against, e.g. the commit before a change")
    parser.add_argument("--candidate", help="git commit to measure (default: this working tree, uncommitted changes included)")
    parser.add_argument("--model", type=Path, help=".h5/.keras model to deploy (default: train the seed CNN)")
    parser.add_argument("--runtime", default="tensorflow", choices=("tensorflow", "onnx", "auto"),
                        help="--runtime for the sides whose CLI has it (default: %(default)s, what every commit can serve)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients in the paired rounds (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=4, help="paired rounds at --concurrency clients (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each scenario (default: %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="cap per scenario, python generator (default: %(default)s)")
    parser.add_argument("--generator", choices=("auto", "python", "wrk"), default="auto",
                        help="load generator: wrk if on PATH (auto), or the built-in Python one (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    return parser.parse_args()


def export_source(ref: str, into: Path) -> tuple[Path, str]:
    """cloudml's tree at `ref`, unpacked into `into`; and the full commit id."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        raise SystemExit(f"compare.py: {ref!r} is not a commit of {REPO}: {commit.stderr.strip()}")
    into.mkdir(parents=True)
    archive = into.with_suffix(".tar")
    subprocess.run(["git", "-C", str(REPO), "archive", "--output", str(archive), commit.stdout.strip()], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into, commit.stdout.strip()


def working_tree_description() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return f"{head} (working tree{', with uncommitted changes' if dirty else ''})"


@dataclass
class SourceCLI(CLI):
    """The CLI of one side: `python -m cloudml` with PYTHONPATH at that side's source."""

    source: Path = REPO

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "cloudml"]

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONPATH": str(self.source)}

    def has_runtime_flag(self) -> bool:
        return "--runtime" in self.run("deploy", "--help").stdout


def serves_from(pid: int, source: Path) -> bool:
    """Whether the serving process imports cloudml from `source` (its PYTHONPATH, inherited)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"PYTHONPATH={source}".encode() in environ


class Run:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.report: dict = {"machine": machine_info(), "settings": {k: str(v) for k, v in vars(args).items()}, "sides": {}}
        self.clis: dict[str, SourceCLI] = {}

    def run(self) -> None:
        args, report = self.args, self.report
        for side, ref in (("baseline", args.baseline), ("candidate", args.candidate)):
            if ref is None:
                source, described = REPO, working_tree_description()
            else:
                source, described = export_source(ref, self.workdir / f"{side}-source")
            self.clis[side] = SourceCLI(home=self.workdir / f"{side}-home", workdir=self.workdir, source=source)
            report["sides"][side] = {"source": described}
        model = args.model
        if model is None:
            model, report["training_s"] = train_model(self.workdir)
        self.body = json.dumps({"instances": [one_instance(model)]}).encode()
        deployed = {side: self.deploy(side, model) for side in SIDES}
        report["one_client"] = {side: self.drive(side, deployed[side], clients=1) for side in SIDES}
        rounds = []
        for number in range(1, args.rounds + 1):
            order = SIDES if number % 2 else SIDES[::-1]
            print(f"round {number} of {args.rounds} ({order[0]} first):", flush=True)
            row: dict = {"first": order[0]}
            for side in order:
                row[side] = self.drive(side, deployed[side], clients=args.concurrency)
            baseline = row["baseline"]["requests_per_s"]
            row["ratio"] = row["candidate"]["requests_per_s"] / baseline if baseline else None
            rounds.append(row)
        report["rounds"] = rounds
        report["load_average_at_end"] = os.getloadavg()

    def deploy(self, side: str, model: Path) -> Deployed:
        cli = self.clis[side]
        runtime = self.args.runtime if cli.has_runtime_flag() else None
        print(f"{side}: deploying {model.name} with {cli.source}'s cloudml{f' --runtime {runtime}' if runtime else ''} ...", flush=True)
        deployed = cli.deploy(model, f"compare-{side}", self.body, runtime=runtime)
        if not serves_from(deployed.pid, cli.source):
            raise RuntimeError(f"the {side} server (pid {deployed.pid}) does not run {cli.source}'s cloudml: its PYTHONPATH differs")
        self.report["sides"][side].update(runtime=runtime or "(no --runtime flag: TensorFlow)", served_by=deployed.runtime if runtime else "tensorflow",
                                          deploy_to_first_prediction_s=deployed.deploy_to_first_prediction_s)
        return deployed

    def drive(self, side: str, deployed: Deployed, *, clients: int) -> dict:
        return drive(side, deployed.port, self.body, clients=clients, server_pids=[deployed.pid], args=self.args)

    def close(self) -> None:
        for cli in self.clis.values():
            cli.delete_all()


def print_report(report: dict) -> None:
    print()
    for side in SIDES:
        info = report["sides"].get(side, {})
        print(f"{side:9}: {info.get('source', '?')}  runtime {info.get('runtime', '?')}, served by {info.get('served_by', '?')}")
    rounds = report.get("rounds") or []
    if not rounds:
        print("no round was measured")
        return
    print()
    print("scenario               | first     | baseline req/s | p50 ms | p99 ms | batch | candidate req/s | p50 ms | p99 ms | batch | cand./base.")
    print("-----------------------|-----------|----------------|--------|--------|-------|-----------------|--------|--------|-------|------------")
    one = report.get("one_client") or {}
    lines = [("1 client", "-", one.get("baseline"), one.get("candidate"))] if one else []
    lines += [(f"round {i}, {rounds[0]['baseline']['clients']} clients", row["first"], row["baseline"], row["candidate"])
              for i, row in enumerate(rounds, 1)]
    for label, first, base, cand in lines:
        ratio = cand["requests_per_s"] / base["requests_per_s"] if base and cand and base["requests_per_s"] else None
        cells = []
        for row in (base, cand):
            cells += [f"{fmt(row and row['requests_per_s'], '.1f'):>{14 if row is base else 15}}", f"{fmt(row and row['p50_ms'], '.2f'):>6}",
                      f"{fmt(row and row['p99_ms'], '.2f'):>6}", f"{fmt(row and row.get('mean_batch_size'), '.1f'):>5}"]
        print(f"{label:22} | {first:9} | " + " | ".join(cells) + f" | {fmt(ratio, '.3f'):>10}")
    summary = report["summary"]
    ratios = summary["ratios"]
    print()
    print(f"candidate / baseline, requests/s at {rounds[0]['baseline']['clients']} clients: median {fmt(summary['median_ratio'], '.3f')} "
          f"over {len(ratios)} rounds (min {fmt(min(ratios, default=None), '.3f')}, max {fmt(max(ratios, default=None), '.3f')}); "
          f"errors {summary['errors']}")
    print(f"target: candidate not slower (median ratio >= {NOT_SLOWER}, no errors): {summary['verdict']}")


def summarize(report: dict) -> None:
    rounds = report.get("rounds") or []
    ratios = [row["ratio"] for row in rounds if row["ratio"] is not None]
    middle = median(ratios) if ratios else None
    errors = sum(sum(row[side]["errors"].values()) for row in rounds for side in SIDES)
    verdict = "PASS" if middle is not None and middle >= NOT_SLOWER and errors == 0 else "MISS"
    report["summary"] = {"ratios": ratios, "median_ratio": middle, "errors": errors, "verdict": verdict}


def main() -> int:
    args = parse_args()
    return run_benchmark(lambda workdir: Run(args, workdir), prefix="cloudml-compare-", json_path=args.json, print_report=print_report,
                         finish=summarize)


if __name__ == "__main__":
    sys.exit(main())
