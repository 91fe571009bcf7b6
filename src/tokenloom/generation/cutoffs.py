"""Truncation by an absolute probability floor: epsilon and eta sampling (Hewitt et al. 2022).

    epsilon: drop token i when P_i < ε
    eta:     drop token i when P_i < η' = min(η, √η · exp(−H)),  H = −Σ_j P_j ln P_j

so eta's floor falls when the distribution is spread out (high entropy) and is at most η.
The min_keep most likely tokens always stay (at least one). The arithmetic is that of
transformers' EpsilonLogitsWarper and EtaLogitsWarper: the same float32 softmax, the
entropy of torch's Categorical, η held as a float32 tensor, so the kept sets are equal
token for token (tests/generation/test_cutoffs.py).

P = [0.6, 0.3, 0.0999, 0.0001], ε = 0.001: the last token goes.
"""

from __future__ import annotations

import torch

from tokenloom.generation.history import TokenHistory
from tokenloom.generation.options import check_float, check_int
from tokenloom.generation.processors import NEG_INF, LogitsProcessor


def _keep_best(logits: torch.Tensor, remove: torch.Tensor, min_keep: int) -> torch.Tensor:
    """Spare the min_keep (at least 1) highest scores from `remove`."""
    k = min(max(min_keep, 1), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(remove & (logits < kth), NEG_INF)


class EpsilonCutoff(LogitsProcessor):
    """Drop tokens less likely than ε (see the module docstring)."""

    name = "epsilon_cutoff"

    def __init__(self, epsilon: float, min_keep: int = 0):
        self.epsilon = check_float("epsilon_cutoff", epsilon, 0.0, 1.0, low_open=True, high_open=True)
        self.min_keep = check_int("min_keep", min_keep, 0)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)  # (B, V)
        return _keep_best(logits, probs < self.epsilon, self.min_keep)

    def describe(self) -> str:
        return f"epsilon_cutoff={self.epsilon:g}"


class EtaCutoff(LogitsProcessor):
    """Drop tokens less likely than min(η, √η·exp(−H)) (see the module docstring)."""

    name = "eta_cutoff"

    def __init__(self, eta: float, min_keep: int = 0):
        self.eta = check_float("eta_cutoff", eta, 0.0, 1.0, low_open=True, high_open=True)
        self.min_keep = check_int("min_keep", min_keep, 0)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)  # (B, V)
        entropy = torch.distributions.Categorical(logits=logits, validate_args=False).entropy()  # (B,)
        eta = torch.tensor(self.eta, device=logits.device)  # float32, as the reference holds it
        floor = torch.minimum(eta, eta.sqrt() * torch.exp(-entropy))[:, None]  # (B, 1)
        return _keep_best(logits, probs < floor, self.min_keep)

    def describe(self) -> str:
        return f"eta_cutoff={self.eta:g}"
