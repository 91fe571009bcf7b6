"""`tokenloom doctor`: what this machine gives tokenloom, and which fast paths are in use.

Speed differs between CPUs by instruction set, and a fast path that cannot be used falls
back quietly after one warning; this report says, in one place, what was found (the CPU,
its features, the compiler, PyTorch) and what each kernel decided.
"""

from __future__ import annotations

import platform
import subprocess
import sys

FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx_vnni",
            "avx512_bf16", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve")


def _compiler() -> str:
    from tokenloom.model.native import c_compiler

    cc = c_compiler()
    if cc is None:
        return "none found (set CC or install gcc): the C kernels cannot be built"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10).stdout
        return f"{cc} ({version.splitlines()[0] if version else 'version unknown'})"
    except (OSError, subprocess.SubprocessError) as error:
        return f"{cc} (does not run: {error})"


def report() -> dict[str, str]:
    """The findings, label → value, in the order they are printed."""
    import torch

    import tokenloom
    from tokenloom import private_apis
    from tokenloom.model import blocks, kernels, native, quant

    features = blocks.cpu_features()
    chosen = blocks.chosen_variant()
    block_state = "off (TOKENLOOM_CPU_KERNEL=off)" if chosen is None else (
        f"{chosen} (built)" if blocks.library(chosen) is not None else f"{chosen} could not be built")
    return {
        "tokenloom": getattr(tokenloom, "__version__", "unknown"),
        "python": sys.version.split()[0],
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
        "CPU": f"{blocks.cpu_model()} ({platform.machine()})",
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "CPU features": " ".join(f for f in FEATURES if f in features) or "none of interest found",
        "C compiler": _compiler(),
        "GGUF block kernels": f"{block_state}; this CPU can run: {', '.join(blocks.supported_variants())}",
        "fused decode step": "in use for native GGUF models" if chosen and blocks.available() else
                             "not available: decode steps run layer by layer",
        "native precision fallback": "PyTorch int4 kernel " + ("present" if quant.int4_kernel() else "absent"),
        "long-input products": f"weights dequantized to {str(quant.dense_dtype()).removeprefix('torch.')}",
        "long-input kernels (attention, norms)": "AVX-512 C kernels" if native.available() else
                                                 "PyTorch's operations (the C kernels need AVX-512)",
        "bfloat16 weight packing (oneDNN)": "yes" if kernels.bfloat16_packing() else "no: F.linear",
        "private APIs (private_apis.py)": _private_apis(private_apis.report()),
    }


def _private_apis(found: dict[str, bool]) -> str:
    missing = [name for name, ok in found.items() if not ok]
    return f"all {len(found)} found" if not missing else f"missing, public fallbacks in use: {', '.join(missing)}"


def run() -> None:
    rows = report()
    width = max(map(len, rows))
    for label, value in rows.items():
        print(f"{label:<{width}}  {value}")
