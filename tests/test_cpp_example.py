"""examples/cpp/sample_from_cpp.cpp: a libtorch program calls pysample's ops through the dispatcher, without Python,
and gets what the Python API returns."""

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


def values(line: str, prefix: str) -> list:
    assert line.startswith(prefix), line
    return [float(v) for v in line[len(prefix) :].split()]


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++)")
def test_cpp_example_matches_python(tmp_path):
    binary = tmp_path / "sample_from_cpp"
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    libs = cpp_extension.library_paths()
    command = (
        ["g++", "-std=c++17", "-O1", abi, SOURCE, "-o", str(binary)]
        + [f"-I{path}" for path in cpp_extension.include_paths()]
        + [f"-L{path}" for path in libs]
        + [f"-Wl,-rpath,{path}" for path in libs]
        + ["-ltorch", "-ltorch_cpu", "-lc10", "-ldl"]
    )
    subprocess.run(command, check=True, timeout=600)
    done = subprocess.run([str(binary), pysample._C.__file__], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()

    torch.manual_seed(0)
    logits = torch.randn(4, 32000) * 3
    tokens = pysample.sample(
        logits, temperature=0.7, top_k=50, top_p=0.9, seed=torch.arange(100, 104), step=torch.full((4,), 5)
    )
    assert values(lines[0], "sample:") == [float(t) for t in tokens]
    step = pysample.beam_search_step(logits, torch.tensor([0.0, -1.5, -0.25, -3.0]), 2, 4)
    assert values(lines[1], "beam scores:") == pytest.approx(step.scores.flatten().tolist(), abs=0, rel=1e-8)
    assert values(lines[2], "beam tokens:") == [float(t) for t in step.tokens.flatten()]
    assert values(lines[3], "beam sources:") == [float(b) for b in step.beams.flatten()]
