"""The text report of serve.py: the table, the ratios, cold start and the targets.

Everything here reads the `report` dict that serve.py also dumps with --json; nothing measures.
"""

from __future__ import annotations

from statistics import median

# The issue's targets. Measured and reported, never asserted.
TARGET_VS_MLFLOW = 200.0
TARGET_VS_NO_BATCHING = 3.0
TARGET_P99_MS = 50.0
TARGET_VS_CEILING = 0.80
TARGET_COLD_START_RATIO = 1.5


def fmt(value: float | None, spec: str, width: int = 0) -> str:
    return f"{'-':>{width}}" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def figures(report: dict) -> dict:
    """The handful of numbers the ratios and targets are made of (None where not measured)."""
    served = report.get("served", {})
    batched = served.get("cloudml_batching")
    nobatch = served.get("cloudml_no_batching")
    noop = served.get("noop")
    mlflow = (report.get("mlflow") or {}).get("served")
    raw = report.get("raw", {}).get("model_ceiling")
    http_ceiling = noop["samples_per_s"] if noop else None
    model_ceiling = raw["samples_per_s"] if raw else None
    ceilings = [c for c in (http_ceiling, model_ceiling) if c]
    cold = report.get("cold_start", {})
    tf_load = cold.get("tensorflow_import_and_load_s")
    return {
        "cloudml_rps": batched and batched["requests_per_s"],
        "cloudml_sps": batched and batched["samples_per_s"],
        "cloudml_p99_ms": batched and batched["p99_ms"],
        "no_batching_rps": nobatch and nobatch["requests_per_s"],
        "mlflow_rps": mlflow and mlflow["requests_per_s"],
        "http_ceiling_sps": http_ceiling,
        "model_ceiling_sps": model_ceiling,
        "ceiling_sps": min(ceilings) if len(ceilings) == 2 else None,
        "deploy_to_first_prediction_s": cold.get("deploy_to_first_prediction_s"),
        "tensorflow_import_and_load_s": median(tf_load) if tf_load else None,
    }


def ratios(f: dict) -> dict:
    return {
        "cloudml_over_mlflow": _ratio(f["cloudml_rps"], f["mlflow_rps"]),
        "cloudml_over_no_batching": _ratio(f["cloudml_rps"], f["no_batching_rps"]),
        "cloudml_over_ceiling": _ratio(f["cloudml_sps"], f["ceiling_sps"]),
        "cold_start_over_tensorflow": _ratio(f["deploy_to_first_prediction_s"], f["tensorflow_import_and_load_s"]),
    }


def targets(report: dict) -> list[dict]:
    f, r = figures(report), ratios(figures(report))
    mlflow_note = None if report.get("mlflow", {}).get("served") else f"mlflow not measured ({report.get('mlflow', {}).get('skipped', 'skipped')})"
    rows = [
        ("cloudml requests/s >= 200x mlflow's", r["cloudml_over_mlflow"], TARGET_VS_MLFLOW, ">=", "{:.0f}x", mlflow_note),
        ("cloudml requests/s >= 3x its no-batching mode", r["cloudml_over_no_batching"], TARGET_VS_NO_BATCHING, ">=", "{:.2f}x", None),
        ("cloudml p99 <= 50 ms", f["cloudml_p99_ms"], TARGET_P99_MS, "<=", "{:.1f} ms", None),
        ("cloudml >= 80% of min(HTTP ceiling, model ceiling)", r["cloudml_over_ceiling"], TARGET_VS_CEILING, ">=", "{:.0%}", None),
        ("deploy -> first prediction <= 1.5x import TF + load", r["cold_start_over_tensorflow"], TARGET_COLD_START_RATIO, "<=", "{:.2f}x", None),
    ]
    out = []
    for label, value, bound, op, spec, note in rows:
        if value is None:
            verdict, shown = "n/a", note or "not measured"
        else:
            verdict = "PASS" if (value >= bound if op == ">=" else value <= bound) else "MISS"
            shown = spec.format(value)
        out.append({"target": label, "measured": value, "shown": shown, "verdict": verdict})
    return out


ROW_LABELS = {
    "cloudml_batching_1": "cloudml, batching (default), 1 client",
    "cloudml_batching": "cloudml, batching (default)",
    "cloudml_no_batching": "cloudml, batching off (CLOUDML_BATCHING=0)",
    "cloudml_two_processes": "cloudml, batching, 2 processes (CLOUDML_WORKERS=2)",
    "noop": "no-op model, same server (HTTP+JSON ceiling)",
}


def _rows(report: dict) -> list[tuple]:
    rows = []
    for key, row in report.get("served", {}).items():
        rows.append((ROW_LABELS[key], str(row["clients"]), row["requests_per_s"], row["samples_per_s"], row["p50_ms"],
                     row["p99_ms"], row.get("mean_batch_size"), _errors(row)))
    ceiling = (report.get("raw", {}).get("model_ceiling") or {}).get("batch_size")
    for b in report.get("raw", {}).get("batches", []):
        label = f"raw signature, batch {b['batch_size']}" + (" (model ceiling)" if b["batch_size"] == ceiling else "")
        rows.append((label, "-", b["calls_per_s"], b["samples_per_s"], b["p50_ms"], b["p99_ms"], float(b["batch_size"]), "-"))
    mlflow = report.get("mlflow") or {}
    if mlflow.get("served"):
        row = mlflow["served"]
        rows.append((f"mlflow models serve ({mlflow['version']})", str(row["clients"]), row["requests_per_s"],
                     row["samples_per_s"], row["p50_ms"], row["p99_ms"], None, _errors(row)))
    return rows


def _errors(row: dict) -> str:
    return str(sum(row["errors"].values())) + (f" {row['errors']}" if row["errors"] else "")


def print_report(report: dict) -> None:
    m = report["machine"]
    print()
    print(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['platform']}, python {m['python']}, "
          f"tensorflow {m.get('tensorflow', '?')}, cloudml {m['cloudml']}")
    print("load average (1/5/15 min) at start: {:.2f} {:.2f} {:.2f}, at end: {:.2f} {:.2f} {:.2f}".format(
        *m["load_average_at_start"], *report.get("load_average_at_end", (0, 0, 0))))
    print(f"load generator: {report.get('generator', '?')}")
    _print_table(report)
    _print_cpu(report)
    _print_ratios(report)
    _print_cold_start(report)
    _print_targets(report)


def _print_table(report: dict) -> None:
    rows = _rows(report)
    if not rows:
        return
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'scenario':<{width}} | clients | requests/s |  samples/s |  p50 ms |  p99 ms | mean batch | errors")
    print(f"{'-' * width}-|---------|------------|------------|---------|---------|------------|-------")
    for name, clients, rps, sps, p50, p99, batch, errors in rows:
        print(f"{name:<{width}} | {clients:>7} | {rps:>10.1f} | {sps:>10.1f} | {fmt(p50, '7.2f', 7)} | "
              f"{fmt(p99, '7.2f', 7)} | {fmt(batch, '10.1f', 10)} | {errors}")
    print("requests: one instance each, closed loop, kept-alive connections; latency = client-side per request.")
    print("raw signature: in-process calls of the SavedModel signature (no HTTP, no JSON); requests/s = calls/s,")
    print("  latency per call; the model ceiling is the batch size the batching server formed at "
          f"{report['settings']['concurrency']} clients.")
    if (report.get("mlflow") or {}).get("skipped"):
        print(f"mlflow skipped: {report['mlflow']['skipped']}")


def _print_cpu(report: dict) -> None:
    served = dict(report.get("served", {}))
    if (report.get("mlflow") or {}).get("served"):
        served["mlflow"] = report["mlflow"]["served"]
    if not served:
        return
    labels = {key: ROW_LABELS.get(key, "mlflow models serve") for key in served}
    width = max(len(label) for label in labels.values())
    print()
    print(f"CPU over each measured window, in cores of {report['machine']['nproc']} (machine = everything busy; machine - server -")
    print("generator = anything else running), and the server's /metrics over the scenario (warm-up included):")
    print(f"{'scenario':<{width}} | server | generator | machine | model calls | ms/call | queue ms")
    print(f"{'-' * width}-|--------|-----------|---------|-------------|---------|---------")
    for key, row in served.items():
        calls = row.get("model_calls")
        print(f"{labels[key]:<{width}} | {fmt(row['server_cpu_cores'], '6.2f', 6)} | {fmt(row['client_cpu_cores'], '9.2f', 9)} | "
              f"{fmt(row.get('machine_busy_cores'), '7.2f', 7)} | {'-' if calls is None else calls:>11} | "
              f"{fmt(row.get('mean_model_call_ms'), '7.2f', 7)} | {fmt(row.get('mean_queue_ms'), '8.2f', 8)}")


def _print_ratios(report: dict) -> None:
    f = figures(report)
    r = ratios(f)
    c = report["settings"]["concurrency"]
    print()
    print(f"ratios at {c} clients (requests/s; samples/s for the ceiling):")
    print(f"  cloudml / mlflow:          {fmt(r['cloudml_over_mlflow'], '.1f')}x"
          f"   ({fmt(f['cloudml_rps'], '.1f')} / {fmt(f['mlflow_rps'], '.2f')})")
    print(f"  cloudml / no-batching:     {fmt(r['cloudml_over_no_batching'], '.2f')}x"
          f"   ({fmt(f['cloudml_rps'], '.1f')} / {fmt(f['no_batching_rps'], '.1f')})")
    print(f"  cloudml / min(ceilings):   {fmt(r['cloudml_over_ceiling'], '.1%')}"
          f"   ({fmt(f['cloudml_sps'], '.1f')} / min(HTTP {fmt(f['http_ceiling_sps'], '.1f')},"
          f" model {fmt(f['model_ceiling_sps'], '.1f')}))")
    rounds = report.get("paired_rounds") or []
    if len(rounds) > 1:
        pairs = ", ".join(f"{r['cloudml_batching']['requests_per_s']:.0f}/{r['noop']['requests_per_s']:.0f} = {r['ratio']:.1%}" for r in rounds)
        print(f"  cloudml / no-op ceiling, each paired round (requests/s): {pairs};")
        print("  the table and the ratios above are the round with the median ratio")


def _print_cold_start(report: dict) -> None:
    cold = report.get("cold_start")
    if not cold:
        return
    print()
    print("cold start                                                      |  median s | runs")
    print("----------------------------------------------------------------|-----------|-----")

    def line(label: str, values: list[float] | float | None) -> None:
        if values is None:
            print(f"{label:<63} | {'-':>9} | -")
            return
        values = values if isinstance(values, list) else [values]
        print(f"{label:<63} | {median(values):>9.2f} | {len(values)}")

    line("cloudml deploy --provider local -> first 200", cold["deploy_to_first_prediction_s"])
    line("  (the deploy command itself returned after)", cold["deploy_command_s"])
    for label, seconds in cold["server_phases_s"].items():
        print(f"{'    server: ' + label:<63} | {'+' + format(seconds, '.2f'):>9} |")
    if cold.get("second_deploy_to_first_prediction_s") is not None:
        line("cloudml deploy (2nd deployment, batching off) -> first 200", cold["second_deploy_to_first_prediction_s"])
    line('python -c "import tensorflow"', cold.get("tensorflow_import_s"))
    line('python -c "import tensorflow; tf.saved_model.load(package)"', cold.get("tensorflow_import_and_load_s"))
    mlflow = report.get("mlflow") or {}
    line("mlflow models serve start -> first 200", mlflow.get("start_to_first_prediction_s"))
    r = ratios(figures(report))
    print(f"cloudml deploy -> first 200 / bare TensorFlow import + load: {fmt(r['cold_start_over_tensorflow'], '.2f')}x")
    if report.get("training_s"):
        print(f"(training the seed CNN took {report['training_s']:.1f} s; not part of any figure)")


def _print_targets(report: dict) -> None:
    rows = report.get("targets") or targets(report)
    width = max(len(t["target"]) for t in rows)
    print()
    print(f"targets at {report['settings']['concurrency']} clients (measured, not asserted):")
    for t in rows:
        print(f"  {t['target']:<{width}}  {t['shown']:>12}  {t['verdict']}")
