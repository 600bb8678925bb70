"""Running the simulator test programs (tests/gpusim/*_sim.cu, built by scripts/test_gpusim): case files of named
arrays in the format of sim_case.h, and one simulator process per program for all of its cases."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PYSAMPLE_GPUSIM_BIN", ROOT / "build" / "gpusim" / "bin"))
LOGS = BIN.parent / "logs"

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8]

Arrays = Dict[str, torch.Tensor]


def write_case(path: Path, arrays: Arrays) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(arrays)))
        for name, tensor in arrays.items():
            tensor = tensor.detach().contiguous().cpu()
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<BI", DTYPES.index(tensor.dtype), tensor.dim()))
            f.write(struct.pack(f"<{tensor.dim()}q", *tensor.shape))
            f.write(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")


def read_case(path: Path) -> Arrays:
    data = memoryview(path.read_bytes())
    (count,), offset = struct.unpack_from("<I", data), 4
    arrays = {}
    for _ in range(count):
        (length,) = struct.unpack_from("<I", data, offset)
        name = bytes(data[offset + 4 : offset + 4 + length]).decode()
        offset += 4 + length
        code, ndim = struct.unpack_from("<BI", data, offset)
        offset += 5
        shape = struct.unpack_from(f"<{ndim}q", data, offset)
        offset += 8 * ndim
        dtype = DTYPES[code]
        size = dtype.itemsize * int(torch.Size(shape).numel())
        raw = (
            torch.frombuffer(bytearray(data[offset : offset + size]), dtype=torch.uint8)
            if size
            else torch.empty(0, dtype=torch.uint8)
        )
        arrays[name] = raw.view(dtype).reshape(shape)
        offset += size
    return arrays


def run_program(
    program: str, cases: List[Tuple[str, Arrays]], processes: int = 1, timeout: float = 1500
) -> Dict[str, Arrays]:
    """Runs build/gpusim/bin/<program> in the simulator on every case (id, inputs); returns each case's outputs.
    `processes` simulator processes share the cases (round robin) and run at once. The simulator's own output goes to
    build/gpusim/logs/<program>.log (.1.log, ... for the further processes)."""
    binary = BIN / program
    if not cases:
        return {}
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is not built: run scripts/test_gpusim")
    config = Path(os.environ["GPUSIM_CONFIG"])  # set by build/gpusim/env.sh
    LOGS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"gpusim-{program}-") as work:
        runs = []
        for p in range(min(processes, len(cases))):
            folder = Path(work) / str(p)
            folder.mkdir()
            for item in config.iterdir():
                shutil.copy(item, folder)
            args = []
            for i in range(p, len(cases), processes):
                write_case(folder / f"in{i}", cases[i][1])
                args += [f"in{i}", f"out{i}"]
            log = LOGS / (f"{program}.log" if p == 0 else f"{program}.{p}.log")
            with open(log, "w") as out:
                runs.append(
                    (
                        folder,
                        log,
                        subprocess.Popen([str(binary), *args], cwd=folder, stdout=out, stderr=subprocess.STDOUT),
                    )
                )
        for _folder, log, process in runs:
            if process.wait(timeout=timeout) != 0:
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
                raise RuntimeError(f"{program} exited with {process.returncode}; end of {log}:\n{tail}")
        return {case_id: read_case(Path(work) / str(i % processes) / f"out{i}") for i, (case_id, _) in enumerate(cases)}


def outputs_or_error(outputs: Arrays) -> Arrays:
    """The outputs, or an AssertionError with the program's message for a case that failed there."""
    if "error" in outputs:
        raise AssertionError(f"the simulated launch failed: {bytes(outputs['error'].tolist()).decode()}")
    return outputs


def stage_arrays(params: Dict[str, object]) -> Arrays:
    """Warper / sampler parameters as case arrays, as the ops store them: a tensor per row (int64 top_k, float32 the
    others), a scalar 0-d (int64 top_k, float64 the others)."""
    arrays = {}
    for stage, value in params.items():
        if isinstance(value, torch.Tensor):
            arrays[stage] = value.to(torch.int64 if stage == "top_k" else torch.float32)
        else:
            arrays[stage] = torch.tensor(value, dtype=torch.int64 if stage == "top_k" else torch.float64)
    return arrays


def param_args(case: Arrays, name: str, default: Optional[object] = None) -> Tuple[Optional[torch.Tensor], object]:
    """The op's (name_rows, name) pair for a case's parameter: a 1-d array is per row (the scalar then `default`), a
    0-d one a scalar, an absent one (None, default)."""
    value = case.get(name)
    if value is None:
        return None, default
    if value.dim() == 0:
        return None, value.item()
    return value, default


def scores_with_edges(batch: int, vocab: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    """Random scores with zeros, -0.0, -inf and NaN among them."""
    scores = torch.randn(batch, vocab, generator=g) * 4
    scores.view(-1)[:: max(vocab // 3, 1)] = 0.0
    if scores.numel() > 8:
        scores.view(-1)[1], scores.view(-1)[2], scores.view(-1)[3] = -0.0, -float("inf"), float("nan")
    return scores.to(dtype)
