"""Python entry points of the ``torch.ops.pysample`` ops, and their fake (meta) implementations.

Arguments are forwarded as they are: the ops themselves check them and raise ``ValueError`` / ``TypeError`` naming
the argument, so C++ callers get the same checks.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

from . import _C  # noqa: F401  (loads the library: registers torch.ops.pysample)

FloatParam = Union[float, torch.Tensor, None]
IntParam = Union[int, torch.Tensor, None]

_WARP_STAGES = (
    ("temperature", torch.float32),
    ("top_k", torch.int64),
    ("top_p", torch.float32),
    ("min_p", torch.float32),
    ("typical_p", torch.float32),
    ("epsilon", torch.float32),
    ("eta", torch.float32),
)


def _split(name: str, value, dtype: torch.dtype, logits: torch.Tensor) -> Tuple[Optional[torch.Tensor], object]:
    """A parameter as the op takes it: (per-row tensor, None), (None, scalar) or (None, None)."""
    if value is None:
        return None, None
    if isinstance(value, torch.Tensor):
        integral = not value.dtype.is_floating_point and not value.dtype.is_complex and value.dtype != torch.bool
        if (dtype == torch.int64 and not integral) or (dtype != torch.int64 and not value.dtype.is_floating_point):
            kind = "an integer" if dtype == torch.int64 else "a floating-point"
            raise TypeError(f"{name} must be {kind} tensor, got {value.dtype}")
        if value.device != logits.device:
            raise ValueError(f"{name} must be on the logits' device {logits.device}, got {value.device}")
        if value.dim() == 0:  # one value for every row, without reading it on the host
            value = value.reshape(1).expand(logits.shape[0])
        return value.to(dtype=dtype).contiguous(), None
    if dtype == torch.int64:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int or a tensor, got {type(value).__name__}")
        return None, value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return None, float(value)


def _warp_arguments(logits: torch.Tensor, params: dict) -> list:
    args = []
    for name, dtype in _WARP_STAGES:
        args.extend(_split(name, params[name], dtype, logits))
    return args


def warp_logits_(
    logits: torch.Tensor,
    *,
    temperature: FloatParam = None,
    top_k: IntParam = None,
    top_p: FloatParam = None,
    min_p: FloatParam = None,
    typical_p: FloatParam = None,
    epsilon: FloatParam = None,
    eta: FloatParam = None,
    min_tokens_to_keep: int = 1,
    filter_value: float = -math.inf,
) -> torch.Tensor:
    """Applies temperature, top-k, top-p, min-p, typical, epsilon and eta to ``logits`` in place, in one call.

    The stages run in transformers' order (Temperature, TopK, TopP, MinP, Typical, Epsilon, Eta) with the semantics
    of its warpers; each is skipped when its parameter is ``None``. Every parameter is a Python scalar, a ``(batch,)``
    tensor with one value per row (requests in a serving batch), or a 0-d tensor. No sort of the vocabulary and no
    host synchronisation.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)`` float32, float16 or bfloat16 scores; modified in place.
    temperature : float or Tensor, optional
        Divides the logits (> 0).
    top_k : int or Tensor, optional
        Keeps the ``top_k`` largest values and every value tied with the last; 0 keeps everything.
    top_p : float or Tensor, optional
        Keeps the smallest set of most probable tokens whose probability reaches ``top_p`` (in [0, 1]).
    min_p : float or Tensor, optional
        Removes tokens less probable than ``min_p`` times the most probable one.
    typical_p : float or Tensor, optional
        Typical decoding mass (in [0, 1]).
    epsilon : float or Tensor, optional
        Removes tokens whose probability is below ``epsilon``.
    eta : float or Tensor, optional
        Eta-sampling's epsilon: removes tokens below ``min(eta, sqrt(eta) * exp(-entropy))``.
    min_tokens_to_keep : int
        Top-p, min-p, typical, epsilon and eta keep at least this many tokens.
    filter_value : float
        Value written to removed tokens. Later stages treat removed tokens as having probability 0, which is what
        running the warpers one after the other gives for the default ``-inf``.

    Returns
    -------
    torch.Tensor
        ``logits`` itself.

    Examples
    --------
    >>> logits = torch.randn(4, 32000)
    >>> _ = pysample.ops.warp_logits_(logits, temperature=0.7, top_k=50, top_p=0.9)
    >>> int((logits > -math.inf).sum(-1).max()) <= 50
    True
    """
    params = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                  epsilon=epsilon, eta=eta)
    torch.ops.pysample.warp_logits_(logits, *_warp_arguments(logits, params), min_tokens_to_keep, filter_value)
    return logits


def warp_logits(
    logits: torch.Tensor,
    *,
    temperature: FloatParam = None,
    top_k: IntParam = None,
    top_p: FloatParam = None,
    min_p: FloatParam = None,
    typical_p: FloatParam = None,
    epsilon: FloatParam = None,
    eta: FloatParam = None,
    min_tokens_to_keep: int = 1,
    filter_value: float = -math.inf,
) -> torch.Tensor:
    """Out-of-place :func:`warp_logits_`: returns new warped logits ``(batch, vocab)``, ``logits`` untouched.

    Examples
    --------
    >>> logits = torch.tensor([[1.0, 2.0, 3.0]])
    >>> pysample.ops.warp_logits(logits, top_k=2)
    tensor([[-inf, 2., 3.]])
    """
    params = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                  epsilon=epsilon, eta=eta)
    return torch.ops.pysample.warp_logits(logits, *_warp_arguments(logits, params), min_tokens_to_keep, filter_value)


def _check_fake_arguments(logits: torch.Tensor, args: tuple) -> None:
    """The checks of the real kernels that fake tensors allow: shapes, dtypes and devices."""
    torch._check(logits.dim() == 2, lambda: f"logits must be 2-D (batch, vocab), got shape {tuple(logits.shape)}")
    torch._check(logits.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    for (name, dtype), rows in zip(_WARP_STAGES, args[0::2]):
        if rows is None:
            continue
        torch._check(rows.dim() == 1 and rows.shape[0] == logits.shape[0],
                     lambda: f"{name} must have shape (batch,), got {tuple(rows.shape)}")
        torch._check(rows.dtype == dtype, lambda: f"{name} must be {dtype}, got {rows.dtype}")
        torch._check(rows.device == logits.device,
                     lambda: f"{name} must be on the logits' device {logits.device}, got {rows.device}")


@torch.library.register_fake("pysample::warp_logits_")
def _warp_logits_inplace_fake(logits, *args):
    _check_fake_arguments(logits, args)
    return None


@torch.library.register_fake("pysample::warp_logits")
def _warp_logits_fake(logits, *args):
    _check_fake_arguments(logits, args)
    return torch.empty_like(logits, memory_format=torch.contiguous_format)
