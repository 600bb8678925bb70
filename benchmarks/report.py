"""Turns pytest-benchmark's ``--benchmark-json`` output of ``benchmarks/`` into the markdown of ``RESULTS.md``.

Usage::

    python benchmarks/report.py bench.json [-o benchmarks/RESULTS.md]

Per benchmark group (case, shape, device): the median time of transformers, of pysample, and their ratio
(transformers / pysample, so 10x means pysample takes a tenth of the time), all measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime
from typing import Dict, List, Optional


def format_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e6:.3g} µs" if seconds < 1e-4 else f"{seconds * 1e6:.0f} µs"


def format_ratio(transformers: Optional[float], pysample: Optional[float]) -> str:
    if not transformers or not pysample:
        return "—"
    ratio = transformers / pysample
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.1f}x"


def collect(benchmarks: List[dict]) -> List[dict]:
    """One row per group: its extra_info and each implementation's median (s) and rounds."""
    groups: Dict[str, dict] = defaultdict(dict)
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        impl = info.get("impl")
        if impl not in ("pysample", "transformers"):
            continue
        row = groups[bench["group"]]
        row.setdefault("info", {}).update({k: v for k, v in info.items() if k not in ("impl", "rows_equal")})
        row[impl] = bench["stats"]["median"]
        row[impl + "_rounds"] = bench["stats"]["rounds"]
        if "rows_equal" in info:
            row["rows_equal"] = info["rows_equal"]
    rows = list(groups.values())
    rows.sort(key=lambda row: row["info"].get("order", 0))
    return rows


def machine_lines(data: dict) -> List[str]:
    machine = data.get("machine_info", {})
    info = machine.get("pysample_bench", {})
    cpu = info.get("cpu_model") or machine.get("cpu", {}).get("brand_raw") or machine.get("processor", "?")
    cores = info.get("logical_cores") or machine.get("cpu", {}).get("count", "?")
    when = data.get("datetime", "")
    try:
        when = datetime.fromisoformat(when.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        pass
    lines = [
        f"- Date: {when}",
        f"- CPU: {cpu}, {cores} logical cores; torch intra-op threads (also pysample's): "
        f"{info.get('torch_threads', '?')}",
    ]
    if info.get("load_average") is not None:
        lines.append(
            "- Load average when the run started (1/5/15 min): "
            + " / ".join(f"{x:.2f}" for x in info["load_average"])
            + " (a shared machine: compare the ratios of one run, not absolute times across runs)"
        )
    if info.get("cuda_device"):
        lines.append(f"- GPU: {info['cuda_device']}")
    lines.append(
        f"- torch {info.get('torch', '?')}, transformers {info.get('transformers', '?')}, "
        f"pysample {info.get('pysample', '?')}, Python {machine.get('python_version', '?')}"
    )
    return lines


def render(data: dict) -> str:
    rows = collect(data.get("benchmarks", []))
    out = ["# Benchmark results", ""]
    out.append(
        "Median time of one call, pysample against the transformers processors it replaces (applied in order), "
        "float32 logits drawn from N(0, 3²). Ratio = transformers / pysample, measured in the same run. "
        "\"Rows equal\" counts the rows where pysample's output was bitwise equal to transformers' "
        "(checked once, untimed); a row can differ only where a token lies at a threshold (see the README's "
        "Semantics section). Rerun with `scripts/bench` (`BENCH_THREADS=1 scripts/bench` on a busy machine)."
    )
    out.append("")
    out.extend(machine_lines(data))
    out.append("")

    raw = [row for row in rows if "bar_us_per_row" in row["info"]]
    warpers = [row for row in rows if "bar_us_per_row" not in row["info"]]
    devices = []
    for row in warpers + raw:
        if row["info"].get("device") not in devices:
            devices.append(row["info"].get("device"))

    for device in devices:
        device_rows = [row for row in warpers if row["info"].get("device") == device]
        if device_rows:
            out.append(f"## Warpers, {device}")
            out.append("")
            out.append("| case | batch x vocab | transformers | pysample | ratio | rows equal |")
            out.append("|---|---|---:|---:|---:|---:|")
            for row in device_rows:
                info = row["info"]
                equal = row.get("rows_equal")
                equal_text = "—" if equal is None else f"{equal}/{info['batch']}"
                out.append(
                    f"| {info['case']} | {info['batch']}x{info['vocab']} | {format_time(row.get('transformers'))} "
                    f"| {format_time(row.get('pysample'))} | {format_ratio(row.get('transformers'), row.get('pysample'))} "
                    f"| {equal_text} |"
                )
            out.append("")
        raw_rows = [row for row in raw if row["info"].get("device") == device]
        if raw_rows:
            out.append(f"## Raw op `pysample.warp_logits_`, in place, {device}")
            out.append("")
            out.append(
                "top_k=50, top_p=0.9 on one row, the row restored from a pristine copy before each call (untimed); "
                "the baseline is transformers' TopK(50) -> TopP(0.9) list on the same row. The restore decides "
                "where the row sits when the call starts: \"timing thread\" copies it on the thread that then runs "
                "the op (in that core's cache, as in llama.cpp's one-core measurement the bar comes from), "
                "\"torch copy_\" with torch's copy, which splits the row between the threads' caches."
            )
            out.append("")
            out.append("| batch x vocab | restore | transformers | pysample | per row | bar | meets bar | ratio |")
            out.append("|---|---|---:|---:|---:|---:|---|---:|")
        for row in raw_rows:
            info = row["info"]
            pysample_time = row.get("pysample")
            per_row = pysample_time / info["batch"] if pysample_time else None
            bar = info["bar_us_per_row"]
            meets = "—" if per_row is None else ("yes" if per_row * 1e6 <= bar else "**no**")
            out.append(
                f"| {info['batch']}x{info['vocab']} | {info.get('restore', 'torch copy_')} "
                f"| {format_time(row.get('transformers'))} "
                f"| {format_time(pysample_time)} | {format_time(per_row)} | ≤ {bar:g} µs | {meets} "
                f"| {format_ratio(row.get('transformers'), pysample_time)} |"
            )
        if raw_rows:
            out.append("")
    if not rows:
        out.append("No pysample/transformers benchmarks in this file.")
    return "\n".join(out).rstrip() + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark --benchmark-json output")
    parser.add_argument("-o", "--output", help="write the markdown here (default: stdout)")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    text = render(data)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
