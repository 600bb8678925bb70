"""CUDA-side proofs, for a machine with a GPU (run by scripts/cuda_proofs after the compute-sanitizer passes):

1. no op synchronises with the host: a whole decoding step runs under torch.cuda.set_sync_debug_mode("error");
2. a full sampling step (penalties -> n-gram ban -> warpers -> sample) and a beam step (+ KV-cache reorder) are
   captured in CUDA graphs and replayed with new logits, seeds and steps, each replay checked against the same step
   run eagerly.

Exits 0 after printing what it checked; on a machine without CUDA it says so and exits 0 without checking anything.
"""

from __future__ import annotations

import sys

import torch

import pysample

BATCH, VOCAB, HISTORY, BEAMS = 8, 32000, 256, 4


def sampling_step(logits, ids, seeds, step):
    """penalties -> 3-gram ban -> temperature / top-k / top-p / min-p -> one token per row, all in place."""
    pysample.apply_penalties_(logits, ids, repetition=1.2, presence=0.3, frequency=0.1)
    pysample.no_repeat_ngram_(logits, ids, ngram_size=3)
    pysample.warp_logits_(logits, temperature=0.8, top_k=50, top_p=0.9, min_p=0.02)
    return pysample.sample(logits, seed=seeds, step=step)


def beam_step(logits, beam_scores, caches):
    step = pysample.beam_search_step(logits, beam_scores, BEAMS)
    # The first BEAMS candidates of each item go on; their source rows are the reorder's beam_idx.
    offsets = torch.arange(logits.shape[0] // BEAMS, device=logits.device)[:, None] * BEAMS
    beam_idx = (step.beams[:, :BEAMS] + offsets).reshape(-1)
    pysample.reorder_kv_cache_(caches, beam_idx)
    return step.scores[:, :BEAMS].reshape(-1), step.tokens[:, :BEAMS].reshape(-1)


def fresh_inputs(seed: int, device):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(BATCH, VOCAB, generator=g) * 3).to(device)
    ids = torch.randint(0, 200, (BATCH, HISTORY), generator=g).to(device)
    seeds = torch.randint(0, 2**62, (BATCH,), generator=g).to(device)
    step = torch.full((BATCH,), seed, dtype=torch.int64).to(device)
    beam_scores = (-torch.rand(BATCH, generator=g) * 5).to(device)
    caches = [torch.randn(BATCH, 4, 64, 32, generator=g).to(device) for _ in range(6)]
    return logits, ids, seeds, step, beam_scores, caches


def check_no_host_sync(device) -> None:
    logits, ids, seeds, step, beam_scores, caches = fresh_inputs(1, device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sampling_step(logits, ids, seeds, step)
        beam_step(logits, beam_scores, caches)
        pysample.fuse(
            [
                pysample.RepetitionPenaltyLogitsProcessor(1.2),
                pysample.NoRepeatNGramLogitsProcessor(3),
                pysample.TopKLogitsWarper(50),
                pysample.TopPLogitsWarper(0.9),
                pysample.EtaLogitsWarper(3e-4, device=device),
            ]
        )(ids, logits)
        state = pysample.PenaltyState(BATCH, VOCAB, device)
        state.append(ids[:, :1])
        state.apply_(logits, repetition=1.1, presence=0.2, frequency=0.1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    print("cuda_proofs: no host synchronisation in a sampling step, a beam step, a fused processor chain, PenaltyState")


def check_graph_replays(device) -> None:
    static = fresh_inputs(2, device)
    logits, ids, seeds, step, beam_scores, caches = static
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the capture, as CUDA graphs need
        for _ in range(2):
            sampling_step(logits.clone(), ids, seeds, step)
            beam_step(logits.clone(), beam_scores, [t.clone() for t in caches])
    torch.cuda.current_stream().wait_stream(stream)

    sample_logits, beam_logits = logits.clone(), logits.clone()
    sample_graph, beam_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(sample_graph):
        tokens = sampling_step(sample_logits, ids, seeds, step)
    with torch.cuda.graph(beam_graph):
        scores, beam_tokens = beam_step(beam_logits, beam_scores, caches)

    for replay in range(3, 8):
        new_logits, new_ids, new_seeds, new_step, new_scores, new_caches = fresh_inputs(replay, device)
        expected_caches = [t.clone() for t in new_caches]
        expected_tokens = sampling_step(new_logits.clone(), new_ids, new_seeds, new_step)
        expected_scores, expected_beam_tokens = beam_step(new_logits.clone(), new_scores, expected_caches)
        for dest, src in (
            (sample_logits, new_logits),
            (beam_logits, new_logits),
            (ids, new_ids),
            (seeds, new_seeds),
            (step, new_step),
            (beam_scores, new_scores),
        ):
            dest.copy_(src)
        for dest, src in zip(caches, new_caches):
            dest.copy_(src)
        sample_graph.replay()
        beam_graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(tokens, expected_tokens), f"replay {replay}: sampled tokens differ from eager"
        assert torch.equal(beam_tokens, expected_beam_tokens) and torch.equal(scores, expected_scores), (
            f"replay {replay}: beam step differs from eager"
        )
        assert all(torch.equal(a, b) for a, b in zip(caches, expected_caches)), f"replay {replay}: caches differ"
    print(
        "cuda_proofs: a sampling step and a beam step + reorder captured in CUDA graphs replay 5 times with new "
        "logits, seeds and steps, equal to eager runs"
    )


def main() -> int:
    if not torch.cuda.is_available():
        print("cuda_proofs: needs a CUDA GPU; none here, so nothing was checked")
        return 0
    device = torch.device("cuda")
    check_no_host_sync(device)
    check_graph_replays(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
