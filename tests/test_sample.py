"""pysample.sample: Philox, bit-exactness with pysample.reference.sample, statistics, invariances, greedy, undefined
rows, argument checks and registration. The tests that compare tokens run on the CPU kernel, on the CUDA kernel's
per-row logic run on the host ("cuda-logic", see tests/cuda_logic.py) and, with a GPU, on the CUDA kernel.

Inputs are random logits (a fixed seed per test, fresh ones with PYSAMPLE_TEST_SEED=random; a failure reports its
seed for replay).

Statistical bounds (each assertion fails on a correct op with the probability stated, so a run with fresh seeds fails
falsely with negligible probability; about 20 such assertions run per device):

* chi-square goodness of fit of the empirical counts against the exact drawing probabilities (and against
  transformers' masked softmax): cells are the kept tokens, the least probable ones grouped so that every cell expects
  at least 5 draws; the test fails when the p-value (regularized upper incomplete gamma) is below ``P_MIN = 1e-6``.
* total variation between the empirical frequencies of a row and its exact probabilities: by the
  Bretagnolle-Huber-Carol inequality, P(TV >= t) <= 2^k exp(-2 N t^2) for N draws over k tokens; the bound is the t
  that makes this ``TV_DELTA = 1e-9``.
* transformers' masked softmax (TemperatureLogitsWarper -> TopK -> TopP -> MinP, then softmax in float64) differs
  from the exact drawing probabilities only by the fixed-point weights and float32 exp (2 ulp): TV <= ``HF_TV = 1e-6``
  is asserted, and the empirical frequencies are held to the TV bound plus HF_TV. Rows are drawn with a margin of 1e-4
  from every top-p and min-p threshold so that the kept sets are the same (no rounding decision at a threshold).
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import transformers

import pysample
from pysample import reference as R

import cuda_logic
import warp_compare as W
from conftest import CUDA_SKIP

INF = math.inf
DTYPES = [pytest.param(d, id=str(d).replace("torch.", "")) for d in W.DTYPES]
HEADER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "include")

P_MIN = 1e-6
TV_DELTA = 1e-9
HF_TV = 1e-6


# Where the tests that compare tokens draw: the CPU kernel; "cuda-logic", the CUDA kernel's own per-row code run on
# the host (tests/cuda_logic.py), so that its tokens are checked on machines without a GPU; the CUDA kernel itself.
DRAW_DEVICES = [
    "cpu",
    pytest.param(
        "cuda-logic",
        marks=pytest.mark.skipif(
            cuda_logic.nvcc() is None,
            reason="nvcc not found: the CUDA kernel's logic is built with it to run on the host",
        ),
    ),
    pytest.param("cuda", marks=CUDA_SKIP),
]


@pytest.fixture(params=DRAW_DEVICES)
def draw_device(request) -> str:
    return request.param


def run(device: str, logits: torch.Tensor, **params) -> torch.Tensor:
    """pysample.sample on `device` (tensors moved there), or the CUDA kernel's logic on the host for "cuda-logic";
    result on the CPU."""
    if device == "cuda-logic":
        return cuda_logic.sample(logits, **params)
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in params.items()}
    return pysample.sample(logits.to(device), **moved).cpu()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seeds_for(batch: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(-(2**63), 2**63 - 1, (batch,), dtype=torch.int64, generator=g)


# ---- Philox and the header's building blocks -----------------------------------------------------------------------

PHILOX_KAT = [  # Random123's known-answer vectors of philox4x32_10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    assert tuple(R.philox4x32_10(counter, key)) == expected


def test_draw_bits_known_answer_and_vectorized(seed):
    assert R.draw_bits(1, 2, 3) == 0xDE08BF52663EFF4F  # computed from csrc/include/pysample/sample.h
    rng = np.random.default_rng(seed)
    for _ in range(20):
        s, t = int(rng.integers(0, 2**64, dtype=np.uint64)), int(rng.integers(0, 2**64, dtype=np.uint64))
        draws = rng.integers(0, 2**32, 16, dtype=np.uint64)
        assert R.draw_bits_array(s, t, draws).tolist() == [R.draw_bits(s, t, int(d)) for d in draws]
    # int64 seeds and steps are the same bits as their uint64 values
    assert R.draw_bits(-1, -2, 7) == R.draw_bits(2**64 - 1, 2**64 - 2, 7)


@pytest.fixture(scope="module")
def header_lib(tmp_path_factory):
    """The header's exp_nonpos, sample_weight, Philox and draw_bits compiled as the extension is (no FMA contraction,
    here for this machine's vector units), and the CPU kernels' AVX-512 exp_nonpos16 where the compiler has it, through
    ctypes."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        pytest.skip("no C++ compiler to build the header harness")
    folder = tmp_path_factory.mktemp("sample_header")
    source = folder / "harness.cpp"
    source.write_text(
        '#include "pysample/sample.h"\n'
        '#include "pysample/exp_avx512.h"\n'
        'extern "C" {\n'
        "#ifdef PYSAMPLE_HAS_EXP_AVX512\n"
        'int has_exp16() { return __builtin_cpu_supports("avx512f"); }\n'
        '__attribute__((target("avx512f"))) void exp16_many(const float* x, float* out, long n) {\n'
        "  for (long i = 0; i < n; i += 16) {\n"
        "    _mm512_storeu_ps(out + i, pysample::exp_nonpos16(_mm512_loadu_ps(x + i)));\n  }\n}\n"
        "#else\n"
        "int has_exp16() { return 0; }\n"
        "void exp16_many(const float*, float*, long) {}\n"
        "#endif\n"
        "void fma_many(const float* a, const float* b, const float* c, float* out, long n) {\n"
        "  for (long i = 0; i < n; ++i) out[i] = fmaf(a[i], b[i], c[i]);\n}\n"
        "void exp_many(const float* x, float* out, long n) {\n"
        "  for (long i = 0; i < n; ++i) out[i] = pysample::exp_nonpos(x[i]);\n}\n"
        "void weight_many(const float* y, float m, uint64_t* out, long n) {\n"
        "  for (long i = 0; i < n; ++i) out[i] = pysample::sample_weight(y[i], m);\n}\n"
        "void philox(const uint32_t* c, const uint32_t* k, uint32_t* out) {\n"
        "  const pysample::Philox4x32 r = pysample::philox4x32_10({{c[0], c[1], c[2], c[3]}}, k[0], k[1]);\n"
        "  for (int i = 0; i < 4; ++i) out[i] = r.x[i];\n}\n"
        "uint64_t bits(uint64_t seed, uint64_t step, uint32_t draw) { return pysample::draw_bits(seed, step, draw); }\n"
        "}\n"
    )
    library = folder / "harness.so"
    flags = ["-O3", "-std=c++20", "-ffp-contract=off", "-shared", "-fPIC", f"-I{HEADER_DIR}"]
    native = subprocess.run([compiler, *flags, "-march=native", str(source), "-o", str(library)], capture_output=True)
    if native.returncode != 0:
        subprocess.run([compiler, *flags, str(source), "-o", str(library)], check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.fma_many.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long]
    lib.exp_many.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.exp16_many.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.weight_many.argtypes = [ctypes.c_void_p, ctypes.c_float, ctypes.c_void_p, ctypes.c_long]
    lib.philox.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.bits.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32]
    lib.bits.restype = ctypes.c_uint64
    return lib


def exp_arguments(rng) -> np.ndarray:
    """Arguments of exp_nonpos: special values, uniform over its range, near 0, and any bits of a float in [-110, 0]
    (a multiple of 16 of them)."""
    special = np.array(
        [
            0.0,
            -0.0,
            -INF,
            -104.0,
            -103.97,
            -103.0,
            -87.33655,
            -88.0,
            -1e-45,
            -1e-38,
            -1e-7,
            -0.5,
            -0.6931472,
            -1.0,
            -2.0,
            -149.0,
            -1e30,
            -105.0,
            -150.0,
        ],
        dtype=np.float32,
    )
    return np.concatenate(
        [
            special,
            -rng.random(300_013, dtype=np.float32) * 110,  # uniform over the whole range
            -rng.random(100_000, dtype=np.float32) * 0.01,  # near 0
            rng.integers(0x80000000, 0xC2E00000, 300_000, dtype=np.uint64)
            .astype(np.uint32)
            .view(np.float32),  # any bits
        ]
    ).astype(np.float32)


def test_reference_fma_bitwise_equal_fmaf(header_lib, seed):
    """The reference's fused multiply-add (a float64 sum rounded to odd) rounds once, as C's fmaf: on random triples,
    and on products of 13-bit significands (26 bits: often halfway between two floats) plus a tiny or no addend, where
    rounding the float64 sum to nearest first would round twice."""
    rng = np.random.default_rng(seed)
    n = 200_000

    def short(size):  # 13 significant bits, either sign, exponents in [-4, 4]
        return rng.integers(4096, 8192, size) * 2.0 ** rng.integers(-16, -8, size) * rng.choice([-1, 1], size)

    a = np.concatenate([rng.standard_normal(n), short(n)]).astype(np.float32)
    b = np.concatenate([rng.standard_normal(n), short(n)]).astype(np.float32)
    tiny = rng.choice([0.0, 2.0**-60, -(2.0**-60), 2.0**-40], n) * rng.random(n)
    c = np.concatenate([rng.standard_normal(n), tiny]).astype(np.float32)
    out = np.empty_like(a)
    header_lib.fma_many(a.ctypes.data, b.ctypes.data, c.ctypes.data, out.ctypes.data, a.size)
    ref = R._fma(a, b, c)
    bad = np.flatnonzero(ref.view(np.uint32) != out.view(np.uint32))
    assert bad.size == 0, [(float(a[i]), float(b[i]), float(c[i]), float(ref[i]), float(out[i])) for i in bad[:10]]
    # the cases it is there for: a plain float64 sum rounded to float32 differs from fmaf on some of them
    naive = (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)
    assert np.any(naive.view(np.uint32) != out.view(np.uint32))


def test_exp_nonpos16_bitwise_equal_reference(header_lib, seed):
    """The CPU kernels' exp on AVX-512 (rounding to an integer and scaling by 2^n in one instruction each) gives
    exp_nonpos's bits. (Every float in [-110, 0] was compared once, offline.)"""
    if not header_lib.has_exp16():
        pytest.skip("no AVX-512 on this CPU, or a compiler without its intrinsics: exp_nonpos16 is not used")
    x = exp_arguments(np.random.default_rng(seed))
    out = np.empty_like(x)
    header_lib.exp16_many(x.ctypes.data, out.ctypes.data, x.size)
    ref = R.exp_nonpos(x)
    bad = np.flatnonzero(ref.view(np.uint32) != out.view(np.uint32))
    assert bad.size == 0, [(float(x[i]), float(ref[i]), float(out[i])) for i in bad[:10]]


def test_reference_exp_and_weight_bitwise_equal_header(header_lib, seed):
    rng = np.random.default_rng(seed)
    x = exp_arguments(rng)
    out = np.empty_like(x)
    header_lib.exp_many(x.ctypes.data, out.ctypes.data, x.size)
    ref = R.exp_nonpos(x)
    bad = np.flatnonzero(ref.view(np.uint32) != out.view(np.uint32))
    assert bad.size == 0, [(float(x[i]), float(ref[i]), float(out[i])) for i in bad[:10]]
    # and it is exp within 2 ulp (a check of the reference itself, against float64)
    finite = x[x > -87]
    exact = np.exp(finite.astype(np.float64))
    assert np.all(np.abs(R.exp_nonpos(finite) - exact) <= 2.5 * np.spacing(exact.astype(np.float32)))

    for scale in (0.3, 3.0, 30.0):
        y = (rng.standard_normal(100_000) * scale).astype(np.float32)
        y[rng.random(y.size) < 0.01] = -INF
        m = np.float32(y.max())
        w = np.empty(y.size, dtype=np.uint64)
        header_lib.weight_many(y.ctypes.data, float(m), w.ctypes.data, y.size)
        assert np.array_equal(R.sample_weight(y, m), w)
        assert R.sample_weight(m, m)[()] == 2**40


def test_reference_philox_equal_header(header_lib, seed):
    rng = np.random.default_rng(seed)
    for counter, key, expected in PHILOX_KAT:
        out = np.empty(4, dtype=np.uint32)
        header_lib.philox(
            np.array(counter, np.uint32).ctypes.data, np.array(key, np.uint32).ctypes.data, out.ctypes.data
        )
        assert tuple(out.tolist()) == expected
    for _ in range(200):
        s, t = (int(v) for v in rng.integers(0, 2**64, 2, dtype=np.uint64))
        d = int(rng.integers(0, 2**32))
        assert header_lib.bits(s, t, d) == R.draw_bits(s, t, d)


# ---- exactness: the op's tokens are the reference's ----------------------------------------------------------------

TEMPERATURES = [None, 0.0, 0.05, 0.7, 1.0, 1.5, 100.0, 1e-50, "rows"]
TOP_KS = [None, 0, 1, 2, 50, "V", "V+1", "rows"]
TOP_PS = [None, 0.0, 0.3, 0.9, 1.0, "rows"]
MIN_PS = [None, 0.0, 0.05, 0.5, 1.0, "rows"]


def random_params(batch: int, vocab: int, g: torch.Generator) -> dict:
    """One random combination of the parameters: scalars at and beyond the edges, 0-d tensors and per-row tensors."""

    def pick(values):
        return values[int(torch.randint(len(values), (), generator=g))]

    params = {}
    t = pick(TEMPERATURES)
    if t == "rows":
        t = torch.tensor([0.0, 0.5, 1.0, 1.7])[torch.randint(4, (batch,), generator=g)]
        t = torch.where(torch.rand(batch, generator=g) < 0.5, t, torch.rand(batch, generator=g) * 2 + 0.05)
    params["temperature"] = t
    k = pick(TOP_KS)
    if k == "rows":
        k = torch.randint(0, min(vocab, 60) + 2, (batch,), generator=g)
    params["top_k"] = {"V": vocab, "V+1": vocab + 1}.get(k, k) if not isinstance(k, torch.Tensor) else k
    p = pick(TOP_PS)
    params["top_p"] = torch.rand(batch, generator=g) if p == "rows" else p
    m = pick(MIN_PS)
    params["min_p"] = torch.rand(batch, generator=g) * 0.3 if m == "rows" else m
    for name in ("temperature", "top_p", "min_p"):  # sometimes a 0-d tensor
        v = params[name]
        if isinstance(v, float) and v <= 1e3 and float(torch.rand((), generator=g)) < 0.2:
            params[name] = torch.tensor(v)
    return {k: v for k, v in params.items() if v is not None}


def scaled_greedy_hazard(logits: torch.Tensor, params: dict) -> bool:
    """Whether a row is greedy by top_k = 1 with a temperature other than 0 and 1 (see
    test_top_k_1_greedy_reads_the_scaled_logits): kept out of the random sweep, tested on its own."""
    t, k = params.get("temperature"), params.get("top_k")
    batch = logits.shape[0]
    ts = R._row_values(t, batch, torch.float32)
    ks = R._row_values(k, batch, torch.int64)
    return any(kk == 1 and tt is not None and tt not in (0.0, 1.0) for tt, kk in zip(ts, ks))


def assert_tokens_equal(logits, out, expected, params):
    if not torch.equal(out, expected):
        rows = (out != expected).reshape(out.shape[0], -1).any(-1).nonzero().flatten().tolist()
        raise AssertionError(
            f"rows {rows} differ: op {out[rows].tolist()} reference {expected[rows].tolist()}; "
            f"params {params}; first row {logits[rows[0]].tolist()[:40]}"
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab", [1, 2, 17, 1000, 4999])
def test_tokens_equal_reference(draw_device, dtype, vocab, seed):
    g = gen(seed)
    batch = 14
    for case in range(10):
        logits = W.make_logits(batch, vocab, dtype, seed + case)
        params = random_params(batch, vocab, g)
        if scaled_greedy_hazard(logits, params):
            params["temperature"] = 1.0
        n = [1, 3, 16][case % 3]
        row_seed = seeds_for(batch, g) if case % 2 else int(torch.randint(0, 2**62, (), generator=g))
        step = torch.randint(0, 2**40, (batch,), generator=g) if case % 4 == 1 else case
        out = run(draw_device, logits, **params, seed=row_seed, step=step, n=n)
        expected = R.sample(logits, **params, seed=row_seed, step=step, n=n)
        assert out.shape == expected.shape == ((batch,) if n == 1 else (batch, n))
        assert_tokens_equal(logits, out, expected, params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tokens_equal_reference_llama3_vocab(draw_device, dtype, seed):
    g = gen(seed)
    vocab = 128256
    logits = W.make_logits(4, vocab, dtype, seed, kinds=("normal", "ties", "neg_inf", "peaked"))
    logits[:, :] = logits * 3  # a wider distribution: top-p's boundary among many tokens
    for params in (
        {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "min_p": 0.05},
        {"top_p": 0.95},
        {"temperature": 1.3, "min_p": torch.rand(4, generator=g) * 0.1},
        {},
    ):
        s = seeds_for(4, g)
        out = run(draw_device, logits, **params, seed=s, step=11, n=8)
        assert_tokens_equal(logits, out, R.sample(logits, **params, seed=s, step=11, n=8), params)


@pytest.mark.parametrize("top_p", [0.3, 0.9])
def test_tokens_equal_reference_crowded_crossing_bin(draw_device, seed, top_p):
    """Top-p's crossing bin holding nearly the whole row, split into finer bins (W.crowded_rows)."""
    logits = W.crowded_rows(seed)
    s = seeds_for(logits.shape[0], gen(seed))
    out = run(draw_device, logits, top_p=top_p, seed=s, step=3, n=16)
    assert_tokens_equal(logits, out, R.sample(logits, top_p=top_p, seed=s, step=3, n=16), {"top_p": top_p})


@pytest.mark.parametrize("top_p", [0.5, 0.9])
def test_tokens_equal_reference_mass_away_from_the_sample(draw_device, seed, top_p):
    """Rows whose mass lies where the CPU kernel's estimate of top-p's crossing mostly does not look
    (W.unsampled_mass_rows)."""
    logits = W.unsampled_mass_rows(seed)
    s = seeds_for(logits.shape[0], gen(seed))
    out = run(draw_device, logits, top_p=top_p, seed=s, step=5, n=16)
    assert_tokens_equal(logits, out, R.sample(logits, top_p=top_p, seed=s, step=5, n=16), {"top_p": top_p})


def test_one_draw_of_top_p_on_either_half(draw_device, seed):
    """One draw with top-p alone, on rows of many chunks, landing in the first and in the second half of the kept
    mass: every token is the reference's."""
    g = gen(seed)
    logits = W.make_logits(48, 20000, torch.float32, seed, kinds=("normal", "ties", "neg_inf")) * 3
    s = seeds_for(48, g)
    out = run(draw_device, logits, top_p=0.9, seed=s)
    assert_tokens_equal(logits, out, R.sample(logits, top_p=0.9, seed=s), {"top_p": 0.9})
    _, probs = R.sample_distribution(logits, top_p=0.9)
    before = probs.cumsum(-1).gather(1, out.unsqueeze(1)).squeeze(1) - probs.gather(1, out.unsqueeze(1)).squeeze(1)
    assert (before < 0.45).any() and (before > 0.55).any()


def test_tokens_equal_reference_exact_top_p_boundaries(draw_device, seed):
    """Rows of equal weights where the mass before a token is exactly top_p times the total: that token goes."""
    g = gen(seed)
    logits = torch.zeros(6, 8)
    logits[:, 4:] = -INF  # 4 equal tokens
    top_p = torch.tensor([0.5, 0.25, 0.75, 0.5000001, 0.2499999, 1.0])
    keep, _ = R.sample_distribution(logits, top_p=top_p)
    assert keep[:, :4].sum(-1).tolist() == [2, 1, 3, 3, 1, 4]
    s = seeds_for(6, g)
    out = run(draw_device, logits, top_p=top_p, seed=s, n=64)
    assert torch.equal(out, R.sample(logits, top_p=top_p, seed=s, n=64))
    for r, kept in enumerate([2, 1, 3, 3, 1, 4]):  # ties: the higher ids first, as the warpers
        assert set(out[r].tolist()) == set(range(4 - kept, 4))  # 64 draws cover them (failure < 4 (3/4)^64)


def weight_of(y: float) -> int:
    return int(R.sample_weight(np.float32(y), np.float32(0.0))[()])


def logit_with_weight(target: int) -> tuple:
    """A float32 y <= 0 of weight (against a max of 0) at most `target` and as large as a bisection over the float
    bits finds (weights grow with y), and that weight."""
    if target <= 0:
        return -INF, 0
    more, less = 0x80000000, 0xC2D00000  # bits of -0.0 (weight 2^40) and of -104.0 (weight 0)
    while less - more > 1:  # negative floats: larger bits, smaller y
        mid = (more + less) // 2
        if weight_of(np.uint32(mid).view(np.float32)) <= target:
            less = mid
        else:
            more = mid
    y = np.uint32(less).view(np.float32)
    return float(y), weight_of(y)


def test_draw_at_the_exact_boundary(draw_device, seed):
    """Rows built so that draw 0's target is exactly the running weight of token 0 (2^40), or one below: the op must
    draw token 1, or token 0. Every weight counts to the unit: one ulp of exp_nonpos on token 1's weight, a sum or a
    rounding off by one, or a draw rule of ">=" instead of ">" changes the token."""
    g = gen(seed)
    small = {}  # 2^k -> a logit of exactly that weight
    for k in range(18):
        y, w = logit_with_weight(2**k)
        assert w == 2**k
        small[k] = y
    rows, expected, seeds = [], [], []
    while len(rows) < 24:
        s = int(seeds_for(1, g))
        u = R.draw_bits(s, 0, 0)
        if u < 2**63 + 2**56 or u > 2**64 - 2**48:
            continue  # token 1's weight would be above the max's, or tiny
        boundary = -(-(2**104) // u) - 2**40  # the least kept weight past token 0 with a target of 2^40
        for rest, token in ((boundary, 1), (boundary - 1, 0)):
            y1, w1 = logit_with_weight(rest)
            remainder = rest - w1
            assert 0 <= remainder < 2**18  # one ulp of a weight in [2^39, 2^40) is 2^16
            row = torch.full((20,), -INF)
            row[0], row[1] = 0.0, y1
            for k in range(18):
                if remainder >> k & 1:
                    row[2 + k] = small[k]
            assert int(sum(weight_of(v) for v in row.tolist())) == 2**40 + rest
            rows.append(row)
            expected.append(token)
            seeds.append(s)
    logits, seeds = torch.stack(rows), torch.tensor(seeds)
    expected = torch.tensor(expected)
    assert torch.equal(R.sample(logits, seed=seeds), expected)
    assert torch.equal(run(draw_device, logits, seed=seeds), expected)
    # the same rows with the tokens after token 1 moved to the end of a longer row: the same draws
    wide = torch.cat([logits[:, :2], torch.full((logits.shape[0], 3000), -INF), logits[:, 2:]], 1)
    assert torch.equal(run(draw_device, wide, seed=seeds), expected)
    # with a top-p that keeps every token: the CPU then sums only the chunks the draw walks (from the row's end here,
    # the target lying past half the kept weight), also with token 1 first in a later chunk (of 256 tokens)
    assert torch.equal(run(draw_device, wide, seed=seeds, top_p=1 - 2**-50), expected)
    later = torch.cat([logits[:, :1], torch.full((logits.shape[0], 511), -INF), logits[:, 1:]], 1)
    assert torch.equal(run(draw_device, later, seed=seeds, top_p=1 - 2**-50), expected * 512)


# ---- statistics ----------------------------------------------------------------------------------------------------

# (vocab, parameters): each setting draws STAT_ROWS rows x STAT_SEEDS seeds x STAT_DRAWS draws (> 1e6 in all).
STAT_SETTINGS = {
    "plain-V10": (10, {}),
    "temperature-V24": (24, {"temperature": 0.6}),
    "top_k-V20": (20, {"temperature": 0.7, "top_k": 8}),
    "top_p-V32": (32, {"top_p": 0.8}),
    "min_p-V50": (50, {"min_p": 0.1}),
    "all-V50": (50, {"temperature": 1.5, "top_k": 20, "top_p": 0.9, "min_p": 0.05}),
    "top_p+min_p-V40": (40, {"temperature": 0.5, "top_p": 0.6, "min_p": 0.2}),
    "neg_inf-V30": (30, {"temperature": 2.0, "top_p": 0.95}),
}
STAT_ROWS, STAT_SEEDS, STAT_DRAWS = 4, 4, 8192


def hf_probabilities(logits: torch.Tensor, params: dict) -> torch.Tensor:
    """transformers' warpers in generate()'s order on float32 logits, then softmax in float64, ``(batch, vocab)``."""
    x = logits.float()
    if "temperature" in params:
        x = transformers.TemperatureLogitsWarper(params["temperature"])(None, x)
    if "top_k" in params:
        x = transformers.TopKLogitsWarper(params["top_k"])(None, x)
    if "top_p" in params:
        x = transformers.TopPLogitsWarper(params["top_p"])(None, x)
    if "min_p" in params:
        x = transformers.MinPLogitsWarper(params["min_p"])(None, x)
    return torch.softmax(x.double(), -1)


def has_margin(row: torch.Tensor, params: dict, margin: float = 1e-4) -> bool:
    """Whether every top-p and min-p decision of the row is at least `margin` from its threshold (float64 maths),
    and no two logits are equal: the kept set is then the same whatever the rounding."""
    y = row.double() / params.get("temperature", 1.0)
    if torch.unique(row).numel() != row.numel() - max(int(row.isneginf().sum()) - 1, 0):
        return False
    if "top_k" in params:
        y = torch.where(y >= torch.topk(y, params["top_k"]).values[-1], y, -INF)
    p = torch.softmax(y, -1)
    if "top_p" in params:
        sorted_p = torch.sort(p, descending=True).values
        before = torch.cumsum(sorted_p, 0) - sorted_p
        if (before[sorted_p > 0] - params["top_p"]).abs().min() < margin:
            return False
    if "min_p" in params:
        ratio = p / p.max()
        if (ratio[p > 0] - params["min_p"]).abs().min() < margin:
            return False
    return True


def stat_logits(vocab: int, params: dict, name: str, g: torch.Generator) -> torch.Tensor:
    rows = []
    while len(rows) < STAT_ROWS:
        row = torch.randn(vocab, generator=g) * float(torch.empty(()).uniform_(0.5, 2.5, generator=g))
        if name.startswith("neg_inf"):
            row[torch.randperm(vocab, generator=g)[: vocab // 3]] = -INF
        if has_margin(row, params):
            rows.append(row)
    return torch.stack(rows)


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square test of counts ``(rows, vocab)`` against probabilities ``(rows, vocab)`` (each row its
    own multinomial): per row, cells of expected count < 5 are grouped, the least probable together, until every
    cell expects >= 5. Returns the p-value."""
    stat, df = 0.0, 0
    for c, p in zip(counts.double(), probs.double()):
        total = float(c.sum())
        order = torch.argsort(p)
        cells, acc_c, acc_e = [], 0.0, 0.0
        for i in order.tolist():
            acc_c += float(c[i])
            acc_e += float(p[i]) * total
            if acc_e >= 5:
                cells.append((acc_c, acc_e))
                acc_c, acc_e = 0.0, 0.0
        if acc_e > 0 or acc_c > 0:  # what is left is less than 5 expected: onto the last cell
            last_c, last_e = cells.pop()
            cells.append((last_c + acc_c, last_e + acc_e))
        stat += sum((o - e) ** 2 / e for o, e in cells)
        df += len(cells) - 1
    if df == 0:
        return 1.0
    return float(
        torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64))
    )


def tv_bound(draws: int, support: int, delta: float = TV_DELTA) -> float:
    """t with 2^support exp(-2 draws t^2) = delta (Bretagnolle-Huber-Carol): P(TV >= t) <= delta."""
    return math.sqrt((support * math.log(2) + math.log(1 / delta)) / (2 * draws))


@pytest.mark.parametrize("name", list(STAT_SETTINGS))
def test_statistics(draw_device, name, seed):
    vocab, params = STAT_SETTINGS[name]
    g = gen(seed)
    logits = stat_logits(vocab, params, name, g)
    keep, probs = R.sample_distribution(logits, **params)
    hf = hf_probabilities(logits, params)
    batch = logits.repeat_interleave(STAT_SEEDS, 0)  # each row STAT_SEEDS times, with distinct seeds
    seeds = seeds_for(batch.shape[0], g)
    tokens = run(
        draw_device, batch, **params, seed=seeds, step=int(torch.randint(0, 2**62, (), generator=g)), n=STAT_DRAWS
    )
    tokens = tokens.reshape(STAT_ROWS, STAT_SEEDS * STAT_DRAWS)
    draws = tokens.shape[1]
    assert tokens.min() >= 0
    counts = torch.stack([torch.bincount(t, minlength=vocab) for t in tokens])
    assert not (counts > 0)[probs == 0].any(), "a token of probability 0 was drawn"

    p_exact = chi_square_p_value(counts, probs)
    p_hf = chi_square_p_value(counts, hf)
    freq = counts.double() / draws
    for r in range(STAT_ROWS):
        support = int((probs[r] > 0).sum())
        bound = tv_bound(draws, support)
        tv = 0.5 * float((freq[r] - probs[r]).abs().sum())
        tv_model = 0.5 * float((probs[r] - hf[r]).abs().sum())
        tv_hf = 0.5 * float((freq[r] - hf[r]).abs().sum())
        assert tv < bound, (r, tv, bound)
        assert tv_model < HF_TV, (r, tv_model, probs[r].tolist(), hf[r].tolist())
        assert tv_hf < bound + HF_TV, (r, tv_hf, bound)
    assert p_exact > P_MIN, (p_exact, counts.tolist(), probs.tolist())
    assert p_hf > P_MIN, (p_hf, counts.tolist(), hf.tolist())


def test_statistics_total_draws():
    total = len(STAT_SETTINGS) * STAT_ROWS * STAT_SEEDS * STAT_DRAWS
    assert total >= 1_000_000


def test_chi_square_detects_a_wrong_distribution(seed):
    """The statistics can fail: draws from a distribution 2% off are rejected."""
    g = gen(seed)
    p = torch.softmax(torch.randn(4, 20, generator=g, dtype=torch.float64), -1)
    q = p.clone()
    q[:, 0] *= 1.3
    q /= q.sum(-1, keepdim=True)
    draws = torch.multinomial(q, STAT_SEEDS * STAT_DRAWS, replacement=True, generator=g)
    counts = torch.stack([torch.bincount(t, minlength=20) for t in draws])
    assert chi_square_p_value(counts, p) < P_MIN
    fair = torch.stack(
        [
            torch.bincount(t, minlength=20)
            for t in torch.multinomial(p, STAT_SEEDS * STAT_DRAWS, replacement=True, generator=g)
        ]
    )
    assert chi_square_p_value(fair, p) > P_MIN


# ---- kept set, invariances -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_draws_inside_kept_set(draw_device, dtype, seed):
    g = gen(seed)
    vocab, batch = 700, 21
    for case in range(4):
        logits = W.make_logits(batch, vocab, dtype, seed + case, kinds=W.FINITE_KINDS)
        logits[torch.rand(batch, vocab, generator=g) < 0.3] = -INF  # -inf entries in every row
        logits[:, 0] = 0.0  # not all -inf
        params = {
            "temperature": torch.rand(batch, generator=g) + 0.3,
            "top_k": [0, 30, 200, 1000][case],
            "top_p": torch.rand(batch, generator=g),
            "min_p": float(torch.rand((), generator=g)) * 0.2,
        }
        tokens = run(draw_device, logits, **params, seed=seeds_for(batch, g), step=case, n=256)
        keep, probs = R.sample_distribution(logits, **params)
        assert tokens.min() >= 0
        drawn_prob = probs.gather(1, tokens)
        drawn_logit = logits.gather(1, tokens)
        assert (drawn_prob > 0).all() and keep.gather(1, tokens).all()
        assert not drawn_logit.isneginf().any()


def test_batch_invariance(draw_device, seed):
    g = gen(seed)
    vocab, batch, n = 333, 9, 8
    logits = W.make_logits(batch, vocab, torch.float32, seed, kinds=W.ROW_KINDS)
    params = {
        "temperature": torch.rand(batch, generator=g) + 0.2,
        "top_k": torch.randint(0, 100, (batch,), generator=g),
        "top_p": torch.rand(batch, generator=g),
        "min_p": torch.rand(batch, generator=g) * 0.1,
    }
    s, t = seeds_for(batch, g), torch.randint(0, 2**62, (batch,), generator=g)
    whole = run(draw_device, logits, **params, seed=s, step=t, n=n)
    others = W.make_logits(6, vocab, torch.float32, seed + 1)
    for r in range(batch):
        row = {k: v[r : r + 1] for k, v in params.items()}
        alone = run(draw_device, logits[r : r + 1], **row, seed=s[r : r + 1], step=t[r : r + 1], n=n)
        assert torch.equal(alone[0], whole[r])
        # the same row at position 4 of another batch, among other rows with other parameters
        mixed = torch.cat([others[:4], logits[r : r + 1], others[4:]])
        mixed_params = {k: torch.cat([v[:1].repeat(4), v[r : r + 1], v[-1:].repeat(2)]) for k, v in params.items()}
        ms = torch.cat([seeds_for(4, g), s[r : r + 1], seeds_for(2, g)])
        mt = torch.cat([t[:1].repeat(4), t[r : r + 1], t[:2]])
        assert torch.equal(run(draw_device, mixed, **mixed_params, seed=ms, step=mt, n=n)[4], whole[r])
    # a scalar parameter is the same as a per-row tensor of it, and a scalar seed the same as a tensor of it
    assert torch.equal(
        run(draw_device, logits, top_p=0.8, seed=5, step=3, n=n),
        run(
            draw_device,
            logits,
            top_p=torch.full((batch,), 0.8),
            seed=torch.full((batch,), 5),
            step=torch.tensor(3),
            n=n,
        ),
    )


def test_n_draws_prefix(draw_device, seed):
    """Draw d of a row does not depend on n: the first draws of n = 64 are the draws of n = 1 and 5."""
    logits = W.make_logits(7, 100, torch.float32, seed, kinds=W.FINITE_KINDS)
    s = seeds_for(7, gen(seed))
    many = run(draw_device, logits, top_p=0.9, seed=s, n=64)
    assert torch.equal(run(draw_device, logits, top_p=0.9, seed=s, n=1), many[:, 0])
    assert torch.equal(run(draw_device, logits, top_p=0.9, seed=s, n=5), many[:, :5])


def test_seed_and_step(draw_device, seed):
    g = gen(seed)
    vocab, batch, n = 1000, 6, 32
    logits = torch.randn(batch, vocab, generator=g) * 0.1  # near flat: 32 draws repeat with probability ~1e-96
    s = seeds_for(batch, g)
    a = run(draw_device, logits, seed=s, step=7, n=n)
    assert torch.equal(a, run(draw_device, logits, seed=s, step=7, n=n))
    assert torch.equal(a, run(draw_device, logits.clone(), seed=s.clone(), step=torch.full((batch,), 7), n=n))
    b = run(draw_device, logits, seed=s, step=8, n=n)
    c = run(draw_device, logits, seed=s + 1, step=7, n=n)
    for r in range(batch):
        assert not torch.equal(a[r], b[r]) and not torch.equal(a[r], c[r])
    # the steps' high words count too
    d = run(draw_device, logits, seed=s, step=7 + 2**32, n=n)
    assert all(not torch.equal(a[r], d[r]) for r in range(batch))
    # rows with the same seed and step but different draws differ: draws are not one repeated value
    assert all(len(set(a[r].tolist())) > n // 2 for r in range(batch))
    # uint64 seeds above 2^63 are the same bits as negative int64 ones
    assert torch.equal(run(draw_device, logits, seed=2**64 - 5, n=n), run(draw_device, logits, seed=-5, n=n))
    assert torch.equal(run(draw_device, logits, seed=2**63, n=n), run(draw_device, logits, seed=-(2**63), n=n))


def test_seed_none(device, seed):
    g = gen(seed)
    logits = torch.randn(5, 1000, generator=g) * 0.1
    torch.manual_seed(seed)
    if device == "cuda":
        torch.cuda.manual_seed(seed)
    a = run(device, logits, n=32)
    b = run(device, logits, n=32)
    torch.manual_seed(seed)
    if device == "cuda":
        torch.cuda.manual_seed(seed)
    assert torch.equal(run(device, logits, n=32), a)
    assert all(not torch.equal(a[r], b[r]) for r in range(5))
    # the seeds are one torch.randint call on the logits' device
    torch.manual_seed(seed)
    if device == "cuda":
        torch.cuda.manual_seed(seed)
    drawn = torch.randint(-(2**63), 2**63 - 1, (5,), dtype=torch.int64, device=device).cpu()
    assert torch.equal(a, R.sample(logits, seed=drawn, n=32))


@pytest.mark.skipif(cuda_logic.nvcc() is None, reason="nvcc not found: the CUDA kernel's logic is built with it")
def test_cuda_logic_takes_values_the_cpu_rejects_as_usable_ones(seed):
    """Per-row values the CPU rejects cannot raise on the GPU (that needs a host sync): the CUDA kernel takes a
    temperature that is not a finite number > 0 as 1 (but 0 and -0: greedy), a negative top_k as 0 (no top-k), skips
    the stage of a NaN top_p or min_p, and clamps other top_p / min_p to [0, 1]. Checked on its logic run on the host
    against the CPU kernel given the usable values."""
    g = gen(seed)
    batch, vocab = 8, 300
    logits = W.make_logits(batch, vocab, torch.float32, seed, kinds=W.FINITE_KINDS)
    rejected = {
        "temperature": [-1.0, math.nan, INF, -INF, 0.5, -0.0, 1e-30, 2.0],
        "top_k": [-3, -1, 5, 0, -(2**40), 20, 1, -7],
        "top_p": [math.nan, 1.5, -0.5, 0.7, INF, -INF, 0.0, 0.95],
        "min_p": [2.0, math.nan, -1.0, 0.1, -INF, INF, 0.3, math.nan],
    }
    usable = {
        "temperature": [1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 1e-30, 2.0],  # -0.0 is 0: greedy
        "top_k": [0, 0, 5, 0, 0, 20, 1, 0],
        "top_p": [1.0, 1.0, 0.0, 0.7, 1.0, 0.0, 0.0, 0.95],
        "min_p": [1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.3, 0.0],
    }
    s = seeds_for(batch, g)
    for name in rejected:
        bad = torch.tensor(rejected[name], dtype=torch.int64 if name == "top_k" else torch.float32)
        good = torch.tensor(usable[name], dtype=bad.dtype)
        with pytest.raises(ValueError, match=name):
            pysample.sample(logits, **{name: bad}, seed=s)
        expected = pysample.sample(logits, **{name: good}, seed=s, n=16)
        assert torch.equal(cuda_logic.sample(logits, **{name: bad}, seed=s, n=16), expected), name
        assert torch.equal(cuda_logic.sample(logits, **{name: good}, seed=s, n=16), expected), name


# ---- greedy --------------------------------------------------------------------------------------------------------


def first_argmax(x: torch.Tensor) -> torch.Tensor:
    """The first index of each row's max (ties -> lowest id), computed without torch.argmax's tie rule."""
    m = x.amax(-1, keepdim=True)
    ids = torch.arange(x.shape[-1]).expand_as(x)
    return torch.where(x == m, ids, x.shape[-1]).amin(-1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_greedy(draw_device, dtype, seed):
    g = gen(seed)
    batch, vocab = 40, 500
    logits = W.make_logits(batch, vocab, dtype, seed, kinds=W.FINITE_KINDS)
    logits[::3] = logits[::3].float().round().to(dtype)  # many ties at the max
    tie = logits[0].float().max()
    logits[1, :] = logits[1].clamp(max=float(tie))
    logits[1, [7, 3, 400]] = tie.to(dtype)  # the max at 3, 7 and 400: 3 wins
    expected = first_argmax(logits.float())
    assert int(expected[1]) == min(3, int(first_argmax(logits[1:2].float())))
    for params in (
        {"temperature": 0},
        {"top_k": 1},
        {"temperature": 0, "top_k": 1, "top_p": 0.5, "min_p": 0.3},
        {"top_k": 1, "temperature": 1.0, "top_p": 0.1},
    ):
        out = run(draw_device, logits, **params, seed=seeds_for(batch, g), n=3)
        assert torch.equal(out, expected[:, None].expand(batch, 3)), params
    # per row, greedy rows mixed with sampled rows
    temperature = torch.where(torch.arange(batch) % 2 == 0, 0.0, 0.8)
    top_k = torch.where(torch.arange(batch) % 3 == 0, 1, 40)
    s = seeds_for(batch, g)
    out = run(draw_device, logits, temperature=temperature, top_k=top_k, seed=s, n=4)
    greedy = (temperature == 0) | (top_k == 1)
    assert torch.equal(out[greedy], expected[greedy][:, None].expand(-1, 4))
    assert torch.equal(out, R.sample(logits, temperature=temperature, top_k=top_k, seed=s, n=4))
    assert len(set(out[~greedy].flatten().tolist())) > 1


# bfloat16: 1.40625 and 1.4140625 are adjacent; divided by 0.7 both round to 2.015625: the greedy token is the first.
TIED_BY_TEMPERATURE = torch.tensor([[1.40625, 1.4140625]], dtype=torch.bfloat16)
OVERFLOW_BY_TEMPERATURE = torch.tensor([[1e38, 2e38]])  # / 0.001 is +inf for both: argmax takes the first


def test_reference_top_k_1_greedy_reads_the_scaled_logits():
    y = (TIED_BY_TEMPERATURE.float() / torch.tensor(0.7)).to(torch.bfloat16)
    assert y[0, 0] == y[0, 1]
    assert R.sample(TIED_BY_TEMPERATURE, temperature=0.7, top_k=1).tolist() == [0]
    assert R.sample(TIED_BY_TEMPERATURE, temperature=0, top_k=1).tolist() == [1]  # temperature 0: the logits
    assert R.sample(OVERFLOW_BY_TEMPERATURE, temperature=0.001, top_k=1).tolist() == [0]
    assert R.sample(OVERFLOW_BY_TEMPERATURE, temperature=0).tolist() == [1]


def test_top_k_1_greedy_reads_the_scaled_logits(draw_device):
    assert run(draw_device, TIED_BY_TEMPERATURE, temperature=0.7, top_k=1, seed=0).tolist() == [0]
    assert run(draw_device, OVERFLOW_BY_TEMPERATURE, temperature=0.001, top_k=1, seed=0).tolist() == [0]


# ---- undefined rows, empty shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [50, 40000])  # 40000: top-k searches blocks, and only its survivors are checked
@pytest.mark.parametrize("dtype", DTYPES)
def test_undefined_rows(draw_device, dtype, seed, vocab):
    g = gen(seed)
    logits = torch.randn(8, vocab, generator=g)
    logits[0, 3] = math.nan
    logits[1] = math.nan
    logits[2, 7] = INF
    logits[3] = -INF
    logits[4, :] = -INF
    logits[4, 9] = 1.0  # defined: one finite token
    logits[5, 2] = INF
    logits[5, 4] = -INF
    logits = logits.to(dtype)
    greedy = torch.tensor([3, 0, 7, 0, 9, 2])  # torch.argmax: the first NaN, else the first largest (+inf too)
    assert torch.equal(greedy, logits[:6].argmax(-1))
    sampled = torch.tensor([-1, -1, 7, -1, 9, 2])  # NaN or only -inf: undefined; +inf: the softmax's limit
    for params, expected in (
        ({}, sampled),
        ({"temperature": 0}, greedy),
        ({"top_k": 1}, greedy),
        ({"temperature": 0.5, "top_k": 5, "top_p": 0.9, "min_p": 0.1}, sampled),
    ):
        out = run(draw_device, logits[:6], **params, seed=seeds_for(6, g), n=2)
        assert torch.equal(out, expected[:, None].expand(6, 2)), params
    # the other rows are drawn normally
    out = run(draw_device, logits, seed=3, n=5)
    assert (out[6:] >= 0).all()
    assert torch.equal(out, R.sample(logits, seed=3, n=5))
    # vocab 0
    empty = torch.empty(3, 0, dtype=dtype)
    assert run(draw_device, empty, seed=1).tolist() == [-1, -1, -1]
    assert run(draw_device, empty, temperature=0, n=2).tolist() == [[-1, -1]] * 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_positive_infinity_draws_from_the_softmax_limit(draw_device, dtype):
    logits = torch.randn(6, 300, generator=gen(4)).to(dtype)
    logits[:, [17, 40, 250]] = INF  # three +inf tokens share the mass equally
    logits[1, 40] = -INF  # two
    logits[2, [17, 250]] = 0.0  # one
    params = [{}, {"temperature": 0.3, "top_k": 2}, {"top_k": 5, "min_p": 0.5}, {"top_p": 0.5}]
    for p in params:
        s = seeds_for(6, gen(5))
        out = run(draw_device, logits, **p, seed=s, n=3000)
        assert torch.equal(out, R.sample(logits, **p, seed=s, n=3000)), p
        if "top_k" in p or "top_p" in p:  # top-k 2 keeps two of the three (the largest and ties: all); top-p 0.5:
            continue  # tested below
        counts = torch.stack([torch.bincount(row, minlength=300) for row in out])
        assert counts[:, [17, 40, 250]].sum(-1).tolist()[:3] == [3000, 3000, 3000]
        assert 800 < counts[0, 17] < 1200 and 800 < counts[0, 250] < 1200  # 1000 each
        assert counts[1, 40] == 0 and 1300 < counts[1, 17] < 1700
        assert counts[2, 40] == 3000
    # top-p among tied +inf tokens keeps the higher ids first, as among any tied tokens
    out = run(draw_device, logits, top_p=0.5, seed=seeds_for(6, gen(6)), n=500)
    assert set(out[0].tolist()) == {40, 250} and set(out[1].tolist()) == {250} and set(out[2].tolist()) == {40}


def test_infinite_bias_forces_the_token(draw_device):
    # transformers: the softmax of a row holding +inf is NaN and multinomial raises; greedy is argmax.
    scores = pysample.SequenceBiasLogitsProcessor({(5,): INF})(
        torch.zeros(4, 1, dtype=torch.int64), torch.randn(4, 50, generator=gen(8))
    )
    for params in ({}, {"temperature": 0}, {"top_k": 1}, {"temperature": 0.7, "top_k": 20, "top_p": 0.9}):
        assert run(draw_device, scores, **params, seed=seeds_for(4, gen(9)), n=7).eq(5).all(), params
    assert torch.equal(run(draw_device, scores, temperature=0, seed=0), scores.argmax(-1))


@pytest.mark.parametrize("top_p", [0.1, 0.3, 0.4, 0.6, 0.9])
def test_top_p_ties_keep_the_warpers_tokens(draw_device, top_p):
    # The case and rows of tied groups: the sampler keeps what TopPLogitsWarper keeps.
    logits = torch.tensor([[0.0, 0.0, -50.0, -50.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 2.0, 0.0], [3.0, 1.0, 3.0, 1.0]])
    keep, _ = R.sample_distribution(logits, top_p=top_p)
    warped = transformers.TopPLogitsWarper(top_p)(None, logits.clone())
    assert torch.equal(keep, warped > -INF)
    out = run(draw_device, logits, top_p=top_p, seed=seeds_for(4, gen(10)), n=2000)
    for r in range(4):
        assert set(out[r].tolist()) == set(keep[r].nonzero().flatten().tolist())


@pytest.mark.parametrize("n", [1, 4])
def test_batch_zero(device, n):
    out = pysample.sample(torch.empty(0, 100, device=device), top_p=0.5, n=n)
    assert out.shape == ((0,) if n == 1 else (0, n)) and out.dtype == torch.int64 and out.device.type == device
    out = pysample.sample(
        torch.empty(0, 100, device=device),
        temperature=torch.empty(0, device=device),
        seed=torch.empty(0, dtype=torch.int64, device=device),
        n=n,
    )
    assert out.shape == ((0,) if n == 1 else (0, n))


def test_output_layout(device):
    logits = torch.randn(3, 10, device=device)
    one = pysample.sample(logits, seed=1)
    many = pysample.sample(logits, seed=1, n=5)
    assert one.shape == (3,) and one.dtype == torch.int64 and one.device == logits.device
    assert many.shape == (3, 5) and many.dtype == torch.int64 and many.is_contiguous()
    # a non-contiguous logits view (stride along vocab 2) gives the same tokens as its contiguous copy
    wide = torch.randn(3, 20, device=device)
    assert torch.equal(
        pysample.sample(wide[:, ::2], seed=4, n=7), pysample.sample(wide[:, ::2].contiguous(), seed=4, n=7)
    )
    assert torch.equal(pysample.sample(wide.t().contiguous().t(), seed=4, n=7), pysample.sample(wide, seed=4, n=7))


# ---- argument checks -----------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    # (kwargs, exception, words the message must contain)
    ({"temperature": -0.5}, ValueError, "temperature"),
    ({"temperature": math.nan}, ValueError, "temperature"),
    ({"temperature": INF}, ValueError, "temperature"),
    ({"temperature": "rows:-1"}, ValueError, "temperature"),
    ({"temperature": "rows:nan"}, ValueError, "temperature"),
    ({"temperature": "hot"}, TypeError, "temperature"),
    ({"temperature": "int-rows"}, TypeError, "temperature"),
    ({"top_k": -1}, ValueError, "top_k"),
    ({"top_k": "rows:-1"}, ValueError, "top_k"),
    ({"top_k": 2.0}, TypeError, "top_k"),
    ({"top_k": "float-rows"}, TypeError, "top_k"),
    ({"top_p": -0.1}, ValueError, "top_p"),
    ({"top_p": 1.5}, ValueError, "top_p"),
    ({"top_p": math.nan}, ValueError, "top_p"),
    ({"top_p": "rows:1.5"}, ValueError, "top_p"),
    ({"top_p": "rows:nan"}, ValueError, "top_p"),
    ({"top_p": "rows:-0.1"}, ValueError, "top_p"),
    ({"min_p": -0.1}, ValueError, "min_p"),
    ({"min_p": 1.01}, ValueError, "min_p"),
    ({"min_p": math.nan}, ValueError, "min_p"),
    ({"min_p": "rows:2"}, ValueError, "min_p"),
    ({"min_p": "rows:nan"}, ValueError, "min_p"),
    ({"n": 0}, ValueError, "n"),
    ({"n": -3}, ValueError, "n"),
    ({"n": 2.0}, TypeError, "n"),
    ({"n": True}, TypeError, "n"),
    ({"n": torch.tensor(2)}, TypeError, "n"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"seed": "float-rows"}, TypeError, "seed"),
    ({"seed": "bool-rows"}, TypeError, "seed"),
    ({"seed": 2**64}, ValueError, "seed"),
    ({"seed": -(2**63) - 1}, ValueError, "seed"),
    ({"seed": "short-rows"}, ValueError, "seed"),
    ({"seed": "meta-rows"}, ValueError, "seed"),
    ({"step": 0.5}, TypeError, "step"),
    ({"step": "float-rows"}, TypeError, "step"),
    ({"step": 2**64}, ValueError, "step"),
    ({"step": "short-rows"}, ValueError, "step"),
    ({"step": "2d-rows"}, ValueError, "step"),
    ({"step": "meta-rows"}, ValueError, "step"),
    ({"top_p": "meta-rows"}, ValueError, "top_p"),
    ({"temperature": "short-rows"}, ValueError, "temperature"),
]


def bad_value(name: str, value, batch: int, device: str):
    if not isinstance(value, str) or name == "temperature" and value == "hot":
        return value
    int_param = name in ("top_k", "seed", "step")
    dtype = torch.int64 if int_param else torch.float32
    if value.startswith("rows:"):
        v = float(value[5:])
        rows = torch.full((batch,), 0.5 if not int_param else 3, dtype=dtype)
        rows[batch // 2] = v
        return rows.to(device)
    return {
        "int-rows": lambda: torch.ones(batch, dtype=torch.int64, device=device),
        "float-rows": lambda: torch.ones(batch, device=device),
        "bool-rows": lambda: torch.ones(batch, dtype=torch.bool, device=device),
        "short-rows": lambda: torch.ones(batch - 1, dtype=dtype, device=device),
        "2d-rows": lambda: torch.ones(batch, 1, dtype=dtype, device=device),
        "meta-rows": lambda: torch.ones(batch, dtype=dtype, device="meta"),
    }[value]()


@pytest.mark.parametrize(
    "kwargs,error,name",
    BAD_ARGUMENTS,
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]}" for k in v),
)
def test_bad_arguments(device, kwargs, error, name):
    batch = 4
    logits = torch.randn(batch, 30, device=device)
    args = {k: bad_value(k, v, batch, device) for k, v in kwargs.items()}
    with pytest.raises(error, match=rf"\b{name}\b"):
        pysample.sample(logits, **args)


@pytest.mark.parametrize(
    "logits,error",
    [
        (torch.randn(30), ValueError),
        (torch.randn(2, 3, 30), ValueError),
        (torch.randn(2, 30, dtype=torch.float64), TypeError),
        (torch.ones(2, 30, dtype=torch.int64), TypeError),
    ],
    ids=["1d", "3d", "float64", "int64"],
)
def test_bad_logits(device, logits, error):
    with pytest.raises(error, match="logits"):
        pysample.sample(logits.to(device), seed=torch.zeros(2, dtype=torch.int64, device=device))


def test_bad_arguments_raw_op():
    """The op itself checks what the wrapper forwards (C++ callers get the same errors)."""
    logits = torch.randn(3, 10)
    seed = torch.zeros(3, dtype=torch.int64)

    def op(
        *, temperature=(None, None), top_k=(None, None), top_p=(None, None), min_p=(None, None), s=seed, t=seed, n=1
    ):
        return torch.ops.pysample.sample(logits, *temperature, *top_k, *top_p, *min_p, s, t, n)

    with pytest.raises(ValueError, match="temperature"):
        op(temperature=(torch.ones(3), 0.5))  # both a tensor and a value
    with pytest.raises(TypeError, match="seed"):
        op(s=torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="step"):
        op(t=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="top_p"):
        op(top_p=(torch.ones(3, dtype=torch.float64), None))
    with pytest.raises(ValueError, match=r"\bn\b"):
        op(n=0)
    with pytest.raises(ValueError, match="top_k"):
        op(top_k=(None, -2))
    assert op(n=2).shape == (3, 2)


# ---- registration --------------------------------------------------------------------------------------------------


def raw_args(logits: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, n: int, **params) -> tuple:
    args = [logits]
    for name in ("temperature", "top_k", "top_p", "min_p"):
        value = params.pop(name, None)
        args += [value, None] if isinstance(value, torch.Tensor) else [None, value]
    assert not params
    return tuple(args) + (seed, step, n)


def test_fake_impl(device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        logits = torch.empty(6, 1000, dtype=torch.float16, device=device)
        seed = torch.empty(6, dtype=torch.int64, device=device)
        out = torch.ops.pysample.sample(*raw_args(logits, seed, seed, 4, top_p=torch.empty(6, device=device)))
        assert out.shape == (6, 4) and out.dtype == torch.int64 and out.device == logits.device
        out = pysample.sample(logits, top_k=3, seed=seed)
        assert out.shape == (6,) and out.dtype == torch.int64
        with pytest.raises(Exception, match="seed"):
            torch.ops.pysample.sample(*raw_args(logits, seed[:5], seed, 1))
        with pytest.raises(Exception, match=r"\bn\b"):
            torch.ops.pysample.sample(*raw_args(logits, seed, seed, 0))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(device, backend, seed):
    torch._dynamo.reset()

    def step_fn(logits, top_p, seeds, step):
        scaled = logits * 2.0
        tokens = pysample.sample(scaled, temperature=0.7, top_k=50, top_p=top_p, min_p=0.05, seed=seeds, step=step, n=4)
        return tokens, tokens + 1

    compiled = torch.compile(step_fn, fullgraph=True, backend=backend)
    g = gen(seed)
    top_p = torch.linspace(0.5, 1.0, 8).to(device)
    for i in range(2):  # the second call reuses the graph
        logits = torch.randn(8, 1000, generator=g).to(device)
        seeds = seeds_for(8, g).to(device)
        step = torch.full((8,), i, device=device)
        (tokens, plus), (eager, _) = compiled(logits, top_p, seeds, step), step_fn(logits, top_p, seeds, step)
        assert torch.equal(tokens, eager) and torch.equal(plus, eager + 1)
        assert tokens.shape == (8, 4)


# ---- CUDA against the CPU ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab", [17, 1000, 32000, 128256])
def test_cuda_equals_cpu(dtype, vocab, seed):
    g = gen(seed)
    batch = 16 if vocab < 100000 else 4
    for case in range(4):
        logits = W.make_logits(batch, vocab, dtype, seed + case)
        params = random_params(batch, vocab, g)
        s = seeds_for(batch, g)
        t = torch.randint(0, 2**40, (batch,), generator=g)
        assert torch.equal(
            run("cuda", logits, **params, seed=s, step=t, n=8), run("cpu", logits, **params, seed=s, step=t, n=8)
        ), params
