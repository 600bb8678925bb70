"""Turns pytest-benchmark's ``--benchmark-json`` output of ``benchmarks/`` into the markdown of ``RESULTS.md``.

Usage::

    python benchmarks/report.py bench.json [-o benchmarks/RESULTS.md]

Per benchmark group (case, shape, device): the median time of transformers, of pysample, and their ratio
(transformers / pysample, so 10x means pysample takes a tenth of the time), all measured in the same run. Groups
of ``test_bench_sample.py`` (``extra_info["kind"] == "sample"``) also hold plain ``torch.multinomial`` and go to
the "Sampling" tables.
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


IMPLS = ("pysample", "transformers", "multinomial", "inplace", "stateful", "legacy", "xgrammar_torch", "vllm_torch")
# extra_info of the pysample benchmark of a group that describes its output, not the group
CHECKS = ("rows_equal", "tokens_in_kept", "tokens_checked")


def format_bar(ratio: Optional[float], bar: Optional[float]) -> str:
    """`ratio`'s verdict against a minimum speed-up `bar` (empty when there is none)."""
    if bar is None:
        return ""
    if ratio is None:
        return f" (bar ≥ {bar:g}x)"
    return f" (bar ≥ {bar:g}x: yes)" if ratio >= bar else f" (bar ≥ {bar:g}x: **no**)"


def format_fraction(row: dict) -> str:
    fraction = row.get("tokens_in_kept")
    if fraction is None:
        return "—"
    checked = row.get("tokens_checked")
    text = f"{fraction:.4f}" if fraction < 1.0 else "1.0"
    return f"{text} of {checked}" if checked else text


def collect(benchmarks: List[dict]) -> List[dict]:
    """One row per group: its extra_info and each implementation's median (s) and rounds."""
    groups: Dict[str, dict] = defaultdict(dict)
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        impl = info.get("impl")
        if impl not in IMPLS:
            continue
        row = groups[bench["group"]]
        row.setdefault("info", {}).update({k: v for k, v in info.items() if k not in ("impl",) + CHECKS})
        row[impl] = bench["stats"]["median"]
        row[impl + "_rounds"] = bench["stats"]["rounds"]
        for check in CHECKS:  # the worst of the group's implementations
            if check in info:
                row[check] = min(row.get(check, info[check]), info[check])
    rows = list(groups.values())
    rows.sort(key=lambda row: row["info"].get("order", 0))
    return rows


def run_date(when: str) -> str:
    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return when


def machine_lines(data: dict) -> List[str]:
    machine = data.get("machine_info", {})
    info = machine.get("pysample_bench", {})
    cpu = info.get("cpu_model") or machine.get("cpu", {}).get("brand_raw") or machine.get("processor", "?")
    cores = info.get("logical_cores") or machine.get("cpu", {}).get("count", "?")
    lines = [f"- Date: {run_date(data.get('datetime', ''))}"]
    lines += [
        f"- Added from a later run on the same machine ({run_date(when)}): {groups} groups, at the end of their tables"
        for when, groups in data.get("later_runs", [])
    ]
    lines += [
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


def sampling_table(device: str, rows: List[dict]) -> List[str]:
    out = [f"## Sampling `pysample.sample`, {device}", ""]
    out.append(
        'One token per row from the logits. "transformers path": the case\'s warpers as a LogitsProcessorList '
        "(Temperature -> TopK -> TopP -> MinP, as `generate()` applies them), then `torch.softmax` and "
        '`torch.multinomial(num_samples=1)`; "torch.multinomial": `torch.softmax` + `torch.multinomial` on the raw '
        "logits, no filter (the same work in every case of a shape). pysample gets a fixed (batch,) int64 seed "
        "tensor and step 0. Ratios are that implementation's time / pysample's. \"In kept set\": the fraction of "
        "pysample's draws (16 steps per row, checked once, untimed) that lie in the set transformers' warpers "
        "keep; below 1 only where a token lies at a top-p / min-p threshold (fixed-point weights)."
    )
    out.append("")
    out.append(
        "| case | batch x vocab | transformers path | torch.multinomial | pysample "
        "| ratio vs transformers | ratio vs multinomial | in kept set |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        info = row["info"]
        pysample_time, transformers_time = row.get("pysample"), row.get("transformers")
        ratio = transformers_time / pysample_time if transformers_time and pysample_time else None
        out.append(
            f"| {info['case']} | {info['batch']}x{info['vocab']} | {format_time(transformers_time)} "
            f"| {format_time(row.get('multinomial'))} | {format_time(pysample_time)} "
            f"| {format_ratio(transformers_time, pysample_time)}"
            f"{format_bar(ratio, info.get('bar_ratio_vs_transformers'))} "
            f"| {format_ratio(row.get('multinomial'), pysample_time)} | {format_fraction(row)} |"
        )
    out.append("")
    return out


def time_and_ratio_cells(row: dict, impls) -> str:
    """For each implementation: its time, and transformers' time over it with its bar (``bar_<impl>``) if any."""
    transformers = row.get("transformers")
    cells = []
    for impl in impls:
        time = row.get(impl)
        ratio = transformers / time if transformers and time else None
        cells.append(
            f"{format_time(time)} | {format_ratio(transformers, time)}"
            f"{format_bar(ratio, row['info'].get('bar_' + impl))}"
        )
    return " | ".join(cells)


def rows_equal_text(row: dict) -> str:
    equal = row.get("rows_equal")
    return "—" if equal is None else f"{equal}/{row['info']['batch']}"


def section(title: str, description: str, header: str, rule: str, lines: List[str]) -> List[str]:
    """A titled table: the description, the header and rule lines, then the rows' lines."""
    return [title, "", description, "", header, rule, *lines, ""]


def penalties_table(device: str, rows: List[dict]) -> List[str]:
    lines = []
    for row in rows:
        info = row["info"]
        cells = time_and_ratio_cells(row, ("pysample", "inplace", "stateful"))
        lines.append(
            f"| {info['batch']}x{info['vocab']} | {info['history']} | {format_time(row.get('transformers'))} "
            f"| {cells} | {rows_equal_text(row)} |"
        )
    return section(
        f"## Penalties, {device}",
        'RepetitionPenalty(1.2) over uniform random histories of L tokens per row. "drop-in": '
        '`pysample.RepetitionPenaltyLogitsProcessor` (returns a new tensor, like transformers); "in place": '
        '`pysample.apply_penalties_`; "stateful": one step of `pysample.PenaltyState` (`append` of the step\'s '
        "tokens + `apply_`), whose cost does not grow with L. In-place rows are restored before each round "
        "(untimed). Ratios: transformers / that implementation.",
        "| batch x vocab | L | transformers | drop-in | ratio | in place | ratio | stateful | ratio | rows equal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        lines,
    )


def token_editor_table(device: str, rows: List[dict]) -> List[str]:
    lines = []
    for row in rows:
        info = row["info"]
        cells = time_and_ratio_cells(row, ("pysample", "inplace"))
        lines.append(
            f"| {info['case']} | {info['batch']}x{info['vocab']} | {info['history']} "
            f"| {format_time(row.get('transformers'))} | {format_time(row.get('legacy'))} | {cells} "
            f"| {rows_equal_text(row)} |"
        )
    return section(
        f"## N-gram bans and sequence bias, {device}",
        'Ids drawn from 50 tokens (n-grams repeat, sequences match). "transformers": its 5.23 processor; '
        '"4.x loop": transformers 4.x\'s NoRepeatNGram (a Python dict of the n-grams of every row); "drop-in": '
        'pysample\'s processor (a new tensor); "in place": the op `pysample.no_repeat_ngram_`, its row restored '
        "before each round (untimed). EncoderNoRepeatNGram: 16 encoder rows of 512 ids x 4 beams, 64 decoded ids (L). "
        "Ratios: transformers / that implementation.",
        "| case | batch x vocab | L | transformers | 4.x loop | drop-in | ratio | in place | ratio | rows equal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        lines,
    )


def against_one_baseline(rows: List[dict], baseline: str) -> List[str]:
    """Table lines of cases timed against a single baseline implementation (its key in the rows: `baseline`)."""
    lines = []
    for row in rows:
        info = row["info"]
        theirs, ours = row.get(baseline), row.get("pysample")
        lines.append(
            f"| {info['case']} | {info['batch']}x{info['vocab']} | {format_time(theirs)} | {format_time(ours)} "
            f"| {format_ratio(theirs, ours)} | {rows_equal_text(row)} |"
        )
    return lines


def token_bitmask_table(device: str, rows: List[dict]) -> List[str]:
    return section(
        f"## Token bitmask, {device}",
        "A grammar's token bitmask (int32 words, xgrammar's layout) applied in place, the logits restored before "
        "each round (untimed): xgrammar's torch-native masking (repeat_interleave, shifts, masked_fill_; eager) "
        "against `pysample.apply_token_bitmask_`. Ratio: xgrammar's torch / pysample.",
        "| mask | batch x vocab | xgrammar torch | pysample | ratio | rows equal |",
        "|---|---|---:|---:|---:|---:|",
        against_one_baseline(rows, "xgrammar_torch"),
    )


def token_logprobs_table(device: str, rows: List[dict]) -> List[str]:
    return section(
        f"## Token logprobs, {device}",
        "The sampled token's log-probability and rank and the top-n tokens with theirs: vLLM's torch path "
        "(log_softmax of the batch, topk, gather, rank by a comparison with the token's logprob) against "
        "`pysample.token_logprobs`. Ratio: vLLM's torch / pysample. Rows equal: ranks and top ids as the reference's.",
        "| case | batch x vocab | vLLM torch | pysample | ratio | rows equal |",
        "|---|---|---:|---:|---:|---:|",
        against_one_baseline(rows, "vllm_torch"),
    )


def reorder_table(device: str, rows: List[dict]) -> List[str]:
    lines = []
    for row in rows:
        info = row["info"]
        t, p = row.get("transformers"), row.get("pysample")
        ratio = t / p if t and p else None
        lines.append(
            f"| {info['layers']} | {info['beams']} | {info['seq']} | {info['dtype']} | {info['pattern']} "
            f"| {format_time(t)} | {format_time(p)} | {format_ratio(t, p)}"
            f"{format_bar(ratio, info.get('bar_pysample'))} |"
        )
    return section(
        f"## KV-cache reorder, {device}",
        "One beam-search reorder of every layer's keys and values, `[beams, 4, seq, 64]` each: transformers' "
        "`DynamicCache.reorder_cache` (an allocating `index_select` per tensor) against `pysample.BeamCache` "
        '(`reorder_kv_cache_`, all tensors in one call, in place). "one change": beam 1 replaced by a copy of '
        'beam 0; "random": beam_idx drawn uniformly. Ratio: transformers / pysample.',
        "| layers | beams | seq | dtype | beam_idx | transformers | pysample | ratio |",
        "|---:|---:|---:|---|---|---:|---:|---:|",
        lines,
    )


def beam_step_table(device: str, rows: List[dict]) -> List[str]:
    lines = []
    for row in rows:
        info = row["info"]
        t, p = row.get("transformers"), row.get("pysample")
        same = info.get("same_candidates")
        lines.append(
            f"| {info['batch']}x{info['beams']} | {info['vocab']} | {format_time(t)} | {format_time(p)} "
            f"| {format_ratio(t, p)} | {'—' if same is None else ('yes' if same else '**no**')} |"
        )
    return section(
        f"## Beam search step, {device}",
        "One beam step from float32 logits `(batch * beams, vocab)`: transformers' code path (log_softmax, plus the "
        "running beam scores, topk of 2 * beams over beams x vocab, index // vocab and % vocab) against "
        '`pysample.beam_search_step` (log-softmax fused, no log-probability tensor). "same": the same '
        "continuations selected (checked once, untimed). Ratio: transformers / pysample.",
        "| batch x beams | vocab | transformers | pysample | ratio | same |",
        "|---|---:|---:|---:|---:|---|",
        lines,
    )


def render(data: dict) -> str:
    rows = collect(data.get("benchmarks", []))
    out = ["# Benchmark results", ""]
    out.append(
        "Median time of one call, pysample against the transformers processors it replaces (applied in order), "
        "float32 logits drawn from N(0, 3²). Ratio = transformers / pysample, measured in the same run. "
        "\"Rows equal\" counts the rows where pysample's output was bitwise equal to transformers' "
        "(checked once, untimed); a row can differ only where a token lies at a threshold (see the README's "
        "[Semantics](../README.md#semantics) section). Rerun with `scripts/bench` (`BENCH_THREADS=1 scripts/bench` "
        "on a busy machine). The performance targets, earlier runs and how much a shared machine moves the numbers: "
        "[HISTORY.md](HISTORY.md)."
    )
    out.append("")
    out.extend(machine_lines(data))
    out.append("")

    sampling = [row for row in rows if row["info"].get("kind") == "sample"]
    penalties = [row for row in rows if row["info"].get("kind") == "penalty"]
    penalty_rows = [row for row in rows if row["info"].get("kind") == "penalty_row"]
    editors = [row for row in rows if row["info"].get("kind") == "token_editor"]
    bitmasks = [row for row in rows if row["info"].get("kind") == "token_bitmask"]
    logprobs = [row for row in rows if row["info"].get("kind") == "token_logprobs"]
    reorders = [row for row in rows if row["info"].get("kind") == "reorder"]
    beam_steps = [row for row in rows if row["info"].get("kind") == "beam_step"]
    rows = [
        row
        for row in rows
        if row["info"].get("kind")
        not in (
            "sample",
            "penalty",
            "penalty_row",
            "token_editor",
            "token_bitmask",
            "token_logprobs",
            "reorder",
            "beam_step",
        )
    ]
    raw = [row for row in rows if "bar_us_per_row" in row["info"]]
    warpers = [row for row in rows if "bar_us_per_row" not in row["info"]]
    devices = []
    for row in (
        warpers + raw + sampling + penalties + penalty_rows + editors + bitmasks + logprobs + reorders + beam_steps
    ):
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
                theirs, ours = row.get("transformers"), row.get("pysample")
                out.append(
                    f"| {info['case']} | {info['batch']}x{info['vocab']} | {format_time(theirs)} "
                    f"| {format_time(ours)} | {format_ratio(theirs, ours)} | {equal_text} |"
                )
            out.append("")
        raw_rows = [row for row in raw if row["info"].get("device") == device]
        if raw_rows:
            out.append(f"## Raw op `pysample.warp_logits_`, in place, {device}")
            out.append("")
            out.append(
                "top_k=50, top_p=0.9 on one row, the row restored from a pristine copy before each call (untimed); "
                'the baseline is transformers\' TopK(50) -> TopP(0.9) list on the same row. "timing thread": the '
                'row is copied by the thread that then runs the op; "torch copy_": by torch\'s copy, split between '
                "the threads (see RESTORES in benchmarks/test_bench_warpers.py)."
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
        sampling_rows = [row for row in sampling if row["info"].get("device") == device]
        if sampling_rows:
            out.extend(sampling_table(device, sampling_rows))
        device_penalties = [row for row in penalties if row["info"].get("device") == device]
        if device_penalties:
            out.extend(penalties_table(device, device_penalties))
        for row in (row for row in penalty_rows if row["info"].get("device") == device):
            info = row["info"]
            time = row.get("inplace")
            meets = "—" if time is None else ("yes" if time * 1e6 <= info["bar_us_per_row"] else "**no**")
            out.append(
                f"{info['case']}, {info['batch']}x{info['vocab']}, history {info['history']}, {device}: "
                f"{format_time(time)} (bar ≤ {info['bar_us_per_row']:g} µs: {meets})"
            )
            out.append("")
        device_editors = [row for row in editors if row["info"].get("device") == device]
        if device_editors:
            out.extend(token_editor_table(device, device_editors))
        device_bitmasks = [row for row in bitmasks if row["info"].get("device") == device]
        if device_bitmasks:
            out.extend(token_bitmask_table(device, device_bitmasks))
        device_logprobs = [row for row in logprobs if row["info"].get("device") == device]
        if device_logprobs:
            out.extend(token_logprobs_table(device, device_logprobs))
        device_reorders = [row for row in reorders if row["info"].get("device") == device]
        if device_reorders:
            out.extend(reorder_table(device, device_reorders))
        device_steps = [row for row in beam_steps if row["info"].get("device") == device]
        if device_steps:
            out.extend(beam_step_table(device, device_steps))
    if not any((rows, sampling, penalties, penalty_rows, editors, bitmasks, logprobs, reorders, beam_steps)):
        out.append("No pysample benchmarks in this file.")
    return "\n".join(out).rstrip() + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "json",
        nargs="+",
        help="pytest-benchmark --benchmark-json output; with several, the first run's machine lines, "
        "and the groups of later files added (or replacing the first's of the same name)",
    )
    parser.add_argument("-o", "--output", help="write the markdown here (default: stdout)")
    args = parser.parse_args(argv)
    with open(args.json[0]) as f:
        data = json.load(f)
    for path in args.json[1:]:
        with open(path) as f:
            later = json.load(f)
        more = {(b["group"], b["extra_info"].get("impl")): b for b in later["benchmarks"]}
        data["benchmarks"] = [b for b in data["benchmarks"] if (b["group"], b["extra_info"].get("impl")) not in more]
        # After the first run's rows in each table, in their own run's order.
        offset = 1 + max((b["extra_info"].get("order", 0) for b in data["benchmarks"]), default=0)
        for bench in more.values():
            bench["extra_info"]["order"] = offset + bench["extra_info"].get("order", 0)
        data["benchmarks"] += list(more.values())
        data.setdefault("later_runs", []).append((later.get("datetime", "?"), len({g for g, _ in more})))
    text = render(data)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
