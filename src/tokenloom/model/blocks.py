"""Products on a GGUF file's blocks, built for the CPU at hand and chosen at run time.

`csrc/qmatmul.c` multiplies activations, quantized to 8 bits per group of 32, with
weights in the file's own blocks (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K), and
`csrc/qdecode.c` runs a whole decode step of a Llama-family model in one call. The same
sources are compiled once per instruction set:

    avx512vnni   x86-64-v4 + AVX-512 VNNI (vpdpbusd): Intel Ice Lake and later, AMD Zen 4 and later
    avx2         x86-64-v3 (AVX2, FMA, F16C): nearly every x86-64 CPU since 2013-2015, AMD Zen 1-3 among them
    portable     plain C: any other CPU (ARM among them), correct and slower

and the best one the CPU supports is loaded (its features are read from /proc/cpuinfo).
`TOKENLOOM_CPU_KERNEL=avx2` (or `portable`) forces a lesser one, so that every variant
can be tested on one machine; `TOKENLOOM_CPU_KERNEL=off` turns them off, and native
precision falls back to PyTorch's int4 kernel (model/quant.py). Each library is built
on first use with the system's C compiler into the per-user cache (model/native.py's
`cache_dir`), keyed by a hash of the sources and flags; when that cannot be done, one
WARNING says why.

The library also applies structured output's token masks (`csrc/bitmask.c`, `apply_bitmask`).

The products are PyTorch custom operators (`torch.ops.tokenloom.block_mm`,
`torch.ops.tokenloom.block_dequantize`), so `torch.compile` traces them as opaque
calls; every C return code is checked.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import torch

from tokenloom.model.native import build_key, build_library, c_compiler, cache_dir

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
SOURCES = ("qmatmul.c", "qinterleave.c", "qdecode.c", "bitmask.c")
HEADERS = ("qblocks.h", "exp2.h")
KINDS = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}  # GGML's type ids
WIDTH = {"Q4_0": 32, "Q4_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}  # weights a block
BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}  # bytes a block
X8 = 100  # added to a type id: the blocks repacked eight rows to a tile (csrc/qinterleave.c)
TILED = ("Q4_0", "Q4_1", "Q8_0")  # the formats that layout takes
BASE = ["-O3", "-fopenmp", "-shared", "-fPIC"]
VARIANTS = {  # best first: (the CPU features it needs, compiler flags)
    "avx512vnni": ({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni"},
                   ["-march=x86-64-v4", "-mavx512vnni"]),
    "avx2": ({"avx2", "fma", "f16c", "bmi2"}, ["-march=x86-64-v3"]),
    "portable": (set(), []),
}
ENV = "TOKENLOOM_CPU_KERNEL"


@functools.cache
def cpu_features() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """The CPU a figure was measured on: model, PyTorch's capability, and the block kernels chosen."""
    return (f"CPU: {cpu_model()}; torch.backends.cpu.get_cpu_capability() = {torch.backends.cpu.get_cpu_capability()}; "
            f"GGUF block kernels: {chosen_variant() or 'off'}")


def supported_variants() -> list[str]:
    """The variants this CPU can run, best first."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return [name for name, (needs, _) in VARIANTS.items() if name == "portable" or (x86 and needs <= cpu_features())]


def chosen_variant() -> str | None:
    """The variant to load: the best supported one, or the one TOKENLOOM_CPU_KERNEL asks for; None for off."""
    wanted = os.environ.get(ENV, "").strip().lower()
    supported = supported_variants()
    if wanted in ("off", "0", "none"):
        return None
    if wanted and wanted not in VARIANTS:
        _warn_once(f"{ENV}={wanted!r} is not a kernel variant (choose from {', '.join(VARIANTS)} or off); "
                   f"using {supported[0]}")
    elif wanted and wanted not in supported:
        _warn_once(f"{ENV}={wanted!r}: this CPU ({cpu_model()}) lacks {sorted(VARIANTS[wanted][0] - cpu_features())}; "
                   f"using {supported[0]}")
    elif wanted:
        return wanted
    return supported[0]


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


class _Weight(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int64), ("N", ctypes.c_int64), ("K", ctypes.c_int64), ("data", ctypes.c_void_p)]


_P = ctypes.POINTER


class _Model(ctypes.Structure):
    _fields_ = (
        [(n, ctypes.c_int64) for n in ("n_layers", "dim", "n_heads", "n_kv_heads", "head_dim", "hidden", "max_len")]
        + [("eps", ctypes.c_float), ("attn_norm", _P(ctypes.c_void_p)), ("mlp_norm", _P(ctypes.c_void_p))]
        + [(n, _P(_Weight)) for n in ("qkv", "out", "up", "down")]
        + [("rope_cos", ctypes.c_void_p), ("rope_sin", ctypes.c_void_p)]
    )


class _Cache(ctypes.Structure):
    _fields_ = [("k", _P(ctypes.c_void_p)), ("v", _P(ctypes.c_void_p)), ("slots", ctypes.c_int64),
                ("capacity", ctypes.c_int64)]


_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL | None] = {}


def _build(variant: str) -> ctypes.CDLL | None:
    compiler = c_compiler()
    if compiler is None:
        _warn_once("no C compiler found (set CC, or install gcc): GGUF blocks use PyTorch's int4 kernel, "
                   "several times slower, and K-quant tensors are dequantized at load")
        return None
    flags = BASE + VARIANTS[variant][1]
    try:  # a source or header missing from an install is an OSError too: said, not raised
        target = cache_dir() / f"blocks-{variant}-{build_key(flags, [CSRC / n for n in (*SOURCES, *HEADERS)])}.so"
        if not target.exists():
            build_library(compiler, flags, [CSRC / n for n in SOURCES], target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as error:
        detail = (getattr(error, "stderr", None) or str(error)).strip().splitlines()[-1:]
        _warn_once(f"tokenloom's {variant} GGUF kernels could not be built with {compiler}: {' '.join(detail)}; "
                   "GGUF blocks use PyTorch's int4 kernel, several times slower")
        return None
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.tl_qmatmul.argtypes = [ctypes.c_int, vp, i64, i64, vp, i64, i64, vp, i64, ctypes.c_int]
    lib.tl_dequantize.argtypes = [ctypes.c_int, vp, i64, i64, vp, ctypes.c_int, ctypes.c_int]
    lib.tl_qsupported.argtypes = [ctypes.c_int, i64]
    lib.tl_repack_x8.argtypes = [ctypes.c_int, vp, i64, i64, vp, ctypes.c_int]
    lib.tl_apply_bitmask.argtypes = [vp, i64, vp, vp, i64, i64, i64, i64]
    lib.tl_apply_bitmask.restype = i64
    lib.tl_decode_check.argtypes = [_P(_Model)]
    lib.tl_decode.argtypes = [_P(_Model), _P(_Cache), i64, vp, vp, vp, ctypes.c_int]
    lib.tl_attend_head.argtypes = [vp, vp, vp, i64, i64, ctypes.c_float, vp, vp]
    lib.tl_attend_head.restype = None
    for fn in (lib.tl_qmatmul, lib.tl_dequantize, lib.tl_qsupported, lib.tl_repack_x8, lib.tl_decode_check,
               lib.tl_decode):
        fn.restype = ctypes.c_int
    return lib


def library(variant: str | None = None) -> ctypes.CDLL | None:
    """The kernels for `variant` (default: `chosen_variant()`), built on first use; None when unavailable."""
    variant = variant or chosen_variant()
    if variant is None or sys.platform not in ("linux", "darwin"):
        return None
    if variant not in _libs:
        with _lock:
            if variant not in _libs:
                _libs[variant] = _build(variant)
    return _libs[variant]


def available() -> bool:
    return library() is not None


def _check(status: int, what: str) -> None:
    if status != 0:
        reason = {1: "unsupported format or shape", 2: "out of memory"}.get(status, f"error {status}")
        raise RuntimeError(f"tokenloom's {what} kernel failed: {reason}")


def _loaded(lib: ctypes.CDLL | None) -> ctypes.CDLL:
    if lib is None:
        raise RuntimeError("tokenloom's GGUF kernels are not available on this machine (see `tokenloom doctor`)")
    return lib


def matmul(lib: ctypes.CDLL | None, x: torch.Tensor, blocks: torch.Tensor, kind: int, n: int) -> torch.Tensor:
    """x (M, K) float32 times the Wᵀ of blocks (n, row bytes) in GGML type `kind`, with library `lib`."""
    x = x.contiguous().float()
    M, K = x.shape
    if blocks.dtype != torch.uint8 or not blocks.is_contiguous() or blocks.shape[0] != n:
        raise ValueError(f"block_mm: blocks must be contiguous uint8 ({n}, row bytes), got {tuple(blocks.shape)} "
                         f"{blocks.dtype}")
    y = x.new_empty(M, n)
    _check(_loaded(lib).tl_qmatmul(kind, blocks.data_ptr(), n, K, x.data_ptr(), K, M, y.data_ptr(), n,
                                   torch.get_num_threads()), "block product")
    return y


def tiled(kind: str, n: int) -> bool:
    """Whether a matrix of n rows in format `kind` takes the eight-row tiles of csrc/qinterleave.c."""
    return kind in TILED and n % 8 == 0


def repack(lib: ctypes.CDLL | None, blocks: torch.Tensor, kind: int, n: int, k: int) -> tuple[torch.Tensor, int]:
    """The blocks (n, row bytes) of GGML type `kind` in eight-row tiles: (the same bytes reordered, its kind)."""
    if blocks.dtype != torch.uint8 or blocks.dim() != 2 or blocks.shape[0] != n:
        raise ValueError(f"repack: blocks must be uint8 ({n}, row bytes), got {tuple(blocks.shape)} {blocks.dtype}")
    blocks = blocks.contiguous()
    out = torch.empty_like(blocks)
    _check(_loaded(lib).tl_repack_x8(kind, blocks.data_ptr(), n, k, out.data_ptr(), torch.get_num_threads()),
           "repack")
    return out, kind + X8


def dequantize(lib: ctypes.CDLL | None, blocks: torch.Tensor, kind: int, n: int, k: int,
               dtype: torch.dtype) -> torch.Tensor:
    """W (n, k) from its blocks in float32 or bfloat16, with library `lib`."""
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"block_dequantize: dtype must be float32 or bfloat16, got {dtype}")
    out = torch.empty(n, k, dtype=dtype)
    _check(_loaded(lib).tl_dequantize(kind, blocks.data_ptr(), n, k, out.data_ptr(), int(dtype == torch.bfloat16),
                                      torch.get_num_threads()), "dequantize")
    return out


# -- custom operators -------------------------------------------------------------------------
@torch.library.custom_op("tokenloom::block_mm", mutates_args=())
def block_mm(x: torch.Tensor, blocks: torch.Tensor, kind: int, n: int) -> torch.Tensor:
    """x (M, K) float32 times the Wᵀ of blocks (N, row bytes) in GGML type `kind`: (M, N) float32."""
    return matmul(library(), x, blocks, kind, n)


@block_mm.register_fake
def _(x, blocks, kind, n):
    return x.new_empty(x.shape[0], n, dtype=torch.float32)


@torch.library.custom_op("tokenloom::block_dequantize", mutates_args=())
def block_dequantize(blocks: torch.Tensor, kind: int, n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    """W (n, k) from its blocks, in float32 or bfloat16."""
    return dequantize(library(), blocks, kind, n, k, dtype)


@block_dequantize.register_fake
def _(blocks, kind, n, k, dtype):
    return blocks.new_empty(n, k, dtype=dtype)


def mm(x: torch.Tensor, data: torch.Tensor, kind: int, n: int) -> torch.Tensor:
    """`block_mm`, called directly in eager mode: the custom operator's own wrapper imports torch._dynamo
    on its first call (about 1.5 s of a process's first token) and adds its dispatch to every product."""
    if torch.compiler.is_compiling():
        return block_mm(x, data, kind, n)
    return matmul(library(), x, data, kind, n)


def dense(data: torch.Tensor, kind: int, n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    """`block_dequantize`, called directly in eager mode (as `mm`)."""
    if torch.compiler.is_compiling():
        return block_dequantize(data, kind, n, k, dtype)
    return dequantize(library(), data, kind, n, k, dtype)


def apply_bitmask(lib: ctypes.CDLL, bitmask, logits: torch.Tensor, known: int) -> tuple[torch.Tensor, int]:
    """(logits with every token whose bit is clear at −inf, the number of rows that allow none).

    bitmask: a C-contiguous (B, W) numpy array of 32-bit words, bit j of word w for token 32w + j;
    logits: contiguous (B, V) float32 on the CPU; tokens from `known` on are forbidden."""
    if logits.dtype != torch.float32 or logits.dim() != 2 or not logits.is_contiguous() or logits.device.type != "cpu":
        raise ValueError(f"apply_bitmask: logits must be contiguous (B, V) float32 on the CPU, got {tuple(logits.shape)} "
                         f"{logits.dtype} on {logits.device}")
    if bitmask.shape[0] != logits.shape[0] or not bitmask.flags.c_contiguous or bitmask.itemsize != 4:
        raise ValueError(f"apply_bitmask: bitmask must be C-contiguous 32-bit words ({logits.shape[0]}, W), "
                         f"got {bitmask.shape} {bitmask.dtype}")
    out = torch.empty_like(logits)
    empty = lib.tl_apply_bitmask(bitmask.ctypes.data, bitmask.shape[1], logits.data_ptr(), out.data_ptr(),
                                 logits.shape[0], logits.shape[1], logits.stride(0), known)
    return out, int(empty)



def attend_head(lib: ctypes.CDLL, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
    """The fused decode step's attention for one query head: q (D,), keys and values (S, D), float32."""
    q, keys, values = (t.float().contiguous() for t in (q, keys, values))
    S, D = keys.shape
    if q.shape != (D,) or values.shape != (S, D) or S < 1:
        raise ValueError(f"attend_head: q (D,), keys and values (S, D) with S >= 1; got {tuple(q.shape)}, "
                         f"{tuple(keys.shape)}, {tuple(values.shape)}")
    scores, out = torch.empty(S), torch.empty(D)
    lib.tl_attend_head(q.data_ptr(), keys.data_ptr(), values.data_ptr(), S, D, scale, scores.data_ptr(), out.data_ptr())
    return out
