#!/usr/bin/env bash
# Compiles every CUDA source (csrc/cuda/*.cu) with nvcc for sm_80 and sm_90 against the installed torch's headers,
# with the flags of the real build (setup.py and torch's own nvcc flags): the check that the CUDA build is not
# broken, run on machines without a GPU. Any compile error fails the script.
#
# PYTHON: the interpreter whose torch is used (default: python). NVCC or PATH or CUDA_HOME: where nvcc is.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python}

nvcc=${NVCC:-$(command -v nvcc || true)}
for candidate in "${CUDA_HOME:-}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
  [[ -z "$nvcc" && -x "$candidate" ]] && nvcc=$candidate
done
if [[ -z "$nvcc" ]]; then
  echo "check_cuda_compile: nvcc not found (set NVCC or CUDA_HOME, or put it on PATH)" >&2
  exit 1
fi

shopt -s nullglob
sources=("$repo"/csrc/cuda/*.cu)
if (( ${#sources[@]} == 0 )); then
  echo "check_cuda_compile: no CUDA sources in $repo/csrc/cuda" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The CPU wheel of torch lacks this generated header of c10's CUDA build; its content on a CUDA build is this.
mkdir -p "$work/include/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$work/include/c10/cuda/impl/cuda_cmake_macros.h"

mapfile -t torch_flags < <("$python" - <<'PY'
import sysconfig
from torch.utils import cpp_extension
for path in cpp_extension.include_paths():
    print("-I" + path)
print("-I" + sysconfig.get_paths()["include"])
for flag in cpp_extension.COMMON_NVCC_FLAGS:
    print(flag)
PY
)

# --threads 0: the two architectures are compiled in parallel (one per core).
flags=(
  -std=c++20 --expt-relaxed-constexpr --fmad=false -O3 -DPYSAMPLE_WITH_CUDA -Xcompiler -fPIC --threads 0
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
  -I"$repo/csrc/include" -I"$work/include" "${torch_flags[@]}"
)

echo "check_cuda_compile: $("$nvcc" --version | tail -n 1)"
for source in "${sources[@]}"; do
  name=$(basename "$source" .cu)
  start=$SECONDS
  if ! "$nvcc" "${flags[@]}" -c "$source" -o "$work/$name.o"; then
    echo "check_cuda_compile: FAILED to compile ${source#"$repo"/}" >&2
    exit 1
  fi
  echo "check_cuda_compile: ${source#"$repo"/} compiled for sm_80 and sm_90 in $((SECONDS - start)) s"
done
echo "check_cuda_compile: ${#sources[@]} CUDA source(s) compiled"
