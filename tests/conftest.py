"""Shared fixtures: devices, a seed per test (reported on failure), and the known-bug registry."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from warp_compare import seed_for_test

# Hypothesis draws the same examples every run, as the seeded tests do (CI checks the same inputs); fresh ones with
# PYSAMPLE_TEST_SEED=random (scripts/soak).
settings.register_profile(
    "pysample",
    derandomize=os.environ.get("PYSAMPLE_TEST_SEED") != "random",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("pysample")

CUDA_SKIP = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")

#: Parametrize a test over these: the CPU always, CUDA when available (skipped with a reason otherwise).
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_SKIP, id="cuda")]


#: Marks what only `scripts/test --full` (and CI) runs: scripts/test deselects it to stay within a few minutes.
SLOW = pytest.mark.slow


def slow_except(values, quick):
    """`values` to parametrize over, each but those in `quick` marked SLOW."""
    return [value if value in quick else pytest.param(value, marks=SLOW) for value in values]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: run by scripts/test --full and CI, deselected by scripts/test")


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture
def seed(request) -> int:
    """The seed of this test's random inputs (see warp_compare.seed_for_test)."""
    value = seed_for_test(request.node.nodeid)
    request.node._pysample_seed = value
    print(f"PYSAMPLE_TEST_SEED={value}")
    return value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    value = getattr(item, "_pysample_seed", None)
    if value is not None and report.failed:
        report.sections.append(("random seed", f"replay with PYSAMPLE_TEST_SEED={value}"))
    return report
