"""examples/cpp/sample_from_cpp.cpp: a libtorch program calls pysample's ops through the typed wrappers of the
installed header pysample/include/pysample/ops.h, without Python, and gets what the Python API returns. Every
wrapper is called, so a signature that does not match its op's fails here (the dispatcher checks it)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch
from torch.utils import cpp_extension

import pysample
import pysample._C

ROOT = os.path.join(os.path.dirname(__file__), "..")
SOURCE = os.path.join(ROOT, "examples", "cpp", "sample_from_cpp.cpp")
INCLUDE = os.path.join(os.path.dirname(pysample.__file__), "include")  # where the package ships pysample/ops.h


def values(lines: dict, name: str) -> list:
    return [float(v) for v in lines[name].split()]


def floats(lines: dict, name: str) -> torch.Tensor:
    """A line of float32 values: printed with 9 digits, they read back exactly."""
    return torch.tensor(values(lines, name), dtype=torch.float32)


def assert_kept(lines: dict, name: str, warped: torch.Tensor) -> None:
    kept = torch.isfinite(warped)
    assert values(lines, f"{name} kept") == [float(i) for i in kept.nonzero().flatten()]
    assert torch.equal(floats(lines, f"{name} values"), warped[kept])


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++)")
def test_cpp_example_matches_python(tmp_path):
    assert os.path.isfile(os.path.join(INCLUDE, "pysample", "ops.h"))
    binary = tmp_path / "sample_from_cpp"
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    libs = cpp_extension.library_paths()
    command = (
        ["g++", "-std=c++20", "-O1", abi, SOURCE, "-o", str(binary), f"-I{INCLUDE}"]
        + [f"-I{path}" for path in cpp_extension.include_paths()]
        + [f"-L{path}" for path in libs]
        + [f"-Wl,-rpath,{path}" for path in libs]
        + ["-ltorch", "-ltorch_cpu", "-lc10", "-ldl"]
    )
    subprocess.run(command, check=True, timeout=600)
    done = subprocess.run([str(binary), pysample._C.__file__], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())

    torch.manual_seed(0)
    logits = torch.randn(4, 32000) * 3
    tokens = pysample.sample(
        logits, temperature=0.7, top_k=50, top_p=0.9, seed=torch.arange(100, 104), step=torch.full((4,), 5)
    )
    assert values(lines, "sample") == [float(t) for t in tokens]

    assert_kept(lines, "warp", pysample.warp_logits(logits, temperature=0.7, top_k=50, top_p=0.9))
    top_k = torch.tensor([50, 20, 50, 5])
    assert_kept(lines, "warp_", pysample.warp_logits_(logits.clone(), temperature=0.7, top_k=top_k, top_p=0.9))

    scores = logits[:, :64].contiguous()
    ids = torch.arange(40).reshape(4, 10) * 7 % 64
    expected = pysample.apply_penalties(scores, ids, repetition=2.0, presence=0.5, frequency=0.25, output_start=4)
    assert torch.equal(floats(lines, "penalties"), expected.flatten())
    repetition = torch.tensor([1.0, 1.5, 2.0, 3.0])
    expected = pysample.apply_penalties_(
        scores.clone(), ids, repetition=repetition, frequency=0.25, history_start=2, output_start=4
    )
    assert torch.equal(floats(lines, "penalties_"), expected.flatten())
    counts, seen = torch.zeros(4, 64, dtype=torch.int32), torch.zeros(4, 2, dtype=torch.int32)
    torch.ops.pysample.count_tokens_(counts, seen, ids, None, None, 0, None, 4)
    expected = scores.clone()
    torch.ops.pysample.apply_penalty_counts_(expected, counts, seen, None, None, 2.0, None, 0.5, None, 0.25)
    assert torch.equal(floats(lines, "penalty counts"), expected.flatten())

    history = torch.tensor([[1, 2, 3, 1, 2], [4, 4, 0, 4, 4]])
    expected = pysample.no_repeat_ngram(torch.zeros(2, 8), history, ngram_size=3)
    assert torch.equal(floats(lines, "ngram"), expected.flatten())
    expected = pysample.no_repeat_ngram_(torch.zeros(2, 8), history, ngram_size=2)
    assert torch.equal(floats(lines, "ngram_"), expected.flatten())

    packed = pysample.ops.pack_sequences([[4], [1, 2]], [-1.0, 5.0])
    expected = pysample.bias_sequences_(torch.zeros(2, 8), torch.tensor([[0, 1], [1, 0]]), packed)
    assert torch.equal(floats(lines, "bias"), expected.flatten())

    bitmask = torch.tensor([[0b110, 0b10], [-1, -1]], dtype=torch.int32)
    expected = pysample.apply_token_bitmask_(logits[:2, :40].clone(), bitmask)
    assert torch.equal(floats(lines, "bitmask"), expected.flatten())
    assert torch.isfinite(expected[0]).nonzero().flatten().tolist() == [1, 2, 33]
    expected = pysample.apply_token_bitmask_(logits[:, :40].clone(), torch.zeros(4, 2, dtype=torch.int32), [1], 36)
    assert torch.equal(floats(lines, "bitmask rows"), expected.flatten())

    drawn = pysample.sample(
        logits, temperature=0.7, top_k=50, top_p=0.9, seed=torch.arange(100, 104), step=torch.full((4,), 5), n=2
    )
    expected = pysample.token_logprobs(logits, drawn, 3)
    assert torch.equal(floats(lines, "logprobs"), expected.token_logprobs.flatten())
    assert values(lines, "logprob ranks") == [float(r) for r in expected.ranks.flatten()]
    assert values(lines, "top ids") == [float(i) for i in expected.top_ids.flatten()]
    assert torch.equal(floats(lines, "top logprobs"), expected.top_logprobs.flatten())

    keys = torch.arange(24.0).reshape(4, 1, 3, 2)
    cache = [keys, keys * 10]
    pysample.reorder_kv_cache_(cache, torch.tensor([1, 0, 0, 3]), filled_length=2)
    assert torch.equal(floats(lines, "reorder keys"), cache[0].flatten())
    assert torch.equal(floats(lines, "reorder values"), cache[1].flatten())

    step = pysample.beam_search_step(logits, torch.tensor([0.0, -1.5, -0.25, -3.0]), 2, 4)
    assert values(lines, "beam scores") == pytest.approx(step.scores.flatten().tolist(), abs=0, rel=1e-8)
    assert values(lines, "beam tokens") == [float(t) for t in step.tokens.flatten()]
    assert values(lines, "beam sources") == [float(b) for b in step.beams.flatten()]
