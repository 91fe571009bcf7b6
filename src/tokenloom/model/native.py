"""CPU kernels for long inputs on AVX-512 machines, from small C sources built on first use.

Scoring a 2,048-token window spends about a quarter of its time in attention, where
PyTorch's fused CPU kernel runs well below the rate of the matrix products around it.
`csrc/causal_attention.c` closes most of that gap (figures with the CPU in
docs/performance.md, "Scoring"): blocks of 48 queries of one head run over the keys they can see in
blocks of 64, with the softmax kept online and its exponential computed in registers;
grouped-query heads read their shared keys in place, and the output is written straight
into the (B, T, H, D) layout that the output projection reads. The rest is work that
PyTorch spreads over several passes over memory, each one a parallel region: `csrc/swiglu.c`
computes silu(gate)·up from the fused projection in one pass instead of two,
`csrc/norm_rope.c` RMSNorm (after the residual add, when there is one) and the rotary
embedding of queries and keys in one pass each instead of five, and `csrc/logsumexp.c`
the output layer's softmax normaliser without writing a second (rows, V) array.

All are compiled with the system's C compiler into one library in a per-user cache
(`$XDG_CACHE_HOME/tokenloom`, else `~/.cache/tokenloom`), keyed by a hash of the sources
and flags, so a change of either builds it afresh. They run on PyTorch's own OpenMP
threads (see FLAGS). `available()` is False, and the model uses PyTorch's operations,
when the CPU lacks AVX-512, no compiler is found, the build fails, or
`TOKENLOOM_NATIVE_KERNELS=0` is set. They are used only in float32 with gradients off
(scoring, prefill), never under `torch.compile`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
SOURCES = ("causal_attention.c", "swiglu.c", "norm_rope.c", "logsumexp.c")  # built into one library, with the headers beside them
# x86-64-v4: AVX-512 F, BW, CD, DQ, VL. -fopenmp: the library needs libgomp.so.1, which resolves to the
# copy PyTorch has already loaded, so the kernel runs on PyTorch's own OpenMP threads.
FLAGS = ["-O3", "-march=x86-64-v4", "-fopenmp", "-shared", "-fPIC"]
HEAD_DIMS = (64, 128)  # the head sizes the kernel is written for
KEY_BLOCK = 64  # keys per block in the kernel (NK in the C source)
MIN_ROWS = 64  # SwiGLU, RMSNorm, RoPE on fewer rows (decoding) stay with PyTorch
MIN_QUERIES = 64  # fewer queries: PyTorch's kernel is faster (handing work to a thread has a fixed cost)
_NATIVE_ENV = "TOKENLOOM_NATIVE_KERNELS"


class _Args(ctypes.Structure):
    _fields_ = (
        [(name, ctypes.c_void_p) for name in ("q", "kt", "v", "out")]
        + [(name, ctypes.c_int64) for name in
           "B H Hkv T S D S_pad q_sb q_sh q_st v_sb v_sh v_st o_sb o_sh o_st".split()]
        + [("scale", ctypes.c_float), ("threads", ctypes.c_int)]
    )


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "tokenloom"


def c_compiler() -> str | None:
    """The C compiler to build with: $CC, else cc or gcc on the PATH; None when there is none."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _build() -> ctypes.CDLL | None:
    """Compile the kernels (once per sources and flags) and load them; None when that cannot be done."""
    if sys.platform != "linux" or torch.backends.cpu.get_cpu_capability() != "AVX512":
        log.warning("tokenloom's long-input kernels (attention, norms, rope, SwiGLU) need AVX-512, which this CPU "
                    "(%s) lacks: prompts and scoring use PyTorch's operations for those steps",
                    torch.backends.cpu.get_cpu_capability())
        return None
    compiler = c_compiler()
    if compiler is None:
        log.warning("no C compiler found: PyTorch's operations are used instead of tokenloom's long-input CPU kernels")
        return None
    try:
        target = cache_dir() / f"kernels-{build_key(FLAGS, sorted(CSRC.glob('*.[ch]')))}.so"
        if not target.exists():
            build_library(compiler, FLAGS, [CSRC / name for name in SOURCES], target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:  # no cache, a failed build or load
        detail = getattr(error, "stderr", None) or error
        log.warning("tokenloom's long-input CPU kernels are unavailable, PyTorch's operations are used: %s", detail)
        return None
    lib.tl_causal_attention.argtypes = [ctypes.POINTER(_Args)]
    lib.tl_causal_attention.restype = ctypes.c_int
    lib.tl_swiglu.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.tl_swiglu.restype = ctypes.c_int
    lib.tl_rms_norm.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_float, ctypes.c_int]
    lib.tl_rms_norm.restype = ctypes.c_int
    lib.tl_rope.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_void_p,
                            *[ctypes.c_int64] * 2, ctypes.c_void_p, *[ctypes.c_int64] * 4, ctypes.c_int]
    lib.tl_rope.restype = ctypes.c_int
    lib.tl_logsumexp.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_int]
    lib.tl_logsumexp.restype = ctypes.c_int
    return lib


def build_key(flags: list[str], files: list[Path]) -> str:
    """A short hash of the flags and of each file's name and bytes: a new key whenever either changes."""
    digest = hashlib.sha256(" ".join(flags).encode())
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build_library(compiler: str, flags: list[str], sources: list[Path], target: Path) -> None:
    """Compile `sources` into the shared library `target`, beside it first and then renamed:
    a reader never sees half a library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, "-o", partial, *map(str, sources), "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _lib = _build()
                _tried = True
    return _lib


def _checked(name: str, status: int) -> None:
    """A kernel's return code: anything but 0 means its output was not written."""
    if status != 0:
        raise RuntimeError(f"tokenloom's {name} kernel refused its input (code {status})")


def available() -> bool:
    """Whether the kernels can run here (see the module doc); builds them on the first call."""
    return os.environ.get(_NATIVE_ENV, "1") != "0" and _library() is not None


def _plain_cpu_float32(*tensors: torch.Tensor) -> bool:
    """CPU float32 inputs with no gradient wanted, outside the compiler: what the kernels take.
    The compiler is asked first, so that a traced model never guards on the shape checks after it."""
    return (
        not torch.compiler.is_compiling()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )


def attention_usable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether `causal_attention` takes these inputs: float32 CPU tensors, a supported head
    size, enough queries to gain, no gradient wanted, not under the compiler."""
    return (
        not torch.compiler.is_compiling() and q.shape[2] >= MIN_QUERIES  # decoding leaves here
        and _plain_cpu_float32(q, k, v)
        and q.shape[-1] in HEAD_DIMS and q.stride(-1) == 1 and v.stride(-1) == 1
        and available()
    )


def swiglu_usable(h: torch.Tensor) -> bool:
    """Whether `swiglu` takes h: contiguous, float32 on the CPU, no gradient, at least MIN_ROWS rows,
    a width of 2F with F a multiple of 16."""
    return (
        not torch.compiler.is_compiling() and h.numel() >= MIN_ROWS * h.shape[-1]  # decoding leaves here
        and h.dim() >= 2 and h.shape[-2] > 1  # a decode batch (one row a sequence), however large, too
        and _plain_cpu_float32(h)
        and h.is_contiguous() and h.shape[-1] % 32 == 0
        and available()
    )


def swiglu(h: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up for h = [gate | up] (..., 2F) → (..., F), in one pass (csrc/swiglu.c)."""
    F = h.shape[-1] // 2
    if not (h.is_contiguous() and h.dtype == torch.float32 and h.shape[-1] == 2 * F and F % 16 == 0):
        raise ValueError(f"swiglu: needs a contiguous float32 (..., 2F) tensor with F a multiple of 16, "
                         f"got {tuple(h.shape)} {h.dtype}")
    out = h.new_empty(*h.shape[:-1], F)
    _checked("swiglu", _library().tl_swiglu(h.data_ptr(), out.data_ptr(), h.numel() // (2 * F), F,
                                            torch.get_num_threads()))
    return out


def norm_usable(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor | None = None) -> bool:
    """Whether `rms_norm` (and `add_rms_norm` with the residual) take x: (B, T, C) float32 on the
    CPU with C a multiple of 16 and each sequence's rows contiguous (the tail of longer sequences
    too), at least MIN_ROWS rows, no gradient."""
    extra = () if residual is None else (residual,)
    return (
        not torch.compiler.is_compiling()  # then the row count: decoding (one row a sequence) leaves at once
        and x.dim() == 3 and x.shape[1] > 1 and x.shape[0] * x.shape[1] >= MIN_ROWS  # not a decode step
        and _plain_cpu_float32(x, weight, *extra)
        and all(r.shape == x.shape for r in extra)
        and x.shape[-1] % 16 == 0 and x.stride(-1) == 1 and x.stride(-2) == x.shape[-1]
        and weight.is_contiguous() and available()
    )


def _norm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float):
    B, T, C = x.shape
    if not norm_usable(x, weight, residual) or weight.shape != (C,):
        extra = "" if residual is None else f", residual {tuple(residual.shape)} {residual.dtype}"
        raise ValueError(f"rms_norm: needs float32 (B, T, C) rows with C a multiple of 16, a weight of C and a "
                         f"residual like x; got {tuple(x.shape)} {x.dtype}, stride {x.stride()}, "
                         f"weight {tuple(weight.shape)}{extra}")
    total = None
    if residual is not None:
        residual, total = residual.contiguous(), x.new_empty(B, T, C)
    out = x.new_empty(B, T, C)
    status = _library().tl_rms_norm(x.data_ptr(), x.stride(0), None if residual is None else residual.data_ptr(),
                                    None if total is None else total.data_ptr(), out.data_ptr(), weight.data_ptr(),
                                    B, T, C, eps, torch.get_num_threads())
    _checked("rms_norm", status)
    return total, out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x²) + eps) · weight over the last dimension of x (B, T, C), in one pass
    (csrc/norm_rope.c) where PyTorch makes five."""
    return _norm(x, None, weight, eps)[1]


def add_rms_norm(x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + h, rms_norm(x + h)) in one pass: a residual add and the norm that follows it."""
    return _norm(x, h, weight, eps)


def rope_usable(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> bool:
    """Whether `rope` takes x (B, N, T, D) and the tables (B or 1, 1, T, D): float32 on the CPU,
    D a multiple of 32 and contiguous, at least MIN_ROWS positions in all, no gradient."""
    return (
        not torch.compiler.is_compiling()  # then the row count: short inputs leave at once
        and x.dim() == 4 and x.shape[0] * x.shape[2] >= MIN_ROWS
        and _plain_cpu_float32(x, cos, sin)
        and cos.dim() == 4 and x.shape[-1] % 32 == 0 and x.stride(-1) == 1
        and cos.shape == sin.shape and cos.stride() == sin.stride() and cos.stride(-1) == 1
        and cos.shape[1] == 1 and cos.shape[0] in (1, x.shape[0]) and tuple(cos.shape[2:]) == tuple(x.shape[2:])
        and available()
    )


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of heads x (B, N, T, D) at the positions of cos/sin (B or 1, 1, T, D), in one
    pass (csrc/norm_rope.c): pairs (x_i, x_{i+D/2}) turn by the angle. Returns (B, N, T, D), contiguous."""
    if not rope_usable(x, cos, sin):
        raise ValueError(f"rope: needs float32 heads (B, N, T, D), D a multiple of 32, and tables (B or 1, 1, T, D); "
                         f"got {tuple(x.shape)} {x.dtype} and {tuple(cos.shape)} {cos.dtype}")
    B, N, T, D = x.shape
    out = x.new_empty(B, N, T, D)
    status = _library().tl_rope(x.data_ptr(), x.stride(0), x.stride(1), x.stride(2), cos.data_ptr(), sin.data_ptr(),
                                cos.stride(0) if cos.shape[0] > 1 else 0, cos.stride(2), out.data_ptr(), B, N, T, D,
                                torch.get_num_threads())
    _checked("rope", status)
    return out


def logsumexp_usable(x: torch.Tensor) -> bool:
    """Whether `logsumexp` takes x: (rows, V) float32 on the CPU with V contiguous, no gradient."""
    return _plain_cpu_float32(x) and x.dim() == 2 and x.stride(-1) == 1 and x.shape[-1] > 0 and available()


def logsumexp(x: torch.Tensor) -> torch.Tensor:
    """log Σ_j exp(x[r, j]) for each row of x (rows, V), in two passes over the row
    (csrc/logsumexp.c): the softmax normaliser without a second (rows, V) array."""
    if not logsumexp_usable(x):
        raise ValueError(f"logsumexp: needs float32 (rows, V) with V > 0 contiguous; got {tuple(x.shape)} {x.dtype}")
    out = x.new_empty(x.shape[0])
    _checked("logsumexp", _library().tl_logsumexp(x.data_ptr(), x.stride(0), x.shape[0], x.shape[1], out.data_ptr(),
                                                  torch.get_num_threads()))
    return out


def key_blocks(k: torch.Tensor) -> torch.Tensor:
    """Keys (B, Hkv, S, D) as the kernel reads them: blocks of 64 keys, each transposed to
    (D, 64) and stored whole (16 KB for D = 64), zeros past S. (B, Hkv, ⌈S / 64⌉, D, 64)."""
    B, Hkv, S, D = k.shape
    full, rest = divmod(S, KEY_BLOCK)
    kt = k.new_zeros(B, Hkv, full + (rest > 0), D, KEY_BLOCK)
    kt[:, :, :full] = k[:, :, : full * KEY_BLOCK].reshape(B, Hkv, full, KEY_BLOCK, D).transpose(-1, -2)
    if rest:
        kt[:, :, full, :, :rest] = k[:, :, full * KEY_BLOCK :].transpose(-1, -2)
    return kt


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale·q·kᵀ, causal)·v; q (B, H, T, D), k/v (B, Hkv, S, D) with S ≥ T; the T
    queries are the last T positions. Returns a (B, H, T, D) view of a (B, T, H, D) tensor.

    Runs on PyTorch's OpenMP threads (`torch.get_num_threads()` of them); ctypes
    releases the GIL for the call.
    """
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    if S < T or H % Hkv or D not in HEAD_DIMS:
        raise ValueError(f"causal_attention: needs S ≥ T, H divisible by Hkv and D in {HEAD_DIMS}; "
                         f"got T={T}, S={S}, H={H}, Hkv={Hkv}, D={D}")
    lib = _library()
    kt = key_blocks(k)  # (B, Hkv, S_pad / 64, D, 64)
    s_pad = kt.shape[2] * KEY_BLOCK
    out = q.new_empty(B, T, H, D)
    args = _Args(
        q.data_ptr(), kt.data_ptr(), v.data_ptr(), out.data_ptr(), B, H, Hkv, T, S, D, s_pad,
        q.stride(0), q.stride(1), q.stride(2), v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(2), out.stride(1), scale * math.log2(math.e), torch.get_num_threads(),
    )
    _checked("causal attention", lib.tl_causal_attention(ctypes.byref(args)))
    return out.transpose(1, 2)
