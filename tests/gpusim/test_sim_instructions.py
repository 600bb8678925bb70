"""The instructions the simulator patches implement or fix (tests/gpusim/patches), each against the host version of
the same CUDA header function, bit for bit (tests/gpusim/instructions_sim.cu). Any of them wrong would make the
launchers' tests fail in ways hard to trace back to one instruction."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from simcase import outputs_or_error, run_program
from warp_compare import assert_same_bits


def conversion_inputs() -> torch.Tensor:
    """Floats exactly halfway between two bfloat16 and two half values (ties, even and odd), around them, and the
    special values."""
    bf16_ties = (
        torch.tensor([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000, 0x7F7F8000, 0x00008000], dtype=torch.int64)
        .to(torch.int32)
        .view(torch.float32)
    )
    f16_ties = torch.tensor([1 + 2.0**-11, 1 + 3 * 2.0**-11, -3.4619140625, 2049.0, 2051.0, 65520.0])
    near = torch.cat([bf16_ties, f16_ties]).view(torch.int32)
    neighbours = torch.cat([near - 1, near + 1]).view(torch.float32)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-8, -1e-40, 3.0e38])
    noise = torch.randn(64, generator=torch.Generator().manual_seed(0))
    return torch.cat([bf16_ties, f16_ties, neighbours, special, noise])


LITERALS = [-4503599627370496, 0x123456789ABCDEF0, 0x100000000, -1, 0x7FFFFFFF80000000]  # as instructions_sim.cu
X64 = torch.tensor([3, -5, 0x7FFFFFFF, 1 << 40, -(1 << 40)])
# beyond 2^24 and 2^53 (rounded by float and double), negative (huge as uint64), ties of float rounding
INTEGERS = torch.tensor(
    [
        0,
        1,
        -1,
        7,
        50,
        -50,
        (1 << 24) + 1,
        (1 << 53) + 1,
        -(1 << 53) - 3,
        (1 << 62) + (1 << 38),
        (1 << 63) - 1,
        -(1 << 63),
        (1 << 25) + 2,
        (1 << 25) + 6,
        123456789012345,
    ]
)


# float -> integer: in range, halves (truncated), beyond 2^31, 2^32, 2^63, 2^64, negative (0 when unsigned), NaN, inf;
# random ones for the fused multiply-add (whose products round differently unfused).
REALS = torch.cat(
    [
        torch.tensor(
            [
                0.0,
                -0.0,
                2.5,
                -2.5,
                2.0**31 + 0.5,
                -(2.0**31) - 1,
                3.0e9,
                2.0**40 + 1,
                -(2.0**40),
                1.0e19,
                2.0**63,
                -(2.0**63),
                -1.0e19,
                2.0**64,
                5e-324,
                float("nan"),
                float("inf"),
                -float("inf"),
            ],
            dtype=torch.float64,
        ),
        torch.randn(61, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e3,
    ]
)


def expected_integer(value: float, bits: int, signed: bool) -> int:
    """PTX's cvt.rzi to an integer: truncated, clamped to the destination's range, NaN 0."""
    if math.isnan(value):
        return 0
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    result = min(max(math.trunc(value), low), high) if math.isfinite(value) else (high if value > 0 else low)
    return result - (1 << 64) if result >= 1 << 63 else result  # as the int64 the program stores


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    inputs = {"x": conversion_inputs(), "x64": X64, "integers": INTEGERS, "reals": REALS}
    return outputs_or_error(run_program("instructions_sim", [("instructions", inputs)])["instructions"])


@pytest.mark.parametrize("what", ["bf16", "bf16_back", "f16", "s_double", "s_float", "u_double", "u_float"])
def test_conversion_matches_the_host(what):
    device, host = simulated()[what], simulated()[f"host_{what}"]
    width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[device.dtype.itemsize]
    bad = (device.view(width) != host.view(width)).nonzero().flatten()
    x = conversion_inputs() if what.startswith(("bf16", "f16")) else INTEGERS
    assert not len(bad), [(x[i].item(), float(device[i]), float(host[i])) for i in bad[:8]]


def test_function_attributes_report_the_ptx_target():
    assert int(simulated()["ptx_version"]) == 80  # compute_80, what CUB picks its tuning by


def test_64_bit_integer_literals():
    assert simulated()["constants"].tolist() == LITERALS
    assert simulated()["sums"].tolist() == [x + k for x, k in zip(X64.tolist(), LITERALS)]


def test_a_called_function_reads_its_callers_frame():
    assert torch.equal(simulated()["called"], simulated()["host_called"])


def test_vector_of_immediates():
    assert torch.equal(simulated()["flagged"], simulated()["host_flagged"])


def test_high_half_of_64_bit_products():
    assert torch.equal(simulated()["mul_hi"], simulated()["host_mul_hi"])


@pytest.mark.parametrize("source", ["double", "float"])
def test_float_to_integer(source):
    values = REALS.tolist() if source == "double" else REALS.float().double().tolist()
    expected = [
        [expected_integer(v, bits, signed) for bits, signed in ((64, True), (64, False), (32, True), (32, False))]
        for v in values
    ]
    actual = simulated()[f"from_{source}"].tolist()
    bad = [(v, a, e) for v, a, e in zip(values, actual, expected) if a != e]
    assert not bad, bad[:8]


@pytest.mark.parametrize("what", ["fused", "fused_float"])
def test_fused_multiply_add_rounds_once(what):
    assert_same_bits(simulated()[what], simulated()[f"host_{what}"])


def test_lane_masks():
    full = (1 << 32) - 1
    expected = [
        [1 << lane, (2 << lane) - 1, (1 << lane) - 1, full & ~((1 << lane) - 1), full & ~((2 << lane) - 1)]
        for lane in range(32)
    ]
    actual = (simulated()["lane_masks"].long() & full).tolist()
    assert actual == [[m & full for m in row] for row in expected]


def test_64_bit_warp_scan():
    values = [(1 << 33) + lane * lane for lane in range(32)]
    assert simulated()["warp_scan"].tolist() == [sum(values[: lane + 1]) for lane in range(32)]
