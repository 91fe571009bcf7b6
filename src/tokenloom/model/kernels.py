"""Matrix products for decoding on a CPU, with weights prepacked for the kernel.

Decoding one token multiplies a single row by every weight matrix, so its speed is
the rate at which weights stream from memory. PyTorch's plain `F.linear` streams
them well below that rate for such a row (and slower still for a batch of 8 rows);
the same product through a weight packed once into oneDNN's blocked layout (the
layout PyTorch's own compiler uses on CPUs) streams them markedly faster, in float32
and bfloat16, for 1 to 8 rows, and is no slower for a long prompt. The figures, with
the CPU and the end-to-end effect, are in docs/performance.md ("Against transformers").

A packed copy is made only for inference, used only while gradients are off, and
dropped as soon as the weight changes (its version counter moves), so training and
fine-tuning always see the live weight. Under `torch.compile` the plain product is
traced instead, and inductor chooses its own kernel.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import nn

from tokenloom import private_apis as private

PACK_ROWS = 8  # the row count oneDNN picks its layout for: fast from 1 to 8 rows
log = logging.getLogger(__name__)


def packing_usable() -> bool:
    """Whether weights can be prepacked: oneDNN's private linear operators and Tensor._version
    (private_apis.py probes both and says once when either is missing)."""
    return private.usable("mkldnn_linear") and private.usable("tensor_version")


@functools.cache
def bfloat16_packing() -> bool:
    """Whether oneDNN can pack bfloat16 weights on this CPU.

    Its bfloat16 path needs AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT; on an AVX2-only CPU
    (an AMD EPYC Zen 3, say) the reorder raises. There bfloat16 products stay on
    `F.linear`, which is correct everywhere, and this is said once.
    """
    if not (packing_usable() and private.usable("mkldnn_bf16_check")):
        return False  # private_apis.py has said why
    supported = private.mkldnn_bf16_supported()
    if not supported:
        log.warning("bfloat16 weights are not prepacked: oneDNN's bfloat16 path needs AVX-512 (BW, VL, DQ) "
                    "or AVX-NE-CONVERT, which this CPU (%s) lacks; bfloat16 products use F.linear",
                    torch.backends.cpu.get_cpu_capability())
    return supported


class Packed:
    """A weight packed for one kernel, and the weight version it was packed from."""

    def __init__(self, weight: torch.Tensor):
        self.version = private.tensor_version(weight)
        self.data = private.mkldnn_pack(weight, PACK_ROWS)

    @staticmethod
    def supported(weight: torch.Tensor) -> bool:
        if not (weight.device.type == "cpu" and weight.dim() == 2 and packing_usable()):
            return False
        return weight.dtype == torch.float32 or (weight.dtype == torch.bfloat16 and bfloat16_packing())


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packed: Packed | None):
    """y = x·Wᵀ + b, through the packed weight when it is current and no gradient is needed.

    x is cast to the weight's precision (activations may arrive in float32 from attention).
    """
    if x.dtype != weight.dtype:
        x = x.to(weight.dtype)
    if (packed is None or torch.is_grad_enabled() or packed.version != private.tensor_version(weight)
            or torch.compiler.is_compiling()):
        return F.linear(x, weight, bias)
    if x.numel() == x.shape[-1]:  # one row: oneDNN's one-row kernel sums in another order than
        # its kernel for two or more, so a lone sequence would round differently from the same
        # sequence in a batch. Two rows cost the same weight traffic; the second is dropped.
        pair = torch.cat([x.reshape(1, -1), x.reshape(1, -1)])  # (2, K)
        y = private.mkldnn_linear(pair, packed.data, bias)
        return y[:1].view(*x.shape[:-1], -1)
    return private.mkldnn_linear(x, packed.data, bias)


class Linear(nn.Linear):
    """`nn.Linear` that can prepack its weight for fast inference (see the module doc)."""

    packed: Packed | None = None

    def pack(self) -> None:
        self.packed = Packed(self.weight.detach()) if Packed.supported(self.weight) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_linear(x, self.weight, self.bias, self.packed)
