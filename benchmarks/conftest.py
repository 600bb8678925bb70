"""pytest-benchmark setup for pysample's benchmarks (run them with ``scripts/bench``).

BENCH_THREADS=N sets torch's intra-op threads (pysample's CPU kernel follows the same setting); the default is
torch's own. On a busy shared machine BENCH_THREADS=1 gives steadier numbers: a parallel region of 2 threads on an
oversubscribed machine waits a whole scheduler time slice for its second thread.

The benchmarks run only when ``benchmarks/`` (or a file in it) is named on the command line: a plain ``pytest``
from the repository root collects them but skips them, so they never slow down the test suite.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    threads = os.environ.get("BENCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _named_on_command_line(config: pytest.Config) -> bool:
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if _named_on_command_line(config):
        return
    skip = pytest.mark.skip(reason="benchmarks run only when benchmarks/ is named: scripts/bench")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def _cpu_model() -> str:
    """The CPU's model name, with the widest x86 vector extension it has (the kernels dispatch on it)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return f"{model} ({name})"
    return model


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    import torch
    import transformers

    import pysample

    info = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pysample": pysample.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    machine_info["pysample_bench"] = info
