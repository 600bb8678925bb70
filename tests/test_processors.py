"""The drop-in warper classes and pysample.fuse against transformers' classes, and inside model.generate()."""

from __future__ import annotations

import math
from typing import List

import pytest
import torch
import transformers
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

import pysample
from pysample import reference

import warp_compare as W

DTYPES = [pytest.param(d, id=str(d).replace("torch.", "")) for d in W.DTYPES]
CLASS_NAMES = [
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
]
STAGE_OF = {
    "TemperatureLogitsWarper": "temperature",
    "TopKLogitsWarper": "top_k",
    "TopPLogitsWarper": "top_p",
    "MinPLogitsWarper": "min_p",
    "TypicalLogitsWarper": "typical_p",
    "EpsilonLogitsWarper": "epsilon",
    "EtaLogitsWarper": "eta",
}


def stage_value(processor) -> float:
    """The parameter of a (pysample or transformers) warper, as warp_logits names it."""
    name = type(processor).__name__
    if name == "TemperatureLogitsWarper":
        return processor.temperature
    if name == "TopKLogitsWarper":
        return processor.top_k
    if name == "TopPLogitsWarper":
        return processor.top_p
    if name == "MinPLogitsWarper":
        return processor.min_p
    if name == "TypicalLogitsWarper":
        return processor.mass
    return float(processor.epsilon)  # epsilon and eta (a 0-d tensor in transformers' EtaLogitsWarper)


def as_transformers(processor):
    """The transformers equivalent of a pysample warper (transformers' own processors and others unchanged)."""
    name = type(processor).__name__
    if not isinstance(processor, pysample.processors._Warper):
        return processor
    cls = getattr(transformers, name)
    if name == "TemperatureLogitsWarper":
        return cls(processor.temperature)
    return cls(
        stage_value(processor), filter_value=processor.filter_value, min_tokens_to_keep=processor.min_tokens_to_keep
    )


def row_kinds_for(processors) -> List[str]:
    """Random row kinds these processors can be compared on: transformers' eta raises on a NaN softmax."""
    stages = {STAGE_OF.get(type(p).__name__) for p in processors}
    return list(W.FINITE_KINDS if "eta" in stages else W.ROW_KINDS)


def check_processors(processors, x: torch.Tensor, input_ids=None, what: str = "") -> torch.Tensor:
    """``pysample.fuse(processors)`` against the transformers equivalents applied one after the other.

    Checked prefix by prefix: fuse(processors[:i+1]) against processor i (as transformers) applied to the output of
    fuse(processors[:i]), with the equality rule for the stage (bitwise for temperature, top-k and non-warpers).
    """
    previous = x
    out = x
    for i, processor in enumerate(processors):
        out = pysample.fuse(processors[: i + 1])(input_ids, x)
        expected = as_transformers(processor)(input_ids, previous)
        stage = (
            STAGE_OF.get(type(processor).__name__)
            if hasattr(processor, "filter_value") or type(processor).__name__ == "TemperatureLogitsWarper"
            else None
        )
        if stage in (None, "temperature", "top_k"):
            assert W.bitwise_equal(out, expected), f"{what} step {i} ({type(processor).__name__}) must be bitwise equal"
        else:
            report = W.check_stage(
                stage,
                previous,
                stage_value(processor),
                out,
                expected,
                processor.filter_value,
                min_tokens_to_keep=getattr(processor, "min_tokens_to_keep", 1),
            )
            W.assert_report(report, x.numel(), x.dtype, f"{what} step {i}")
        previous = out
    return out


# ---- each class against its transformers class ---------------------------------------------------------------

CLASS_CASES = [
    ("TemperatureLogitsWarper", (0.7,), {}),
    ("TemperatureLogitsWarper", (1.0,), {}),
    ("TemperatureLogitsWarper", (2.5,), {}),
    ("TopKLogitsWarper", (1,), {}),
    ("TopKLogitsWarper", (50,), {}),
    ("TopKLogitsWarper", (5,), {"filter_value": -1e4}),
    ("TopKLogitsWarper", (3,), {"min_tokens_to_keep": 10}),
    ("TopKLogitsWarper", (5000,), {}),
    ("TopPLogitsWarper", (0.9,), {}),
    ("TopPLogitsWarper", (0.0,), {}),
    ("TopPLogitsWarper", (1.0,), {}),
    ("TopPLogitsWarper", (0.5,), {"filter_value": -1e4, "min_tokens_to_keep": 3}),
    ("MinPLogitsWarper", (0.05,), {}),
    ("MinPLogitsWarper", (0.0,), {}),
    ("MinPLogitsWarper", (1.0,), {}),
    ("MinPLogitsWarper", (0.2,), {"filter_value": -1e4, "min_tokens_to_keep": 3}),
    ("TypicalLogitsWarper", (), {}),
    ("TypicalLogitsWarper", (0.2,), {"min_tokens_to_keep": 3}),
    ("TypicalLogitsWarper", (0.95,), {"filter_value": -1e4}),
    ("EpsilonLogitsWarper", (3e-4,), {}),
    ("EpsilonLogitsWarper", (0.1,), {"filter_value": -1e4, "min_tokens_to_keep": 3}),
    ("EtaLogitsWarper", (3e-4,), {}),
    ("EtaLogitsWarper", (0.05,), {"filter_value": -1e4, "min_tokens_to_keep": 3}),
]


@pytest.mark.parametrize(
    "name, args, kwargs", CLASS_CASES, ids=[f"{n}{a}{k or ''}".replace(" ", "") for n, a, k in CLASS_CASES]
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_class_vs_transformers(seed, name, args, kwargs, dtype):
    ours = getattr(pysample, name)(*args, **kwargs)
    theirs = getattr(transformers, name)(*args, **kwargs)
    stage = STAGE_OF[name]
    x = W.make_logits(22, 1000, dtype, seed, row_kinds_for([ours]))
    before = x.clone()
    out = ours(None, x)
    assert out is not x and W.bitwise_equal(x, before), "the drop-in must return a new tensor, input untouched"
    assert out.shape == x.shape and out.dtype == dtype
    expected = theirs(None, x)
    if stage in ("temperature", "top_k"):
        assert W.bitwise_equal(out, expected)
    else:
        report = W.check_stage(
            stage,
            x,
            stage_value(ours),
            out,
            expected,
            kwargs.get("filter_value", -math.inf),
            min_tokens_to_keep=kwargs.get("min_tokens_to_keep", 1),
        )
        W.assert_report(report, x.numel(), dtype, name)


def test_eta_leaves_nan_rows_unfiltered(seed, monkeypatch):
    """transformers' EtaLogitsWarper raises on a row whose softmax is NaN; pysample's leaves the row as it is."""
    x = W.make_logits(8, 300, torch.float32, seed, ["nan_entry", "all_nan", "all_neg_inf", "pos_inf"])
    # torch._dynamo turns distribution argument validation off for the whole process once it is used.
    monkeypatch.setattr(torch.distributions.Distribution, "_validate_args", True)
    with pytest.raises(ValueError):
        transformers.EtaLogitsWarper(0.1)(None, x)
    out = pysample.EtaLogitsWarper(0.1)(None, x)
    assert W.bitwise_equal(out, x)
    assert W.bitwise_equal(out, reference.eta(x, 0.1))


def test_processors_accept_input_ids_and_half_precision():
    ids = torch.randint(0, 100, (3, 7))
    x = torch.randn(3, 100, dtype=torch.bfloat16)
    for name in CLASS_NAMES:
        cls = getattr(pysample, name)
        processor = cls(0.5) if name != "TopKLogitsWarper" else cls(5)
        assert processor(ids, x).dtype == torch.bfloat16
        assert W.bitwise_equal(processor(ids, x), processor(None, x))


# ---- constructor errors ----------------------------------------------------------------------------------------

INVALID_ARGS = [
    ("TemperatureLogitsWarper", (0.0,), {}),
    ("TemperatureLogitsWarper", (-1.0,), {}),
    ("TemperatureLogitsWarper", (1,), {}),
    ("TemperatureLogitsWarper", ("0.7",), {}),
    ("TemperatureLogitsWarper", (None,), {}),
    ("TopKLogitsWarper", (0,), {}),
    ("TopKLogitsWarper", (-5,), {}),
    ("TopKLogitsWarper", (2.5,), {}),
    ("TopKLogitsWarper", ("3",), {}),
    ("TopPLogitsWarper", (-0.1,), {}),
    ("TopPLogitsWarper", (1.5,), {}),
    ("TopPLogitsWarper", ("abc",), {}),
    ("TopPLogitsWarper", (0.5,), {"min_tokens_to_keep": 0}),
    ("TopPLogitsWarper", (0.5,), {"min_tokens_to_keep": -1}),
    ("TopPLogitsWarper", (0.5,), {"min_tokens_to_keep": 1.5}),
    ("MinPLogitsWarper", (-0.1,), {}),
    ("MinPLogitsWarper", (1.01,), {}),
    ("MinPLogitsWarper", (math.inf,), {}),
    ("MinPLogitsWarper", ("0.5",), {}),
    ("MinPLogitsWarper", (0.1,), {"min_tokens_to_keep": 0}),
    ("MinPLogitsWarper", (0.1,), {"min_tokens_to_keep": 2.0}),
    ("TypicalLogitsWarper", (0.0,), {}),
    ("TypicalLogitsWarper", (1.0,), {}),
    ("TypicalLogitsWarper", (-0.5,), {}),
    ("TypicalLogitsWarper", (1.5,), {}),
    ("TypicalLogitsWarper", (0.9,), {"min_tokens_to_keep": 0}),
    ("EpsilonLogitsWarper", (0.0,), {}),
    ("EpsilonLogitsWarper", (1.0,), {}),
    ("EpsilonLogitsWarper", (-1.0,), {}),
    ("EpsilonLogitsWarper", (0.1,), {"min_tokens_to_keep": 0}),
    ("EpsilonLogitsWarper", (0.1,), {"min_tokens_to_keep": -3}),
    ("EpsilonLogitsWarper", (0.1,), {"min_tokens_to_keep": math.nan}),
    ("EtaLogitsWarper", (0.0,), {}),
    ("EtaLogitsWarper", (1.0,), {}),
    ("EtaLogitsWarper", (2.0,), {}),
    ("EtaLogitsWarper", (0.1,), {"min_tokens_to_keep": 0}),
]


def _raised(factory):
    try:
        factory()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return error
    return None


@pytest.mark.parametrize(
    "name, args, kwargs", INVALID_ARGS, ids=[f"{n}{a}{k or ''}".replace(" ", "") for n, a, k in INVALID_ARGS]
)
def test_invalid_arguments_raise_like_transformers(name, args, kwargs):
    theirs = _raised(lambda: getattr(transformers, name)(*args, **kwargs))
    ours = _raised(lambda: getattr(pysample, name)(*args, **kwargs))
    assert theirs is not None, "the case list must hold arguments transformers rejects"
    assert type(ours) is type(theirs) and str(ours) == str(theirs)


VALID_EDGE_ARGS = [
    ("TopKLogitsWarper", (5,), {"min_tokens_to_keep": 0}),
    ("TopPLogitsWarper", (1,), {}),
    ("TopPLogitsWarper", (0.0,), {}),
    ("MinPLogitsWarper", (1,), {}),
    ("TypicalLogitsWarper", (), {}),
    ("EpsilonLogitsWarper", (0.5,), {"min_tokens_to_keep": 1.7}),
    ("EtaLogitsWarper", (0.5,), {"min_tokens_to_keep": 2.0, "device": "cpu"}),
]


@pytest.mark.parametrize(
    "name, args, kwargs", VALID_EDGE_ARGS, ids=[f"{n}{a}{k or ''}".replace(" ", "") for n, a, k in VALID_EDGE_ARGS]
)
def test_valid_edge_arguments_accepted_like_transformers(name, args, kwargs):
    theirs = getattr(transformers, name)(*args, **kwargs)
    ours = getattr(pysample, name)(*args, **kwargs)
    x = torch.randn(3, 50)
    assert W.bitwise_equal(ours(None, x), theirs(None, x))


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("TemperatureLogitsWarper", (math.nan,), {}),
        ("TopKLogitsWarper", (math.nan,), {}),
        ("TopPLogitsWarper", (math.nan,), {}),
        ("MinPLogitsWarper", (math.nan,), {}),
        ("TypicalLogitsWarper", (math.nan,), {}),
        ("EpsilonLogitsWarper", (math.nan,), {}),
        ("EtaLogitsWarper", (math.nan,), {}),
        ("TopPLogitsWarper", (0.5,), {"min_tokens_to_keep": math.nan}),
        ("EtaLogitsWarper", (0.5,), {"min_tokens_to_keep": math.nan}),
    ],
    ids=lambda v: str(v),
)
def test_nan_arguments_raise_value_error(name, args, kwargs):
    """NaN is rejected by every class (transformers accepts it for top-p, epsilon and eta); where transformers
    raises too, the message is the same."""
    ours = _raised(lambda: getattr(pysample, name)(*args, **kwargs))
    assert isinstance(ours, ValueError)
    theirs = _raised(lambda: getattr(transformers, name)(*args, **kwargs))
    if theirs is not None:
        assert type(ours) is type(theirs) and str(ours) == str(theirs)
    else:
        assert "nan" in str(ours)


def test_infinite_temperature_is_rejected():
    """Documented deviation: transformers accepts temperature=inf (all scores become 0 or NaN); pysample's op needs a
    finite temperature, so the class raises transformers' own message."""
    transformers.TemperatureLogitsWarper(math.inf)
    with pytest.raises(ValueError, match="strictly positive float"):
        pysample.TemperatureLogitsWarper(math.inf)


def test_min_p_bool_argument():
    """transformers accepts MinPLogitsWarper(True) (min_p = 1); so does pysample, and both give the same scores."""
    x = torch.randn(2, 10)
    assert W.bitwise_equal(pysample.MinPLogitsWarper(True)(None, x), transformers.MinPLogitsWarper(True)(None, x))


# ---- fuse ------------------------------------------------------------------------------------------------------


def _penalty_ids(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, x.shape[1], (x.shape[0], 12), generator=g)


P, T = pysample, transformers
FUSE_CASES = {
    "generate-order": lambda: [
        P.TemperatureLogitsWarper(0.7),
        P.TopKLogitsWarper(50),
        P.TopPLogitsWarper(0.9),
        P.MinPLogitsWarper(0.05),
    ],
    "transformers-instances": lambda: [
        T.TemperatureLogitsWarper(0.7),
        T.TopKLogitsWarper(50),
        T.TopPLogitsWarper(0.9),
        T.MinPLogitsWarper(0.05),
    ],
    "mixed-instances": lambda: [
        T.TemperatureLogitsWarper(1.3),
        P.TopKLogitsWarper(100),
        T.TopPLogitsWarper(0.95),
        P.TypicalLogitsWarper(0.9),
        T.EpsilonLogitsWarper(1e-4),
        P.EtaLogitsWarper(1e-3),
    ],
    "all-seven": lambda: [
        P.TemperatureLogitsWarper(0.8),
        P.TopKLogitsWarper(200),
        P.TopPLogitsWarper(0.95),
        P.MinPLogitsWarper(0.02),
        P.TypicalLogitsWarper(0.95),
        P.EpsilonLogitsWarper(1e-5),
        P.EtaLogitsWarper(1e-4),
    ],
    "out-of-order": lambda: [P.TopPLogitsWarper(0.9), P.TopKLogitsWarper(20), P.TemperatureLogitsWarper(0.5)],
    "out-of-order-2": lambda: [
        P.MinPLogitsWarper(0.1),
        P.TemperatureLogitsWarper(1.5),
        P.TopPLogitsWarper(0.8),
        P.TopPLogitsWarper(0.5),
    ],
    "finite-filter-first": lambda: [P.TopKLogitsWarper(20, filter_value=0.0), P.TopPLogitsWarper(0.9)],
    "finite-filter-middle": lambda: [
        P.TemperatureLogitsWarper(0.7),
        P.TopPLogitsWarper(0.9, filter_value=-5.0),
        P.MinPLogitsWarper(0.1),
    ],
    "differing-min-tokens": lambda: [
        P.TopPLogitsWarper(0.9, min_tokens_to_keep=3),
        P.MinPLogitsWarper(0.1),
        P.EpsilonLogitsWarper(1e-3, min_tokens_to_keep=2),
    ],
    "repetition-penalty-in-middle": lambda: [
        P.TemperatureLogitsWarper(0.7),
        RepetitionPenaltyLogitsProcessor(1.3),
        P.TopKLogitsWarper(40),
        P.TopPLogitsWarper(0.9),
    ],
    "plain-callable": lambda: [P.TopKLogitsWarper(30), lambda ids, s: s * 2.0, P.TopPLogitsWarper(0.9)],
    "single": lambda: [P.TopPLogitsWarper(0.7)],
}


@pytest.mark.parametrize("case", list(FUSE_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_fuse_equals_applying_in_order(seed, case, dtype):
    processors = FUSE_CASES[case]()
    x = W.make_logits(22, 1000, dtype, seed, row_kinds_for(processors))
    ids = _penalty_ids(x, seed)
    before = x.clone()
    out = check_processors(processors, x, ids, what=case)
    assert W.bitwise_equal(x, before), "fuse must not modify its input"
    assert out.shape == x.shape and out.dtype == dtype


def test_fuse_empty_is_identity():
    x = torch.randn(2, 30)
    out = pysample.fuse([])(None, x)
    assert W.bitwise_equal(out, x)


def _count_op_calls(monkeypatch) -> list:
    calls = []
    for name in ("warp_logits", "warp_logits_"):
        original = getattr(pysample.ops, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(pysample.ops, name, counted)
    return calls


@pytest.mark.parametrize(
    "case, expected_calls",
    [
        ("generate-order", 1),
        ("transformers-instances", 1),
        ("all-seven", 1),
        ("mixed-instances", 1),
        ("out-of-order", 3),
        ("finite-filter-first", 2),
        ("differing-min-tokens", 3),
        ("repetition-penalty-in-middle", 2),
    ],
)
def test_fuse_groups_what_can_be_fused(monkeypatch, case, expected_calls):
    """Stages in generate()'s order with the default filter value and one min_tokens_to_keep run as one call."""
    calls = _count_op_calls(monkeypatch)
    x = torch.randn(3, 200)
    pysample.fuse(FUSE_CASES[case]())(_penalty_ids(x, 0), x)
    assert len(calls) == expected_calls, calls


# ---- model.generate with a tiny random Llama ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the generate tests: much faster on a busy 2-core machine; tokens do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(one_thread):
    torch.manual_seed(1234)
    config = transformers.LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    # Random init gives nearly flat logits: sharpen them so that the warpers have something to cut.
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    return model


GENERATE_CASES = [
    {"temperature": 0.7, "top_k": 50, "top_p": 0.9},
    {"temperature": 1.3, "top_p": 0.8, "min_p": 0.1},
    {"typical_p": 0.9, "epsilon_cutoff": 1e-3},
    {"temperature": 0.5, "eta_cutoff": 1e-3},
    {
        "temperature": 0.9,
        "top_k": 100,
        "top_p": 0.95,
        "min_p": 0.02,
        "typical_p": 0.95,
        "epsilon_cutoff": 1e-4,
        "eta_cutoff": 1e-4,
    },
]


# generate() flag -> the pysample class replacing its warper, in generate()'s order.
PYSAMPLE_BY_FLAG = {
    "temperature": pysample.TemperatureLogitsWarper,
    "top_k": pysample.TopKLogitsWarper,
    "top_p": pysample.TopPLogitsWarper,
    "min_p": pysample.MinPLogitsWarper,
    "typical_p": pysample.TypicalLogitsWarper,
    "epsilon_cutoff": pysample.EpsilonLogitsWarper,
    "eta_cutoff": pysample.EtaLogitsWarper,
}


def pysample_processors(flags) -> list:
    return [cls(flags[flag]) for flag, cls in PYSAMPLE_BY_FLAG.items() if flag in flags]


@pytest.mark.parametrize("flags", GENERATE_CASES, ids=lambda f: "+".join(f"{k}={v}" for k, v in f.items()))
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_generate_with_pysample_processors(tiny_model, flags, fused):
    """Sampling with pysample's warpers gives the tokens transformers' own warpers give (same seed).

    transformers' warpers come from the generate flags; pysample's are passed as logits_processor with top_k=0
    and no sampling flag, so that generate() adds no warper of its own (see TRANSFORMERS-NOTES.md).
    """
    prompt = torch.tensor([[1, 17, 230, 45, 99, 3], [1, 500, 501, 502, 7, 8]])
    common = dict(do_sample=True, max_new_tokens=20, pad_token_id=0)
    torch.manual_seed(42)
    expected = tiny_model.generate(prompt, **flags, **common)
    processors = pysample_processors(flags)
    chain = [pysample.fuse(processors)] if fused else processors
    torch.manual_seed(42)
    out = tiny_model.generate(prompt, top_k=0, logits_processor=LogitsProcessorList(chain), **common)
    assert out.shape == expected.shape == (2, prompt.shape[1] + 20)
    assert torch.equal(out, expected)


def test_generate_with_transformers_instances_fused(tiny_model):
    """fuse() of transformers' own warper instances works as a custom processor too."""
    prompt = torch.tensor([[1, 17, 230, 45, 99, 3]])
    common = dict(do_sample=True, max_new_tokens=20, pad_token_id=0)
    torch.manual_seed(7)
    expected = tiny_model.generate(prompt, temperature=0.8, top_k=40, top_p=0.9, **common)
    chain = pysample.fuse(
        [
            transformers.TemperatureLogitsWarper(0.8),
            transformers.TopKLogitsWarper(40),
            transformers.TopPLogitsWarper(0.9),
        ]
    )
    torch.manual_seed(7)
    out = tiny_model.generate(prompt, top_k=0, logits_processor=LogitsProcessorList([chain]), **common)
    assert torch.equal(out, expected)
