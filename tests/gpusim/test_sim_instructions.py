"""The instructions the simulator patches implement or fix (tests/gpusim/patches), each against the host version of
the same CUDA header function, bit for bit (tests/gpusim/instructions_sim.cu). Any of them wrong would make the
launchers' tests fail in ways hard to trace back to one instruction."""

from __future__ import annotations

import functools

import pytest
import torch

from simcase import outputs_or_error, run_program


def conversion_inputs() -> torch.Tensor:
    """Floats exactly halfway between two bfloat16 and two half values (ties, even and odd), around them, and the
    special values."""
    bf16_ties = torch.tensor([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000, 0x7F7F8000, 0x00008000],
                             dtype=torch.int64).to(torch.int32).view(torch.float32)
    f16_ties = torch.tensor([1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, -3.4619140625, 2049.0, 2051.0, 65520.0])
    near = torch.cat([bf16_ties, f16_ties]).view(torch.int32)
    neighbours = torch.cat([near - 1, near + 1]).view(torch.float32)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-8, -1e-40, 3.0e38])
    return torch.cat([bf16_ties, f16_ties, neighbours, special, torch.randn(64, generator=torch.Generator().manual_seed(0))])


LITERALS = [-4503599627370496, 0x123456789ABCDEF0, 0x100000000, -1, 0x7FFFFFFF80000000]  # as instructions_sim.cu
X64 = torch.tensor([3, -5, 0x7FFFFFFF, 1 << 40, -(1 << 40)])


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    inputs = {"x": conversion_inputs(), "x64": X64}
    return outputs_or_error(run_program("instructions_sim", [("instructions", inputs)])["instructions"])


@pytest.mark.parametrize("what", ["bf16", "bf16_back", "f16"])
def test_conversion_matches_the_host(what):
    device, host = simulated()[what], simulated()[f"host_{what}"]
    width = torch.int16 if device.dtype != torch.float32 else torch.int32
    bad = (device.view(width) != host.view(width)).nonzero().flatten()
    x = conversion_inputs()
    assert not len(bad), [(float(x[i]), float(device[i]), float(host[i])) for i in bad[:8]]


def test_function_attributes_report_the_ptx_target():
    assert int(simulated()["ptx_version"]) == 80  # compute_80, what CUB picks its tuning by


def test_64_bit_integer_literals():
    assert simulated()["constants"].tolist() == LITERALS
    assert simulated()["sums"].tolist() == [x + k for x, k in zip(X64.tolist(), LITERALS)]
