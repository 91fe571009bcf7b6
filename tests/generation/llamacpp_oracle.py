"""llama.cpp's samplers through llama-cpp-python, as an oracle for tests and benchmarks.

`apply(sampler, logits)` runs one `llama_sampler_apply` on a `llama_token_data_array` of
the (V,) float32 logits' finite entries in token-id order (what llama.cpp's common
sampler hands its chain, or what an earlier step that shrinks the array left of it) and
returns what survived: ids, logits and probabilities in llama.cpp's order, and the
selected position (-1 when the sampler does not select).
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


class Oracle:
    def __init__(self, module, llm):
        self.module, self.llm = module, llm
        self.vocab = module.llama_model_get_vocab(llm.model)

    def apply(self, sampler, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        lib = self.module
        ids = torch.nonzero(logits > float("-inf")).squeeze(-1)
        n = len(ids)
        data = (lib.llama_token_data * n)()
        view = np.frombuffer(data, dtype=TOKEN_DATA)
        view["id"] = ids.numpy()
        view["logit"] = logits[ids].float().numpy()
        candidates = lib.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
        lib.llama_sampler_apply(sampler, ctypes.byref(candidates))
        # XTC moves the array's start forward: read through the pointer llama.cpp left
        start = (ctypes.addressof(candidates.data.contents) - ctypes.addressof(data)) // TOKEN_DATA.itemsize
        kept = view[start:start + candidates.size]
        return kept["id"].astype(np.int64), kept["logit"].copy(), kept["p"].copy(), candidates.selected

    def logits_after(self, sampler, logits: torch.Tensor) -> torch.Tensor:
        """(V,) logits after the sampler, by id; tokens it dropped from the array are -inf."""
        ids, values, _, _ = self.apply(sampler, logits)
        out = torch.full_like(logits, float("-inf"))
        out[torch.from_numpy(ids)] = torch.from_numpy(values)
        return out

    def penalties(self, last_n: int, repeat: float, frequency: float, presence: float):
        # The 0.3.36 binding still declares an n_vocab argument the library no longer takes;
        # the library reads the first integer as penalty_last_n, so both carry it.
        return self.module.llama_sampler_init_penalties(last_n, last_n, repeat, frequency, presence)


def load_oracle(pytest):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llama.cpp oracle) is not installed")
    from tokenloom.model.registry import resolve

    _, path = resolve("smollm2-135m-instruct")
    return Oracle(llama_cpp, llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False))
