"""scripts/cuda_proofs.py: its decoding steps run (on the CPU here, to check them), and its proofs run where CUDA
is available (no host synchronisation; CUDA graph replays equal to eager runs)."""

from __future__ import annotations

import importlib.util
import os

import torch

from conftest import CUDA_SKIP

_PATH = os.path.join(os.path.dirname(__file__), "..", "scripts", "cuda_proofs.py")
_SPEC = importlib.util.spec_from_file_location("cuda_proofs", _PATH)
proofs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(proofs)


def test_steps_run_and_are_deterministic_on_the_cpu():
    logits, ids, seeds, step, beam_scores, caches = proofs.fresh_inputs(3, torch.device("cpu"))
    tokens = proofs.sampling_step(logits.clone(), ids, seeds, step)
    assert tokens.shape == (proofs.BATCH,) and ((tokens >= 0) & (tokens < proofs.VOCAB)).all()
    assert torch.equal(tokens, proofs.sampling_step(logits.clone(), ids, seeds, step))
    moved = [t.clone() for t in caches]
    scores, beam_tokens = proofs.beam_step(logits, beam_scores, moved)
    assert scores.shape == beam_tokens.shape == (proofs.BATCH,)
    assert any(not torch.equal(a, b) for a, b in zip(moved, caches))  # the reorder moved rows


def test_main_without_cuda_says_so(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert proofs.main() == 0
    assert "needs a CUDA GPU; none here, so nothing was checked" in capsys.readouterr().out


@CUDA_SKIP
def test_no_host_sync_and_graph_replays():
    proofs.check_no_host_sync(torch.device("cuda"))
    proofs.check_graph_replays(torch.device("cuda"))
