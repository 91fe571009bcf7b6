"""Where a model computes: the CPU (the default) or a CUDA GPU.

    tl.load(name, device="cuda")      tokenloom generate --device cuda ...

On CUDA the weights, the KV pool and every forward pass live on the GPU; the sampler
reads each step's logits on the CPU (a (B, V) copy a step), so every processor of the
chain, structured output included, is the same code on both. A GGUF file's quantized
blocks are CPU kernels (model/blocks.py), so on CUDA "auto" precision dequantizes them to
bfloat16 and "native" is refused with the reason; float32 and bfloat16 work as on the CPU.
"""

from __future__ import annotations

import torch

from tokenloom.errors import InvalidArgument


def resolve(device: str | torch.device | None) -> torch.device:
    """The torch.device asked for, checked: "cpu", "cuda" or "cuda:N", with the GPU present."""
    if device is None:
        return torch.device("cpu")
    try:
        place = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgument(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if place.type == "cpu":
        return place
    if place.type != "cuda":
        raise InvalidArgument(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise InvalidArgument(f"device {device!r}: CUDA is not available here (torch {torch.__version__}, "
                              "torch.cuda.is_available() is False); use device='cpu'")
    if place.index is not None and place.index >= torch.cuda.device_count():
        raise InvalidArgument(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return place


def precision_for(place: torch.device, precision: str, kind: str) -> str:
    """The precision to load with on `place`: GGUF's "auto" becomes bfloat16 on CUDA; "native" is CPU-only."""
    if place.type == "cpu":
        return precision
    if precision == "native":
        raise InvalidArgument("precision 'native' computes on GGUF blocks with tokenloom's CPU kernels; "
                              "on CUDA choose 'bfloat16' or 'float32' (or 'auto': bfloat16 for GGUF files)")
    if precision == "auto" and kind == "gguf":
        return "bfloat16"
    return precision


def place_model(model, place: torch.device) -> None:
    """Move a loaded model to `place`: weights, rope tables; CPU-only prepacked copies and the fused
    CPU decode step are dropped there."""
    if place.type == "cpu":
        return
    model.to(place)
    model.fused_decoder = None
    if model.rope_cos is not None:
        model.setup_rope()
    model.pack_for_inference()  # on CUDA nothing is packed: the CPU copies go
