"""``python -m pysample bench``: every pysample op at its headline shapes against the transformers code it replaces.

A quick look, not the full suite (``scripts/bench`` runs ``benchmarks/`` with pytest-benchmark): each case times
transformers' processor (or code path) and pysample's on the same inputs, one after the other, and reports the
median of each and their ratio. Prints a table, writes the results as JSON and a PNG plot of the speed-ups (with
matplotlib) into ``--out`` (``bench-results/`` by default), and with ``--compare`` sets the speed-ups beside those
of a saved JSON, in the table and the plot.

    python -m pysample bench [--device cpu|cuda] [--dtype float32] [--batch 1,64] [--vocab 128256]
                             [--seq 2048] [--ops top_p,sample,...] [--out DIR] [--json F] [--plot F]
                             [--compare SAVED.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

HISTORY = 512  # token ids per row for the penalties and n-gram bans
BEAMS = 4
REORDER = dict(layers=30, beams=4, heads=4, head_dim=64)  # the KV-cache reorder's shape, with --seq
OUT_DIR = "bench-results"  # the default --out, git-ignored in this repository
JSON_NAME, PLOT_NAME = "pysample-bench.json", "pysample-bench.png"


class Case(NamedTuple):
    """Two callables doing the same work, transformers' and pysample's, for one op and shape."""

    op: str
    shape: str
    transformers: Callable
    pysample: Callable


def _inputs(batch: int, vocab: int, dtype, device, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, vocab, generator=generator) * 3).to(dtype=dtype, device=device)
    ids = torch.randint(0, min(vocab, 50), (batch, HISTORY), generator=generator).to(device)
    return logits, ids


def _warper_case(op: str, make: Callable, batch: int, vocab: int, dtype, device) -> Case:
    import transformers

    import pysample

    logits, ids = _inputs(batch, vocab, dtype, device)
    theirs = transformers.LogitsProcessorList(make(transformers))
    ours = pysample.fuse(make(pysample))
    return Case(op, f"{batch}x{vocab}", lambda: theirs(ids, logits), lambda: ours(ids, logits))


def _sample_case(batch: int, vocab: int, dtype, device) -> Case:
    import torch
    import transformers

    import pysample

    logits, ids = _inputs(batch, vocab, dtype, device)
    warpers = transformers.LogitsProcessorList([transformers.TopKLogitsWarper(50), transformers.TopPLogitsWarper(0.9)])

    def theirs():
        probs = torch.softmax(warpers(ids, logits).float(), dim=-1)
        return torch.multinomial(probs, 1)

    return Case("sample", f"{batch}x{vocab}", theirs, lambda: pysample.sample(logits, top_k=50, top_p=0.9, seed=0))


def transformers_beam_step(logits, running_scores, beams: int):
    """transformers 5.23's beam step from the float32 logits to the candidates (``_beam_search`` and
    ``_get_top_k_continuations`` in generation/utils.py): (scores, tokens, source beams), each (batch, 2 * beams)."""
    import torch

    batch, vocab = running_scores.shape[0], logits.shape[-1]
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
    log_probs = log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]
    values, indices = torch.topk(log_probs.reshape(batch, -1), k=2 * beams)
    return values, indices % vocab, indices // vocab


def _beam_step_case(batch: int, vocab: int, dtype, device) -> Case:
    import torch

    import pysample

    items = max(1, batch // BEAMS)  # batch rows = items x beams
    logits, _ = _inputs(items * BEAMS, vocab, dtype, device)
    logits = logits.float()
    scores = -torch.rand(items, BEAMS, generator=torch.Generator().manual_seed(1)).to(device) * 10

    return Case(
        "beam_step",
        f"{items}x{BEAMS}beams x{vocab}",
        lambda: transformers_beam_step(logits, scores, BEAMS),
        lambda: pysample.beam_search_step(logits, scores, BEAMS),
    )


def _reorder_case(seq: int, dtype, device) -> Case:
    import torch
    from transformers import DynamicCache

    import pysample

    r = REORDER
    caches = []
    for cls in (DynamicCache, pysample.BeamCache):
        cache = cls()
        keys = torch.randn(r["beams"], r["heads"], seq, r["head_dim"]).to(dtype=dtype, device=device)
        for layer in range(r["layers"]):
            cache.update(keys.clone(), keys.clone(), layer_idx=layer)
        caches.append(cache)
    beam_idx = torch.arange(r["beams"], dtype=torch.int32, device=device)
    beam_idx[1] = 0  # one beam replaced by a copy of another: a typical step
    return Case(
        "kv_reorder",
        f"{r['layers']} layers {r['beams']} beams seq {seq}",
        lambda: caches[0].reorder_cache(beam_idx),
        lambda: caches[1].reorder_cache(beam_idx),
    )


# op -> what it runs, as a list of processors built from a module (transformers or pysample), for the warpers and
# token editors; the other ops build their cases themselves.
PROCESSOR_OPS: Dict[str, Callable] = {
    "top_k+top_p": lambda m: [m.TopKLogitsWarper(50), m.TopPLogitsWarper(0.9)],
    "top_p": lambda m: [m.TopPLogitsWarper(0.9)],
    "min_p": lambda m: [m.MinPLogitsWarper(0.05)],
    "typical": lambda m: [m.TypicalLogitsWarper(0.9)],
    "eta": lambda m: [m.EtaLogitsWarper(3e-4)],
    "repetition_penalty": lambda m: [m.RepetitionPenaltyLogitsProcessor(1.2)],
    "no_repeat_ngram": lambda m: [m.NoRepeatNGramLogitsProcessor(3)],
    "bad_words": lambda m: [
        m.NoBadWordsLogitsProcessor([[i] for i in range(7, 40, 3)] + [[1, 2], [3, 4, 5]], eos_token_id=0)
    ],
}
SHAPED_OPS = {"sample": _sample_case, "beam_step": _beam_step_case}
OPS = list(PROCESSOR_OPS) + list(SHAPED_OPS) + ["kv_reorder"]


def cases(ops: List[str], batches: List[int], vocabs: List[int], seq: int, dtype, device) -> List[Case]:
    out = []
    for op in ops:
        if op == "kv_reorder":
            out.append(_reorder_case(seq, dtype, device))
            continue
        for batch in batches:
            for vocab in vocabs:
                if op in PROCESSOR_OPS:
                    out.append(_warper_case(op, PROCESSOR_OPS[op], batch, vocab, dtype, device))
                else:
                    out.append(SHAPED_OPS[op](batch, vocab, dtype, device))
    return out


def median_time(fn: Callable, device, min_time: float, max_runs: int) -> Tuple[float, int]:
    """Median seconds of one call (after one warm-up call), from at least 5 runs or `min_time` seconds."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times: List[float] = []
    while len(times) < max_runs and (len(times) < 5 or sum(times) < min_time):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def _ratio_cell(ratio: Optional[float]) -> str:
    return "—" if ratio is None else f"{ratio:.1f}x"


def table(results: List[dict], saved: Optional[Dict[tuple, dict]] = None) -> str:
    head = "| op | shape | transformers | pysample | speed-up |"
    rule = "|---|---|---:|---:|---:|"
    if saved is not None:
        head += " saved speed-up | now / saved |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in results:
        line = (
            f"| {r['op']} | {r['shape']} | {r['transformers_s'] * 1e3:.3f} ms | {r['pysample_s'] * 1e3:.3f} ms "
            f"| {r['speedup']:.1f}x |"
        )
        if saved is not None:
            old = saved.get((r["op"], r["shape"]))
            old_speedup = old["speedup"] if old else None
            line += f" {_ratio_cell(old_speedup)} | {_ratio_cell(r['speedup'] / old_speedup if old else None)} |"
        lines.append(line)
    return "\n".join(lines)


def plot(
    results: List[dict], path: str, title: str, saved: Optional[Dict[tuple, dict]] = None, saved_label: str = "saved"
) -> Optional[Dict[str, List[float]]]:
    """A bar per (op, shape): the speed-up, on a log scale, and with `saved` a grey bar beside it for the saved
    run's (none where the saved run lacks the case). Returns the heights drawn, by legend label, as read back from
    the figure; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [f"{r['op']}\n{r['shape']}" for r in results]
    speedups = [r["speedup"] for r in results]
    fig, ax = plt.subplots(figsize=(max(6.0, (0.55 if saved is None else 0.8) * len(results) + 2), 4.5))
    width = 0.8 if saved is None else 0.4
    offset = 0.0 if saved is None else width / 2
    xs = range(len(results))
    bars = ax.bar(
        [x - offset for x in xs],
        speedups,
        width,
        color=["#2a7ab9" if s >= 1 else "#c0392b" for s in speedups],
        label="this run",
    )
    ax.bar_label(bars, labels=[f"{s:.1f}x" for s in speedups], fontsize=6)
    if saved is not None:
        # NaN draws no bar: a case the saved run did not time.
        old = [saved[(r["op"], r["shape"])]["speedup"] if (r["op"], r["shape"]) in saved else math.nan for r in results]
        old_bars = ax.bar([x + offset for x in xs], old, width, color="#999999", label=saved_label)
        ax.bar_label(old_bars, labels=["" if math.isnan(s) else f"{s:.1f}x" for s in old], fontsize=6)
        ax.legend(fontsize=7)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("speed-up over transformers (x, log scale)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _make_parent(path)
    fig.savefig(path, dpi=120)
    drawn = {c.get_label(): [b.get_height() for b in c] for c in ax.containers}
    plt.close(fig)
    return drawn


def _make_parent(path: str) -> None:
    """Make the folder a file is to be written into (--out's default, or a path given), when missing."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)


def _int_list(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pysample bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="logits dtype (the KV cache's too)",
    )
    parser.add_argument("--batch", type=_int_list, default=[1, 64], help="batch sizes, comma-separated (1,64)")
    parser.add_argument("--vocab", type=_int_list, default=[128256], help="vocabulary sizes, comma-separated")
    parser.add_argument("--seq", type=int, default=2048, help="KV-cache length of kv_reorder (30 layers, 4 beams)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of: {', '.join(OPS)}")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timed runs per side and case")
    parser.add_argument("--max-runs", type=int, default=100)
    parser.add_argument(
        "--out", default=OUT_DIR, help=f"folder for the JSON and the plot, made when missing (default: {OUT_DIR})"
    )
    parser.add_argument("--json", default=None, help=f"where to write the results (default: OUT/{JSON_NAME})")
    parser.add_argument("--plot", default=None, help=f"where to write the plot, '' for none (default: OUT/{PLOT_NAME})")
    parser.add_argument("--compare", default=None, help="a JSON written by an earlier run, to set beside this one")
    args = parser.parse_args(argv)

    import torch
    import transformers

    import pysample

    ops = [op for op in args.ops.split(",") if op]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown ops {unknown}; choose from {OPS}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    json_path = args.json or os.path.join(args.out, JSON_NAME)
    plot_path = os.path.join(args.out, PLOT_NAME) if args.plot is None else args.plot
    saved, saved_label = None, "saved"
    if args.compare:
        with open(args.compare) as f:
            saved_run = json.load(f)
        saved = {(r["op"], r["shape"]): r for r in saved_run["results"]}
        saved_label = f"saved: {args.compare} ({saved_run.get('meta', {}).get('date', 'no date')})"

    results = []
    for case in cases(ops, args.batch, args.vocab, args.seq, dtype, device):
        print(f"timing {case.op} {case.shape} ...", file=sys.stderr, flush=True)
        theirs, their_runs = median_time(case.transformers, device, args.min_time, args.max_runs)
        ours, our_runs = median_time(case.pysample, device, args.min_time, args.max_runs)
        results.append(
            dict(
                op=case.op,
                shape=case.shape,
                transformers_s=theirs,
                pysample_s=ours,
                speedup=theirs / ours,
                runs=[their_runs, our_runs],
            )
        )

    meta = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        device=str(device),
        dtype=args.dtype,
        machine=platform.processor() or platform.machine(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        pysample=pysample.__version__,
    )
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    _make_parent(json_path)
    with open(json_path, "w") as f:
        json.dump(dict(meta=meta, results=results), f, indent=1)
    title = (
        f"pysample {meta['pysample']} vs transformers {meta['transformers']}, {meta.get('gpu', device)}, "
        f"{args.dtype}, torch {meta['torch']}, {meta['date']}"
    )
    print(f"\n{title}\n")
    print(table(results, saved))
    print(f"\nmedians of {args.min_time:g} s or more of runs per side; wrote {os.path.abspath(json_path)}", end="")
    if plot_path:
        drawn = plot(results, plot_path, title, saved, saved_label)
        print(
            f" and {os.path.abspath(plot_path)}" if drawn is not None else " (no plot: matplotlib is not installed)",
            end="",
        )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
