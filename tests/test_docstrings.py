"""The Examples blocks of the public modules' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import transformers

import pysample
import pysample.beam_cache
import pysample.cache
import pysample.ops
import pysample.penalties
import pysample.processors


@pytest.mark.parametrize(
    "module",
    [pysample.ops, pysample.processors, pysample.penalties, pysample.cache, pysample.beam_cache],
    ids=lambda m: m.__name__,
)
def test_examples(module):
    results = doctest.testmod(
        module,
        extraglobs={"torch": torch, "pysample": pysample, "math": math, "transformers": transformers},
        optionflags=doctest.NORMALIZE_WHITESPACE,
        report=True,
    )
    assert results.attempted > 0
    assert results.failed == 0


@pytest.mark.parametrize("name", [name for name in pysample.__all__ if name != "ops"])
def test_every_public_name_has_a_docstring_with_an_example(name):
    doc = getattr(pysample, name).__doc__ or ""
    assert "Examples" in doc, name
