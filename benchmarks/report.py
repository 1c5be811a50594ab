"""The text report of serve.py: the table, the ratios, cold start and the targets.

Everything here reads the `report` dict that serve.py also dumps with --json; nothing measures.
"""

from __future__ import annotations

from statistics import median

# The issues' targets. Measured and reported, never asserted.
TARGET_VS_MLFLOW = 200.0
TARGET_VS_NO_BATCHING = 3.0
TARGET_P99_MS = 50.0
TARGET_VS_CEILING = 0.80
TARGET_COLD_START_RATIO = 1.5
TARGET_ONNX_VS_NOOP = 0.90
TARGET_ONNX_VS_TF_START = 1 / 3
TARGET_ONNX_VS_TF_RSS = 1 / 3
BACKENDS = ("onnx", "tensorflow")


def fmt(value: float | None, spec: str, width: int = 0) -> str:
    return f"{'-':>{width}}" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _median(values: list[float] | None) -> float | None:
    return median(values) if values else None


def rss_mib(report: dict, key: str) -> float | None:
    """Mean VmRSS of the serving processes of one deployment, in MiB."""
    pids = (report.get("memory") or {}).get(key) or {}
    values = [m["VmRSS"] for m in pids.values() if "VmRSS" in m]
    return sum(values) / len(values) / 1024 if values else None


def figures(report: dict) -> dict:
    """The handful of numbers the ratios and targets are made of (None where not measured).
    "cloudml" is the ONNX-served deployment: what `--runtime auto` serves the seed CNN with."""
    served = report.get("served", {})
    batched, tf = served.get("onnx"), served.get("tensorflow")
    nobatch = served.get("cloudml_no_batching")
    noop = served.get("noop")
    mlflow = (report.get("mlflow") or {}).get("served")
    raw = (report.get("raw", {}).get("onnx") or {}).get("model_ceiling")
    http_ceiling = noop["samples_per_s"] if noop else None
    model_ceiling = raw["samples_per_s"] if raw else None
    ceilings = [c for c in (http_ceiling, model_ceiling) if c]
    cold = report.get("cold_start", {})
    deploys = cold.get("deploy", {})
    serve = cold.get("serve_package", {})
    return {
        "cloudml_rps": batched and batched["requests_per_s"],
        "cloudml_sps": batched and batched["samples_per_s"],
        "cloudml_p99_ms": batched and batched["p99_ms"],
        "tensorflow_rps": tf and tf["requests_per_s"],
        "no_batching_rps": nobatch and nobatch["requests_per_s"],
        "mlflow_rps": mlflow and mlflow["requests_per_s"],
        "noop_rps": noop and noop["requests_per_s"],
        "http_ceiling_sps": http_ceiling,
        "model_ceiling_sps": model_ceiling,
        "ceiling_sps": min(ceilings) if len(ceilings) == 2 else None,
        "tf_deploy_to_first_prediction_s": (deploys.get("tensorflow") or {}).get("deploy_to_first_prediction_s"),
        "tensorflow_import_and_load_s": _median(cold.get("tensorflow_import_and_load_s")),
        "onnx_start_s": _median((serve.get("onnx") or {}).get("start_to_first_prediction_s")),
        "tensorflow_start_s": _median((serve.get("tensorflow") or {}).get("start_to_first_prediction_s")),
        "onnx_rss_mib": rss_mib(report, "onnx"),
        "tensorflow_rss_mib": rss_mib(report, "tensorflow"),
    }


def ratios(f: dict) -> dict:
    return {
        "cloudml_over_mlflow": _ratio(f["cloudml_rps"], f["mlflow_rps"]),
        "cloudml_over_no_batching": _ratio(f["cloudml_rps"], f["no_batching_rps"]),
        "cloudml_over_ceiling": _ratio(f["cloudml_sps"], f["ceiling_sps"]),
        "onnx_over_noop": _ratio(f["cloudml_rps"], f["noop_rps"]),
        "tensorflow_over_noop": _ratio(f["tensorflow_rps"], f["noop_rps"]),
        "onnx_over_tensorflow": _ratio(f["cloudml_rps"], f["tensorflow_rps"]),
        "cold_start_over_tensorflow": _ratio(f["tf_deploy_to_first_prediction_s"], f["tensorflow_import_and_load_s"]),
        "onnx_start_over_tensorflow": _ratio(f["onnx_start_s"], f["tensorflow_start_s"]),
        "onnx_rss_over_tensorflow": _ratio(f["onnx_rss_mib"], f["tensorflow_rss_mib"]),
    }


def targets(report: dict) -> list[dict]:
    f, r = figures(report), ratios(figures(report))
    mlflow_note = None if report.get("mlflow", {}).get("served") else f"mlflow not measured ({report.get('mlflow', {}).get('skipped', 'skipped')})"
    rows = [
        ("cloudml requests/s >= 200x mlflow's", r["cloudml_over_mlflow"], TARGET_VS_MLFLOW, ">=", "{:.0f}x", mlflow_note),
        ("cloudml requests/s >= 3x its no-batching mode", r["cloudml_over_no_batching"], TARGET_VS_NO_BATCHING, ">=", "{:.2f}x", None),
        ("cloudml p99 <= 50 ms", f["cloudml_p99_ms"], TARGET_P99_MS, "<=", "{:.1f} ms", None),
        ("cloudml >= 80% of min(HTTP ceiling, model ceiling)", r["cloudml_over_ceiling"], TARGET_VS_CEILING, ">=", "{:.0%}", None),
        ("tensorflow deploy -> first prediction <= 1.5x import TF + load", r["cold_start_over_tensorflow"], TARGET_COLD_START_RATIO, "<=", "{:.2f}x", None),
        ("onnx-served >= 90% of the no-op ceiling (same round)", r["onnx_over_noop"], TARGET_ONNX_VS_NOOP, ">=", "{:.1%}", None),
        ("onnx serve start -> first prediction <= 1/3 of tensorflow's", r["onnx_start_over_tensorflow"], TARGET_ONNX_VS_TF_START, "<=", "{:.2f}x", None),
        ("onnx RSS per serving process <= 1/3 of tensorflow's", r["onnx_rss_over_tensorflow"], TARGET_ONNX_VS_TF_RSS, "<=", "{:.2f}x", None),
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
    "onnx_1": "cloudml, onnx backend (--runtime onnx), 1 client",
    "tensorflow_1": "cloudml, tensorflow backend (--runtime tensorflow), 1 client",
    "onnx": "cloudml, onnx backend (--runtime onnx)",
    "noop": "no-op model, same server (HTTP+JSON ceiling)",
    "tensorflow": "cloudml, tensorflow backend (--runtime tensorflow)",
    "cloudml_no_batching": "cloudml, batching off (CLOUDML_BATCHING=0)",
    "cloudml_two_processes": "cloudml, batching, 2 processes (CLOUDML_WORKERS=2)",
}
ROW_ORDER = list(ROW_LABELS)


def _label(key: str, row: dict) -> str:
    label = ROW_LABELS.get(key, key)
    return label[:-1] + f", {row['runtime']})" if row.get("runtime") else label


def _served(report: dict) -> list[tuple[str, dict]]:
    served = report.get("served", {})
    return [(key, served[key]) for key in sorted(served, key=lambda k: ROW_ORDER.index(k) if k in ROW_ORDER else 99)]


def _rows(report: dict) -> list[tuple]:
    rows = []
    for key, row in _served(report):
        rows.append((_label(key, row), str(row["clients"]), row["requests_per_s"], row["samples_per_s"], row["p50_ms"],
                     row["p99_ms"], row.get("mean_batch_size"), _errors(row)))
    for backend in BACKENDS:
        raw = report.get("raw", {}).get(backend) or {}
        ceiling = (raw.get("model_ceiling") or {}).get("batch_size")
        for b in raw.get("batches", []):
            label = f"raw {backend}, batch {b['batch_size']}" + (" (model ceiling)" if b["batch_size"] == ceiling else "")
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
          f"tensorflow {m.get('tensorflow', '?')}, onnxruntime {m.get('onnxruntime', '?')}, cloudml {m['cloudml']}")
    print("load average (1/5/15 min) at start: {:.2f} {:.2f} {:.2f}, at end: {:.2f} {:.2f} {:.2f}".format(
        *m["load_average_at_start"], *report.get("load_average_at_end", (0, 0, 0))))
    print(f"load generator: {report.get('generator', '?')}")
    _print_table(report)
    _print_cpu(report)
    _print_ratios(report)
    _print_cold_start(report)
    _print_memory(report)
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
    print("raw BACKEND: in-process calls of the package's backend as the server makes them (TensorFlow's SavedModel")
    print("  signature; ONNX Runtime's session on model.onnx), no HTTP, no JSON; requests/s = calls/s, latency per call;")
    print(f"  the model ceiling is the batch size that backend's server formed at {report['settings']['concurrency']} clients.")
    if (report.get("mlflow") or {}).get("skipped"):
        print(f"mlflow skipped: {report['mlflow']['skipped']}")


def _print_cpu(report: dict) -> None:
    served = dict(_served(report))
    if (report.get("mlflow") or {}).get("served"):
        served["mlflow"] = report["mlflow"]["served"]
    if not served:
        return
    labels = {key: _label(key, row) if key in ROW_LABELS else "mlflow models serve" for key, row in served.items()}
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
    print(f"ratios at {c} clients (requests/s; samples/s for the ceiling; cloudml = the onnx-served deployment):")
    print(f"  cloudml / mlflow:          {fmt(r['cloudml_over_mlflow'], '.1f')}x"
          f"   ({fmt(f['cloudml_rps'], '.1f')} / {fmt(f['mlflow_rps'], '.2f')})")
    print(f"  cloudml / no-batching:     {fmt(r['cloudml_over_no_batching'], '.2f')}x"
          f"   ({fmt(f['cloudml_rps'], '.1f')} / {fmt(f['no_batching_rps'], '.1f')})")
    print(f"  cloudml / min(ceilings):   {fmt(r['cloudml_over_ceiling'], '.1%')}"
          f"   ({fmt(f['cloudml_sps'], '.1f')} / min(HTTP {fmt(f['http_ceiling_sps'], '.1f')},"
          f" onnx model {fmt(f['model_ceiling_sps'], '.1f')}))")
    print(f"  onnx / tensorflow:         {fmt(r['onnx_over_tensorflow'], '.2f')}x"
          f"   ({fmt(f['cloudml_rps'], '.1f')} / {fmt(f['tensorflow_rps'], '.1f')})")
    print(f"  onnx / no-op ceiling:      {fmt(r['onnx_over_noop'], '.1%')}   tensorflow / no-op ceiling: {fmt(r['tensorflow_over_noop'], '.1%')}")
    rounds = report.get("paired_rounds") or []
    if len(rounds) > 1:
        print("  each paired round, backend / no-op ceiling (requests/s):")
        for number, row in enumerate(rounds, 1):
            noop = row["noop"]["requests_per_s"]
            pairs = ", ".join(f"{b} {row[b]['requests_per_s']:.0f}/{noop:.0f} = {row['ratio'][b]:.1%}" for b in BACKENDS)
            print(f"    round {number}: {pairs}")
        print("  the table and the ratios above are the round with the median onnx / no-op ratio")


def _print_cold_start(report: dict) -> None:
    cold = report.get("cold_start")
    if not cold:
        return
    print()
    print("cold start                                                            |  median s | runs")
    print("----------------------------------------------------------------------|-----------|-----")

    def line(label: str, values: list[float] | float | None) -> None:
        if values is None:
            print(f"{label:<69} | {'-':>9} | -")
            return
        values = values if isinstance(values, list) else [values]
        print(f"{label:<69} | {median(values):>9.2f} | {len(values)}")

    def phases(found: dict) -> None:
        for label, seconds in found.items():
            print(f"{'    server: ' + label:<69} | {'+' + format(seconds, '.2f'):>9} |")

    for backend, serve in (cold.get("serve_package") or {}).items():
        line(f"cloudml serve PACKAGE ({backend}) process start -> first 200", serve["start_to_first_prediction_s"])
        phases(serve.get("server_phases_s") or {})
    for backend, deploy in (cold.get("deploy") or {}).items():
        line(f"cloudml deploy --runtime {backend} -> first 200 (packaging included)", deploy["deploy_to_first_prediction_s"])
        line("  (the deploy command itself returned after)", deploy["deploy_command_s"])
        phases(deploy["server_phases_s"])
    if cold.get("no_batching_deploy_to_first_prediction_s") is not None:
        line("cloudml deploy (batching off, default runtime) -> first 200", cold["no_batching_deploy_to_first_prediction_s"])
    line('python -c "import tensorflow"', cold.get("tensorflow_import_s"))
    line('python -c "import tensorflow; tf.saved_model.load(package)"', cold.get("tensorflow_import_and_load_s"))
    line('python -c "import onnxruntime; InferenceSession(model.onnx)"', cold.get("onnxruntime_import_and_load_s"))
    mlflow = report.get("mlflow") or {}
    line("mlflow models serve start -> first 200", mlflow.get("start_to_first_prediction_s"))
    r = ratios(figures(report))
    print(f"serve start -> first 200, onnx / tensorflow: {fmt(r['onnx_start_over_tensorflow'], '.2f')}x")
    print(f"cloudml deploy --runtime tensorflow -> first 200 / bare TensorFlow import + load: {fmt(r['cold_start_over_tensorflow'], '.2f')}x")
    if report.get("training_s"):
        print(f"(training the seed CNN took {report['training_s']:.1f} s; not part of any figure)")


def _print_memory(report: dict) -> None:
    memory = report.get("memory") or {}
    if not memory:
        return
    labels = {"onnx": "onnx backend, after the paired rounds", "tensorflow": "tensorflow backend, after the paired rounds",
              "two_processes": "2 processes (CLOUDML_WORKERS=2), after its load"}
    print()
    print("memory per serving process (/proc/PID/status)          |    pid | VmRSS MiB | VmHWM MiB")
    print("-------------------------------------------------------|--------|-----------|----------")
    for key, pids in memory.items():
        for pid, kib in pids.items():
            print(f"{labels.get(key, key):<54} | {pid:>6} | {fmt(kib.get('VmRSS', 0) / 1024, '9.1f')} | {fmt(kib.get('VmHWM', 0) / 1024, '9.1f')}")
    r = ratios(figures(report))
    print(f"RSS per serving process, onnx / tensorflow: {fmt(r['onnx_rss_over_tensorflow'], '.2f')}x")


def _print_targets(report: dict) -> None:
    rows = report.get("targets") or targets(report)
    width = max(len(t["target"]) for t in rows)
    print()
    print(f"targets at {report['settings']['concurrency']} clients (measured, not asserted):")
    for t in rows:
        print(f"  {t['target']:<{width}}  {t['shown']:>12}  {t['verdict']}")
