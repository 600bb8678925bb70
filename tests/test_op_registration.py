"""Registration of torch.ops.pysample.warp_logits(_): torch.compile and argument checks (opcheck: test_ops.py)."""

from __future__ import annotations

import math
import re

import pytest
import torch

import pysample

import warp_compare as W

INF = math.inf


def op_args(logits: torch.Tensor, **params) -> tuple:
    """Positional arguments of the raw op: (logits, <rows, value> per stage..., min_tokens_to_keep, filter_value)."""
    keep = params.pop("min_tokens_to_keep", 1)
    filter_value = params.pop("filter_value", -INF)
    args = [logits]
    for stage in W.STAGES:
        value = params.pop(stage, None)
        if isinstance(value, torch.Tensor):
            args += [value, None]
        else:
            args += [None, value]
    assert not params, params
    return tuple(args) + (keep, filter_value)


def _rows(batch: int, device: str):
    g = torch.Generator().manual_seed(0)
    return {
        "temperature": (torch.rand(batch, generator=g) + 0.5).to(device),
        "top_k": torch.randint(0, 20, (batch,), generator=g).to(device),
        "top_p": torch.rand(batch, generator=g).to(device),
        "min_p": (torch.rand(batch, generator=g) * 0.2).to(device),
        "typical_p": torch.rand(batch, generator=g).to(device),
        "epsilon": (torch.rand(batch, generator=g) * 1e-3).to(device),
        "eta": (torch.rand(batch, generator=g) * 1e-3).to(device),
    }


def test_raw_op_matches_python_wrapper(device):
    logits = torch.randn(6, 300, device=device)
    params = _rows(6, device)
    out = torch.ops.pysample.warp_logits(*op_args(logits, **dict(params)))
    assert W.bitwise_equal(out.cpu(), pysample.warp_logits(logits, **params).cpu())
    inplace = logits.clone()
    assert torch.ops.pysample.warp_logits_(*op_args(inplace, **dict(params))) is None
    assert W.bitwise_equal(inplace.cpu(), out.cpu())


# ---- torch.compile ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_out_of_place(device, backend):
    torch._dynamo.reset()

    def step(logits, top_p):
        scaled = logits * 2.0  # something for the compiler to fuse around the op (exact, like eager)
        warped = pysample.warp_logits(scaled, temperature=0.7, top_k=50, top_p=top_p, min_p=0.05)
        return warped, torch.softmax(warped, -1)

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    top_p = torch.linspace(0.5, 1.0, 8, device=device)
    for _ in range(2):  # the second call reuses the graph
        logits = torch.randn(8, 1000, device=device)
        (warped, probs), (eager_warped, eager_probs) = compiled(logits, top_p), step(logits, top_p)
        assert W.bitwise_equal(warped.cpu(), eager_warped.cpu())
        torch.testing.assert_close(probs, eager_probs)  # a compiled softmax may round differently


@pytest.mark.parametrize("backend", ["aot_eager"])
def test_compile_fullgraph_in_place(device, backend):
    torch._dynamo.reset()

    def step(logits, temperature):
        logits = logits + 0.0
        pysample.warp_logits_(logits, temperature=temperature, top_k=20, typical_p=0.9, epsilon=1e-4)
        return logits

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    logits = torch.randn(4, 500, device=device)
    temperature = torch.tensor([0.5, 1.0, 1.5, 2.0], device=device)
    assert W.bitwise_equal(compiled(logits, temperature).cpu(), step(logits, temperature).cpu())


def test_compile_fullgraph_in_place_on_graph_input(device):
    """warp_logits_ on an input of the compiled function mutates that input, as in eager mode."""
    torch._dynamo.reset()

    def step(logits):
        pysample.warp_logits_(logits, top_k=3)
        return logits.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    logits = torch.randn(4, 50, device=device)
    eager = logits.clone()
    step(eager)
    compiled(logits)
    assert W.bitwise_equal(logits.cpu(), eager.cpu())


# ---- argument checking -----------------------------------------------------------------------------------------

X = lambda device: torch.randn(3, 10, device=device)  # noqa: E731

BAD_CALLS = [
    # (id, call(device), exception type, words the message must contain)
    (
        "int-logits",
        lambda d: pysample.warp_logits(torch.ones(3, 10, dtype=torch.int32, device=d), top_k=2),
        TypeError,
        ["logits", "float32"],
    ),
    ("float64-logits", lambda d: pysample.sample(X(d).double(), seed=0), TypeError, ["logits", "float32"]),
    ("1d-logits", lambda d: pysample.warp_logits(torch.randn(10, device=d), top_k=2), ValueError, ["logits", "2-D"]),
    (
        "3d-logits",
        lambda d: pysample.warp_logits(torch.randn(2, 3, 10, device=d), top_k=2),
        ValueError,
        ["logits", "2-D"],
    ),
    (
        "1d-logits-inplace",
        lambda d: pysample.warp_logits_(torch.randn(10, device=d), top_p=0.5),
        ValueError,
        ["logits", "2-D"],
    ),
    (
        "rows-wrong-length",
        lambda d: pysample.warp_logits(X(d), top_p=torch.full((2,), 0.5, device=d)),
        ValueError,
        ["top_p", "(batch,)"],
    ),
    (
        "rows-2d",
        lambda d: pysample.warp_logits(X(d), min_p=torch.full((3, 1), 0.5, device=d)),
        ValueError,
        ["min_p", "(batch,)"],
    ),
    ("top_k-negative", lambda d: pysample.warp_logits(X(d), top_k=-1), ValueError, ["top_k", "-1"]),
    ("top_k-float", lambda d: pysample.warp_logits(X(d), top_k=2.0), TypeError, ["top_k"]),
    ("top_k-bool", lambda d: pysample.warp_logits(X(d), top_k=True), TypeError, ["top_k"]),
    ("top_p-above-1", lambda d: pysample.warp_logits(X(d), top_p=1.5), ValueError, ["top_p", "1.5"]),
    ("top_p-below-0", lambda d: pysample.warp_logits(X(d), top_p=-0.1), ValueError, ["top_p"]),
    ("top_p-nan", lambda d: pysample.warp_logits(X(d), top_p=math.nan), ValueError, ["top_p", "nan"]),
    ("top_p-string", lambda d: pysample.warp_logits(X(d), top_p="0.5"), TypeError, ["top_p"]),
    ("temperature-zero", lambda d: pysample.warp_logits(X(d), temperature=0.0), ValueError, ["temperature"]),
    ("temperature-negative", lambda d: pysample.warp_logits(X(d), temperature=-1.0), ValueError, ["temperature"]),
    ("temperature-nan", lambda d: pysample.warp_logits(X(d), temperature=math.nan), ValueError, ["temperature", "nan"]),
    ("temperature-inf", lambda d: pysample.warp_logits(X(d), temperature=math.inf), ValueError, ["temperature"]),
    ("min_p-above-1", lambda d: pysample.warp_logits(X(d), min_p=2.0), ValueError, ["min_p"]),
    ("typical_p-nan", lambda d: pysample.warp_logits(X(d), typical_p=math.nan), ValueError, ["typical_p"]),
    ("epsilon-negative", lambda d: pysample.warp_logits(X(d), epsilon=-1.0), ValueError, ["epsilon"]),
    ("eta-above-1", lambda d: pysample.warp_logits(X(d), eta=2.0), ValueError, ["eta"]),
    (
        "min_tokens_to_keep-0",
        lambda d: pysample.warp_logits(X(d), top_p=0.5, min_tokens_to_keep=0),
        ValueError,
        ["min_tokens_to_keep"],
    ),
    (
        "min_tokens_to_keep-negative-inplace",
        lambda d: pysample.warp_logits_(X(d), top_p=0.5, min_tokens_to_keep=-2),
        ValueError,
        ["min_tokens_to_keep"],
    ),
    (
        "filter_value-nan",
        lambda d: pysample.warp_logits(X(d), top_p=0.5, filter_value=math.nan),
        ValueError,
        ["filter_value"],
    ),
    (
        "scalar-and-tensor",
        lambda d: torch.ops.pysample.warp_logits(
            *op_args(X(d))[:5], torch.full((3,), 0.5, device=d), 0.5, *op_args(X(d))[7:]
        ),
        ValueError,
        ["top_p", "both"],
    ),
    (
        "raw-rows-wrong-dtype",
        lambda d: torch.ops.pysample.warp_logits(*op_args(X(d), top_p=torch.ones(3, dtype=torch.int64, device=d))),
        TypeError,
        ["top_p"],
    ),
    (
        "raw-top_k-rows-float",
        lambda d: torch.ops.pysample.warp_logits(*op_args(X(d), top_k=torch.ones(3, device=d))),
        TypeError,
        ["top_k"],
    ),
]


@pytest.mark.parametrize("name, call, error, words", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_naming_the_argument(device, name, call, error, words):
    with pytest.raises(error) as info:
        call(device)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


PER_ROW_BAD_VALUES = [
    ("top_p", [0.5, 1.5, 0.2], 1),
    ("top_p", [0.5, 0.2, math.nan], 2),
    ("temperature", [1.0, 0.0, 1.0], 1),
    ("temperature", [1.0, 1.0, math.nan], 2),
    ("temperature", [math.inf, 1.0, 1.0], 0),
    ("min_p", [0.5, 0.1, -0.2], 2),
    ("typical_p", [2.0, 0.1, 0.2], 0),
    ("epsilon", [0.0, -1e-3, 0.1], 1),
    ("eta", [0.0, 0.1, 1.5], 2),
]


@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
@pytest.mark.parametrize("stage, values, row", PER_ROW_BAD_VALUES, ids=[f"{s}{v}" for s, v, _ in PER_ROW_BAD_VALUES])
def test_per_row_bad_value_raises_naming_the_row_on_cpu(stage, values, row, inplace):
    x = torch.randn(3, 10)
    before = x.clone()
    fn = pysample.warp_logits_ if inplace else pysample.warp_logits
    with pytest.raises(ValueError) as info:
        fn(x, **{stage: torch.tensor(values)})
    assert f"{stage}[{row}]" in str(info.value)
    assert W.bitwise_equal(x, before), "a rejected call must not modify the logits"


def test_per_row_negative_top_k_raises_naming_the_row():
    with pytest.raises(ValueError, match=r"top_k\[1\]"):
        pysample.warp_logits(torch.randn(3, 10), top_k=torch.tensor([1, -2, 3]))


@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
def test_per_row_tensor_on_other_device_raises(inplace):
    """A per-row tensor on another device than the logits is rejected (a meta tensor once ran the fake kernel and
    returned uninitialised memory)."""
    x = torch.randn(3, 10)
    before = x.clone()
    fn = pysample.warp_logits_ if inplace else pysample.warp_logits
    with pytest.raises(ValueError, match="top_p.*device"):
        fn(x, top_p=torch.full((3,), 0.5, device="meta"))
    assert W.bitwise_equal(x, before)


@pytest.mark.parametrize(
    "stage, rows",
    [
        ("top_k", torch.tensor([2.5, 1.0, 3.0])),
        ("top_k", torch.tensor([True, False, True])),
        ("top_p", torch.tensor([1, 0, 1])),
        ("min_p", torch.tensor([True, True, True])),
        ("temperature", torch.tensor([1, 2, 3], dtype=torch.int32)),
    ],
    ids=["top_k-float", "top_k-bool", "top_p-int", "min_p-bool", "temperature-int"],
)
def test_per_row_tensor_of_wrong_dtype_raises(stage, rows):
    """top_k takes an integer tensor, the other stages a floating-point one (a float top_k tensor was once
    truncated)."""
    with pytest.raises(TypeError, match=stage):
        pysample.warp_logits(torch.randn(3, 10), **{stage: rows})


def test_per_row_tensor_on_cuda_with_cpu_logits_raises():
    """A per-row tensor on another device than the logits is rejected, naming the argument."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    with pytest.raises((ValueError, RuntimeError), match="top_p"):
        pysample.warp_logits(torch.randn(3, 10), top_p=torch.full((3,), 0.5, device="cuda"))


def _call_with_stage(op_name, stages, index, rows=None, value=None, device="cpu"):
    """The raw op with only stage `index` given (its per-row tensor or its value); on the meta device, its fake."""
    args = [None] * (2 * len(stages))
    args[2 * index], args[2 * index + 1] = rows, value
    rest = (torch.zeros(2, dtype=torch.int64, device=device),) * 2 + (1,) if op_name == "sample" else (1, -INF)
    return getattr(torch.ops.pysample, op_name)(torch.zeros(2, 5, device=device), *args, *rest)


@pytest.mark.parametrize(
    "op_name, stages", [("warp_logits", "WARP_STAGES"), ("warp_logits_", "WARP_STAGES"), ("sample", "SAMPLE_STAGES")]
)
def test_stage_tables_agree(op_name, stages):
    """The C++ stage table (the schemas) and the Python one (pysample/_stages.py) list the same stages in the same
    order, and each stage's per-row tensor dtype and value range are what the op and its fake check."""
    from pysample import _stages

    stages = getattr(_stages, stages)
    schema = getattr(torch.ops.pysample, op_name).default._schema
    names = [a.name for a in schema.arguments[1 : 1 + 2 * len(stages)]]
    assert names == [n for s in stages for n in (f"{s.name}_rows", s.name)]
    for i, stage in enumerate(stages):
        _call_with_stage(op_name, stages, i, rows=torch.ones(2, dtype=stage.dtype))
        wrong = torch.float64 if stage.dtype == torch.int64 else torch.int64
        cpp_name = {torch.float32: "Float", torch.int64: "Long"}[stage.dtype]  # as c10 prints a dtype
        with pytest.raises(TypeError, match=f"{stage.name} must be {cpp_name}"):
            _call_with_stage(op_name, stages, i, rows=torch.ones(2, dtype=wrong))
        accepts, text = _stages.RANGES[stage.range]
        values = (-1, 0, 1, 2) if stage.dtype == torch.int64 else (-1.0, 0.0, 0.5, 1.0, 2.0, math.inf, math.nan)
        for value in values:
            for device in ("cpu", "meta"):
                if accepts(value):
                    _call_with_stage(op_name, stages, i, value=value, device=device)
                else:
                    with pytest.raises(ValueError, match=re.escape(f"{stage.name} must be {text}, got")):
                        _call_with_stage(op_name, stages, i, value=value, device=device)
