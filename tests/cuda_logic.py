"""The CUDA sampler's per-row logic run on the host (tests/cuda_host/sample_host.cu, built here with nvcc): the
pseudo-device "cuda-logic" of test_sample.py, so that the tests comparing tokens check the CUDA kernel's own code
(plan_row, RowView, the radix select, sample_row) on machines without a GPU. Only how the GPU computes the block
primitives (atomics, scans, warp shuffles) is left to a machine with one.

The library is built once per content of its sources and cached in build/cuda_host/.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import torch
from torch.utils import cpp_extension

from pysample import ops

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "cuda_host" / "sample_host.cu"
HEADERS = ROOT / "csrc" / "include"
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def nvcc() -> str | None:
    found = shutil.which("nvcc")
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if found is None and home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
            found = os.path.join(home, "bin", "nvcc")
    return found


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """sample_host.cu built with the flags of the real CUDA build that change results (no FMA contraction)."""
    compiler = nvcc()
    sources = [SOURCE, *sorted(HEADERS.rglob("*"))]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources if p.is_file()))
    digest.update(f"{compiler} {torch.__version__}".encode())
    target = ROOT / "build" / "cuda_host" / f"sample_host-{digest.hexdigest()[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        includes = [
            f"-I{HEADERS}",
            *(f"-I{p}" for p in cpp_extension.include_paths()),
            f"-I{sysconfig.get_paths()['include']}",
        ]
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not nvcc under scripts/test_sanitized's ASan
        subprocess.run(
            [
                compiler,
                "-std=c++20",
                "--expt-relaxed-constexpr",
                "--fmad=false",
                "-O2",
                "-Xcompiler",
                "-fPIC",
                "-shared",
                *includes,
                str(SOURCE),
                "-o",
                str(partial),
            ],
            check=True,
            timeout=900,
            env=env,
        )
        partial.replace(target)
        for stale in target.parent.glob("sample_host-*.so"):  # builds of other sources
            if stale != target:
                stale.unlink(missing_ok=True)
    lib = ctypes.CDLL(str(target))
    p, i64, f64, flag = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_bool
    lib.sample_rows_on_host.argtypes = [
        ctypes.c_int,
        p,
        i64,
        i64,
        i64,
        p,
        f64,
        flag,
        p,
        i64,
        flag,
        p,
        f64,
        flag,
        p,
        f64,
        flag,
        p,
        p,
        i64,
        p,
    ]
    lib.sample_rows_on_host.restype = None
    return lib


def sample(
    logits: torch.Tensor, *, temperature=1.0, top_k=None, top_p=None, min_p=None, seed=None, step=0, n: int = 1
) -> torch.Tensor:
    """pysample.sample's arguments and result, drawn by the CUDA kernel's logic on the host (CPU tensors)."""
    batch, vocab = logits.shape
    logits = logits if logits.stride(1) == 1 else logits.contiguous()
    keep = []  # the tensors whose memory the call reads

    def pointer(t):
        if t is None:
            return None
        keep.append(t)
        return t.data_ptr()

    # The op's own arguments: per stage (per-row tensor or None, scalar or None), then the seed and step tensors.
    args = ops._sample_arguments(
        logits, dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed, step=step)
    )
    stages = []
    for rows, scalar in zip(args[0:8:2], args[1:8:2]):
        stages += [pointer(rows), 0 if scalar is None else scalar, rows is not None or scalar is not None]
    seeds, steps = args[8], args[9]
    tokens = torch.empty(batch, n, dtype=torch.int64)
    library().sample_rows_on_host(
        DTYPE_CODES[logits.dtype],
        pointer(logits),
        logits.stride(0),
        batch,
        vocab,
        *stages,
        pointer(seeds),
        pointer(steps),
        n,
        pointer(tokens),
    )
    return tokens[:, 0] if n == 1 else tokens
