"""Command line of pysample: ``python -m pysample demo|bench|version [ARGS]`` (``python -m pysample`` lists them)."""

from __future__ import annotations

import sys
from typing import List, Optional

USAGE = """usage: python -m pysample COMMAND [ARGS]

commands:
  demo      generate with SmolLM2-135M (greedy + penalties, sampling, beam search) using transformers' processors
            and cache and pysample's, check the tokens match, and compare the time per step (demo --help)
  bench     time every op at its headline shapes against transformers: a ratio table, JSON and a PNG plot,
            optionally beside a saved run (python -m pysample bench --help)
  version   print pysample's version and the torch it runs on
"""


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if command == "bench":
        from .bench import main as bench_main

        return bench_main(rest)
    if command == "version":
        import torch

        from . import __version__

        cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
        print(f"pysample {__version__} (torch {torch.__version__}, {cuda})")
        return 0
    print(f"python -m pysample: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
