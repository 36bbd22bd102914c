"""Benchmark reports: ratios to the baselines and the Markdown table."""

def add_baseline_ratios(rows):
    """Sets ``row["ratio"][baseline label] = row median / baseline median`` for every baseline
    measured at the row's detection count."""
    baselines = [row for row in rows if row["baseline"]]
    for row in rows:
        row["ratio"] = {
            base["label"]: row["median_ms"] / base["median_ms"]
            for base in baselines
            if base["num_detections"] == row["num_detections"]
        }


def _number(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(report):
    """The per-model table: latency, throughput, detections, size, submodule times (and GFLOPs)
    and ratio to each baseline. ONNX Runtime rows are labelled ``<model> [onnxruntime]``."""
    rows = report["models"]
    baselines = list(dict.fromkeys(row["label"] for row in rows if row["baseline"]))
    with_flops = any(row["gflops"] is not None for row in rows)
    with_memory = any(row["peak_memory_mb"] is not None for row in rows)
    modules = list(dict.fromkeys(name for row in rows for name in row["module_median_ms"]))
    module_flops = {name for row in rows for name in row.get("module_gflops", {})}
    header = (
        ["model", "K", "weights", "median ms", "p90 ms", "img/s", "dets/img", "params (M)"]
        + ["GFLOPs"] * with_flops
        + ["peak MB"] * with_memory
        + [
            column
            for name in modules
            for column in [f"{name} ms"] + [f"{name} GFLOPs"] * (name in module_flops)
        ]
        + [f"× {b}" for b in baselines]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["label"] + " (baseline)" * row["baseline"],
            "–" if row["num_detections"] is None else str(row["num_detections"]),
            "random" if row["weights"].startswith("random") else "file",
            _number(row["median_ms"]),
            _number(row["p90_ms"]),
            _number(row["images_per_s"], 2),
            _number(row["detections_mean"]),
            _number(row["params"] / 1e6, 2),
        ]
        cells += [_number(row["gflops"])] * with_flops + [
            _number(row["peak_memory_mb"])
        ] * with_memory
        for name in modules:
            cells.append(_number(row["module_median_ms"].get(name), 2))
            if name in module_flops:
                cells.append(_number(row.get("module_gflops", {}).get(name), 3))
        cells += [_number(row["ratio"].get(b), 2) for b in baselines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_document(report):
    """Environment, settings, table and the weights each model used."""
    env, settings = report["environment"], report["settings"]
    size = settings["input_size"] + (
        "" if "x" in settings["input_size"] else f" (max {settings['max_size']})"
    )
    lines = [
        "# rtinst latency benchmark",
        "",
        f"- date: {env['date']}",
        f"- device: {env['device']} ({env['device_name']}), {env['threads']} threads; "
        f"load average {env['load_average'][1]:.1f} (5 min, this run included) "
        f"on {env['cpu_count']} CPUs",
        f"- torch {env['torch']}, detectron2 {env['detectron2']}, python {env['python']}",
        f"- input size: {size}; {settings['num_images']} images from {settings['images']}",
        f"- {settings['warmup']} warm-up + {settings['iters']} timed iterations per model "
        "(batch 1), "
        "models interleaved",
        "- K: detections per image fixed by the config (– = the model's own thresholds); "
        "× baseline = median / baseline median at the same K",
    ]
    if any(row.get("runtime") == "onnxruntime" for row in report["models"]):
        lines.append(
            "- [onnxruntime]: the model exported to ONNX (whole pipeline at the fixed input size) "
            "and run by ONNX Runtime on the CPU, masks mapped back to the original image as "
            "the PyTorch model does; [onnxruntime int8]: its INT8 quantization"
        )
    if any(row.get("video") for row in report["models"]):
        lines.append(
            "- [video]: the model followed by the online tracker (rtinst.video, every detection "
            "tracked), the images taken as the frames of one video in order; association ms: "
            "the tracker's share"
        )
    lines += [
        "",
        markdown_table(report),
        "",
        "Weights:",
        "",
    ]
    lines += [
        f"- {row['label']}: {row['weights']}"
        for row in report["models"]
        if row["num_detections"] == settings["num_detections"][0]
    ]
    return "\n".join(lines) + "\n"
