"""Build pysample's compiled ops: the CPU extension always, CUDA sources when torch has CUDA and a toolkit is found.

The package's metadata is in pyproject.toml. USE_CUDA=0 forces a CPU-only build, USE_CUDA=1 requires CUDA. Build
without build isolation (``pip install --no-build-isolation .``): the extension compiles against the installed torch.
"""

import glob
import os
import sys

from setuptools import setup

try:
    from torch.utils import cpp_extension
except ModuleNotFoundError:
    sys.exit(
        "pysample compiles against the torch you have installed, and none is importable here (pip builds in an "
        "isolated environment by default). Install torch first, then build without isolation:\n"
        "    pip install torch\n"
        "    pip install --no-build-isolation ."
    )

HERE = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    flag = os.environ.get("USE_CUDA")
    if flag is not None:
        return flag == "1"
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def extension():
    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -ffp-contract=off: no fused multiply-add contraction, so every CPU build computes the same bits;
    # -fno-trapping-math lets the compiler vectorize loops with float selects (nothing here reads FP exceptions).
    # -fopenmp: at::parallel_for is an inline OpenMP loop, serial unless the extension itself is built with OpenMP.
    # -Wno-psabi: the note that 32-byte vector arguments pass differently without AVX (cpu_rows.h's lane helpers
    # are inlined in each clone; no such argument crosses a call).
    # -g0 overrides Python's own -g: debug information doubles the compile time and makes the library 22 MB; a
    # build that asks for it in CFLAGS (scripts/test_sanitized) keeps it.
    cxx_flags = [
        "-O3",
        "-std=c++20",
        "-ffp-contract=off",
        "-fno-trapping-math",
        "-fvisibility=hidden",
        "-fopenmp",
        "-Wno-psabi",
    ]
    if "-g" not in os.environ.get("CFLAGS", "").split():
        cxx_flags.append("-g0")
    link_flags = ["-fopenmp"]
    include_dirs = [os.path.join(HERE, "csrc", "include")]
    if not want_cuda():
        return cpp_extension.CppExtension(
            "pysample._C",
            cpu_sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    # --fmad=false: no fused multiply-add either, so the GPU computes the same bits as the CPU (exp_nonpos, ...).
    nvcc_flags = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "--fmad=false", "-DPYSAMPLE_WITH_CUDA"]
    return cpp_extension.CUDAExtension(
        "pysample._C",
        cpu_sources + sorted(glob.glob("csrc/cuda/*.cu")),
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags + ["-DPYSAMPLE_WITH_CUDA"], "nvcc": nvcc_flags},
        extra_link_args=link_flags,
    )


setup(ext_modules=[extension()], cmdclass={"build_ext": cpp_extension.BuildExtension})
