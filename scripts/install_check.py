"""What `import pysample` gives a user who installed the wheel into an environment holding torch alone (run by
scripts/test_install): the ops and the drop-in processors work, and nothing but torch is imported; the classes
that subclass transformers' raise an ImportError naming the extra to install."""

import importlib.util
import sys

import torch

import pysample

for optional in ("numpy", "transformers"):
    assert importlib.util.find_spec(optional) is None, f"{optional} is installed: this check needs torch alone"
    assert optional not in sys.modules

logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
tokens = pysample.sample(logits, temperature=0.7, top_k=50, top_p=0.9, seed=torch.arange(4))
assert tokens.shape == (4,) and bool(((tokens >= 0) & (tokens < 1000)).all()), tokens
warped = pysample.TopPLogitsWarper(0.9)(torch.zeros(4, 1, dtype=torch.long), logits.clone())
assert torch.equal(warped, pysample.warp_logits(logits, top_p=0.9))
assert pysample.SequenceBiasLogitsProcessor({(5,): 1.0})(torch.zeros(4, 1, dtype=torch.long), logits)[0, 5] == (
    logits[0, 5] + 1
)
for name in ("BeamCache", "BeamStaticCache"):
    try:
        getattr(pysample, name)
    except ImportError as error:
        assert "pip install 'pysample[transformers]'" in str(error), error
    else:
        raise AssertionError(f"pysample.{name} without transformers did not raise ImportError")
print(f"install_check: pysample {pysample.__version__} on torch {torch.__version__} alone: ok")
