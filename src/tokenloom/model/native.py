"""Causal attention for long windows on AVX-512 CPUs, from a small C kernel built on first use.

Scoring a 2,048-token window spends about a third of its time in attention, and
PyTorch's fused CPU kernel reaches about 120 GFLOP/s there on this project's 2-core
machine, against about 190 for its own matrix products. `csrc/causal_attention.c`
reaches about 150 (README): blocks of 48 queries of one head run over the keys they
can see in blocks of 64, with the softmax kept online and its exponential computed in
registers; grouped-query heads read their shared keys in place, and the output is
written straight into the (B, T, H, D) layout that the output projection reads.

The kernel is compiled with the system's C compiler into a per-user cache
(`$XDG_CACHE_HOME/tokenloom`, else `~/.cache/tokenloom`), keyed by a hash of its source
and flags, so a change of either builds it afresh. `available()` is False, and the
model uses PyTorch's kernel, when the CPU lacks AVX-512, no compiler is found, the
build fails, or `TOKENLOOM_NATIVE_ATTENTION=0` is set. It is used only in float32 with
gradients off (scoring, prefill), never under `torch.compile`.
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

SOURCE = Path(__file__).with_name("csrc") / "causal_attention.c"
# x86-64-v4: AVX-512 F, BW, CD, DQ, VL. -fopenmp: the library needs libgomp.so.1, which resolves to the
# copy PyTorch has already loaded, so the kernel runs on PyTorch's own OpenMP threads.
FLAGS = ["-O3", "-march=x86-64-v4", "-fopenmp", "-shared", "-fPIC"]
HEAD_DIMS = (64, 128)  # the head sizes the kernel is written for
KEY_BLOCK = 64  # keys per block in the kernel (NK in the C source)
MIN_QUERIES = 64  # fewer queries: PyTorch's kernel is faster (handing work to a thread costs ~0.1 ms)
_NATIVE_ENV = "TOKENLOOM_NATIVE_ATTENTION"


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


def _build() -> ctypes.CDLL | None:
    """Compile the kernel (once per source and flags) and load it; None when that cannot be done."""
    if sys.platform != "linux" or torch.backends.cpu.get_cpu_capability() != "AVX512":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler found: attention uses PyTorch's kernel")
        return None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = cache_dir() / f"causal_attention-{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:  # build beside the target, then rename: a reader never sees half a library
            subprocess.run([compiler, *FLAGS, "-o", partial, str(SOURCE), "-lm"],
                           check=True, capture_output=True, text=True, timeout=120)
            os.replace(partial, target)
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or error
            log.info("building the attention kernel failed, PyTorch's kernel is used: %s", detail)
            return None
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as error:  # e.g. an OpenMP runtime without the symbols the compiler used
        log.info("loading the attention kernel failed, PyTorch's kernel is used: %s", error)
        return None
    lib.tl_causal_attention.argtypes = [ctypes.POINTER(_Args)]
    lib.tl_causal_attention.restype = ctypes.c_int
    return lib


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _lib = _build()
                _tried = True
    return _lib


def available() -> bool:
    """Whether the kernel can run here (see the module doc); builds it on the first call."""
    return os.environ.get(_NATIVE_ENV, "1") != "0" and _library() is not None


def usable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether `causal_attention` takes these inputs: float32 CPU tensors, a supported head
    size, enough queries to gain, no gradient wanted, not under the compiler."""
    return (
        q.shape[2] >= MIN_QUERIES and q.shape[-1] in HEAD_DIMS and q.device.type == "cpu"
        and q.dtype == k.dtype == v.dtype == torch.float32
        and q.stride(-1) == 1 and v.stride(-1) == 1
        and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))
        and not torch.compiler.is_compiling() and available()
    )


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
    lib.tl_causal_attention(ctypes.byref(args))
    return out.transpose(1, 2)
