"""Every private API of another library that tokenloom calls, each behind one check.

A private name (a leading underscore, or `_unsafe` in it) may change or vanish in any
release, so none is called from anywhere else in tokenloom. Each entry of `PROBES`
checks once, on first use, that its API exists and gives the expected answer on a tiny
input; where it does not, the caller takes the public path beside it, which gives the
same results more slowly, and one WARNING says what was lost and why. A newer PyTorch
or Python can therefore cost speed, never correctness.

    entry               private API                                           public fallback
    count_elements      collections._count_elements (Counter's C loop)        a dict-counting loop
    mkldnn_linear       torch.ops.mkldnn._reorder_linear_weight,              F.linear on the plain weight
                        torch.ops.mkldnn._linear_pointwise
    mkldnn_bf16_check   torch.ops.mkldnn._is_mkldnn_bf16_supported            bfloat16 weights stay unpacked
    tensor_version      Tensor._version (a weight's in-place change counter)  weights stay unpacked
    int4                torch.ops.aten._convert_weight_to_int4pack_for_cpu,   dequantize to bfloat16, F.linear
                        torch.ops.aten._weight_int4pack_mm_for_cpu
    skip_module_guards  torch.compiler.skip_guard_on_all_nn_modules_unsafe    dynamo's default guards
    dynamo_config       torch._dynamo.config.force_nn_module_property_        dynamo's defaults (more recompiles)
                        static_shapes, set only around tokenloom's calls
    inductor_cpp        torch._inductor.cpp_builder.get_cpp_compiler          a C++ compiler on PATH ($CXX, c++, g++)

`usable(name)` says whether an entry's API is there. The module imports only the
standard library at import time (torch inside the functions), so `tokenloom.metrics`
stays importable without torch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)


class Entry(NamedTuple):
    api: str  # the private names, as a user would grep for them
    fallback: str  # what runs instead, and what that costs
    probe: Callable[[], None]  # raises when the API is missing or gives a wrong answer


# ----------------------------------------------------------------- probes


def _probe_count_elements() -> None:
    from collections import _count_elements

    counts: dict = {}
    _count_elements(counts, ("a", "b", "a"))
    if counts != {"a": 2, "b": 1}:
        raise RuntimeError(f"counted {counts} for ('a', 'b', 'a')")


def _probe_mkldnn_linear() -> None:
    import torch
    import torch.nn.functional as F

    if not torch.backends.mkldnn.is_available():
        raise RuntimeError("this PyTorch build has no oneDNN")
    generator = torch.Generator().manual_seed(0)
    weight, x = torch.randn(16, 32, generator=generator), torch.randn(3, 32, generator=generator)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 8)
    got = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    torch.testing.assert_close(got, F.linear(x, weight), rtol=1e-4, atol=1e-4)


def _probe_mkldnn_bf16_check() -> None:
    import torch

    bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _probe_tensor_version() -> None:
    import torch

    t = torch.zeros(1)
    before = t._version
    t.add_(1)
    if not t._version > before:
        raise RuntimeError("an in-place add did not move Tensor._version")


def _probe_int4() -> None:
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    N, K, group = 16, 256, 32  # the kernel tiles K by 8 groups of 32
    codes = torch.randint(0, 16, (N, K), generator=generator, dtype=torch.int32)
    scale = torch.rand(N, K // group, generator=generator) / 8 + 0.01
    zero = torch.randn(N, K // group, generator=generator) / 8
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 8)
    scales_zeros = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()  # (K/32, N, 2)
    x = torch.randn(2, K, generator=generator).to(torch.bfloat16)
    got = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group, scales_zeros)
    s, z = (t.t().float().unsqueeze(-1) for t in scales_zeros.unbind(-1))  # (N, K/32, 1) each
    weight = ((codes.view(N, -1, group) - 8) * s + z).view(N, K)
    torch.testing.assert_close(got.float(), F.linear(x.float(), weight), rtol=2e-2, atol=5e-2)


def _probe_skip_module_guards() -> None:
    import torch

    if not callable(torch.compiler.skip_guard_on_all_nn_modules_unsafe):
        raise RuntimeError("not callable")


DYNAMO_SETTINGS = {
    # Let dynamo trace an nn.Module's int properties (the KV pool's sizes) as dynamic, so one
    # graph serves every batch and cache length.
    "force_nn_module_property_static_shapes": False,
}


def _probe_dynamo_config() -> None:
    import torch._dynamo

    for name in DYNAMO_SETTINGS:
        getattr(torch._dynamo.config, name)
    with torch._dynamo.config.patch(**DYNAMO_SETTINGS):
        pass


def _probe_inductor_cpp() -> None:
    from torch._inductor.cpp_builder import get_cpp_compiler

    if not callable(get_cpp_compiler):
        raise RuntimeError("not callable")


PROBES: dict[str, Entry] = {
    "count_elements": Entry("collections._count_elements",
                            "n-grams are counted by a Python loop (slower, the same counts)", _probe_count_elements),
    "mkldnn_linear": Entry("torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise",
                           "weights are not prepacked for oneDNN; products use F.linear (slower decoding, "
                           "the same results)", _probe_mkldnn_linear),
    "mkldnn_bf16_check": Entry("torch.ops.mkldnn._is_mkldnn_bf16_supported",
                               "bfloat16 weights are not prepacked; their products use F.linear",
                               _probe_mkldnn_bf16_check),
    "tensor_version": Entry("torch.Tensor._version",
                            "a packed copy could not tell when its weight changed, so weights are not prepacked; "
                            "products use F.linear", _probe_tensor_version),
    "int4": Entry("torch.ops.aten._convert_weight_to_int4pack_for_cpu / _weight_int4pack_mm_for_cpu",
                  "native-precision products without tokenloom's block kernels dequantize each 4-bit weight to "
                  "bfloat16 and use F.linear (much slower, the same weights)", _probe_int4),
    "skip_module_guards": Entry("torch.compiler.skip_guard_on_all_nn_modules_unsafe",
                                "the compiled decode step checks the model's tensors before each call (slower "
                                "steps, the same tokens)", _probe_skip_module_guards),
    "dynamo_config": Entry("torch._dynamo.config." + ", ".join(DYNAMO_SETTINGS),
                           "the compiled decode step runs under dynamo's defaults (it may recompile for new "
                           "batch or cache sizes; the same tokens)", _probe_dynamo_config),
    "inductor_cpp": Entry("torch._inductor.cpp_builder.get_cpp_compiler",
                          "a C++ compiler is looked for on PATH ($CXX, c++, g++, clang++) instead",
                          _probe_inductor_cpp),
}

_lock = threading.Lock()
_usable: dict[str, bool] = {}


def usable(name: str) -> bool:
    """Whether the private API of entry `name` exists and works here; probed once, said once when not."""
    known = _usable.get(name)
    if known is not None:
        return known
    if name not in PROBES:
        raise ValueError(f"no private-API entry {name!r}; the entries are {', '.join(PROBES)}")
    with _lock:
        if name not in _usable:
            entry = PROBES[name]
            try:
                entry.probe()
                _usable[name] = True
            except Exception as error:  # missing (ImportError, AttributeError) or a wrong answer
                log.warning("%s is unavailable here (%s: %s): %s", entry.api, type(error).__name__, error,
                            entry.fallback)
                _usable[name] = False
    return _usable[name]


def reset() -> None:
    """Forget every probe's answer (tests that simulate a missing API)."""
    with _lock:
        _usable.clear()
    counting_loop.cache_clear()


def report() -> dict[str, bool]:
    """{entry: usable} for every entry (`tokenloom doctor` prints it)."""
    return {name: usable(name) for name in PROBES}


# ----------------------------------------------------------------- the calls


def _count_in_python(mapping: dict, iterable) -> None:
    get = mapping.get
    for element in iterable:
        mapping[element] = get(element, 0) + 1


@functools.cache
def counting_loop() -> Callable[[dict, object], None]:
    """f(mapping, iterable): adds each element's count to mapping, as Counter.update does."""
    if usable("count_elements"):
        from collections import _count_elements

        return _count_elements
    return _count_in_python


def mkldnn_pack(weight, rows: int):
    """The weight in oneDNN's blocked layout for products of `rows` rows (needs usable('mkldnn_linear'))."""
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def mkldnn_linear(x, packed, bias):
    """x·Wᵀ + b with W packed by `mkldnn_pack`."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def mkldnn_bf16_supported() -> bool:
    """Whether oneDNN can pack bfloat16 weights on this CPU; False when the check itself is missing."""
    if not usable("mkldnn_bf16_check"):
        return False
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def tensor_version(t) -> int:
    """The counter PyTorch moves on every in-place change of t (needs usable('tensor_version'))."""
    return t._version


def int4_pack(codes, inner_k_tiles: int):
    """4-bit codes (N, K) int32 packed for the int4 CPU kernel (needs usable('int4'))."""
    import torch

    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, inner_k_tiles)


def int4_linear(x, packed, group: int, scales_zeros):
    """x (M, K) bfloat16 · Wᵀ for W = (q − 8)·scale + zero packed by `int4_pack`."""
    import torch

    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group, scales_zeros)


def compile_options() -> dict:
    """`torch.compile` options for an inference-only module: no guards on the model's tensors."""
    if not usable("skip_module_guards"):
        return {}
    import torch

    return {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}


def dynamo_settings():
    """A context that applies DYNAMO_SETTINGS while it is open and restores the process's own after."""
    if not usable("dynamo_config"):
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(**DYNAMO_SETTINGS)


def cpp_compiler_found() -> bool:
    """Whether inductor will find a C++ compiler: its own lookup, else $CXX or a usual name on PATH."""
    if usable("inductor_cpp"):
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            get_cpp_compiler()
        except Exception:  # it found none (or none that runs)
            return False
        return True
    cxx = os.environ.get("CXX")
    return bool(cxx and shutil.which(cxx)) or any(shutil.which(n) for n in ("c++", "g++", "clang++"))
