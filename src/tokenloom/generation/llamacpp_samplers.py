"""llama.cpp's samplers: XTC, top-nσ, dynamic temperature, mirostat v1/v2, its typical-p and penalties.

Each follows llama.cpp's `llama_sampler_init_*` (llama-cpp-python 0.3.36) in float32,
element by element in llama.cpp's order (float32.py), so that the tokens kept equal
llama.cpp's on the same logits (tests/generation/test_llamacpp_samplers.py):

- XTC (exclude top choices): with probability `probability` per step (one uniform draw
  from the row's generator, u ≤ probability fires), every token with P_i ≥ threshold
  except the least likely of them is removed, unless that would leave fewer than
  min_keep. Threshold > 0.5 can never find two such tokens: a no-op.
  P = [0.5, 0.3, 0.15, 0.05], threshold 0.1: 0.5 and 0.3 go, 0.15 and 0.05 stay.
- top-nσ: keep l_i ≥ max l − n·σ, σ the standard deviation of the finite logits
  (mean and σ summed in float32 in token-id order, llama.cpp's order at the head of its
  chain). It depends on logits only, so temperature does not change what it keeps.
- dynamic temperature (`temp_ext`): T' = T_min + (T_max − T_min)·(H / ln m)^exponent with
  T_min = max(0, T − range), T_max = T + range, H the entropy of the m candidates;
  s_i = l_i / T'.
- mirostat v1 (Basu et al. 2021): estimate the Zipf exponent ŝ from the best m = 100
  tokens, keep the k = ((ŝ−1)·2^μ / (1 − V^−(ŝ−1)))^(1/ŝ) best; v2: keep the best tokens
  whose surprise −log2 P_i ≤ μ (at least one). After the draw, μ ← μ − η·(−log2 P_chosen − τ),
  P over the kept tokens; μ starts at 2τ and lives in the row's state (one per sequence).
- typical-p (the llama.cpp preset's): rank by |−ln P_i − H|, keep the shortest prefix whose
  mass exceeds p (ours stops once it reaches p; processors.Typical).
- penalties (llama.cpp's rules): over the last `last_n` tokens of prompt + output, a token
  seen c > 0 times gets l/θ (l > 0) or l·θ (l ≤ 0), then l − (c·frequency + presence).

Differences that remain: llama.cpp breaks exact ties in logits by its unstable sort
(here lowest id first); its candidate array may still hold tokens an earlier step set to
−inf (they count towards XTC's min_keep and dynamic temperature's m there, not here).
"""

from __future__ import annotations

import numpy as np
import torch

from tokenloom.generation.float32 import F32, expf, f32, log2f, logf, powf, seq_sum, softmax_sorted, \
    sorted_candidates
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.options import check_float, check_int
from tokenloom.generation.processors import NEG_INF, LogitsProcessor

MIROSTAT_M = 100  # tokens mirostat v1 fits ŝ on, as llama.cpp's common sampler passes
INT_MIN = -(2**31)


def _drop(logits: torch.Tensor, row: int, ids) -> None:
    if len(ids):
        logits[row, torch.as_tensor(np.asarray(ids), dtype=torch.long)] = NEG_INF


class XTC(LogitsProcessor):
    """Exclude top choices (see the module docstring); the draw uses history.generator(row)."""

    name = "xtc"

    def __init__(self, probability: float, threshold: float, min_keep: int = 0):
        self.probability = check_float("xtc_probability", probability, 0.0, 1.0, low_open=True)
        self.threshold = check_float("xtc_threshold", threshold, 0.0, 1.0)
        self.min_keep = check_int("min_keep", min_keep, 0)

    def fires(self, history: TokenHistory, row: int) -> bool:
        chance = torch.rand((), generator=history.generator(row), dtype=torch.float32)
        return float(chance) <= float(F32(self.probability))

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        for row in range(logits.shape[0]):
            ids, values = sorted_candidates(logits[row])
            if len(ids) < 2 or self.threshold > 0.5 or not self.fires(history, row):
                continue
            probs = softmax_sorted(values)
            above = int(np.argmin(probs >= F32(self.threshold))) if probs[-1] < F32(self.threshold) else len(probs)
            last = max(above - 1, 0)  # position of the least likely top choice
            if last > 0 and len(ids) - last >= self.min_keep:
                _drop(out, row, ids[:last])
        return out

    def describe(self) -> str:
        return f"xtc probability={self.probability:g}, threshold={self.threshold:g}"


def top_n_sigma_threshold(values: np.ndarray, n: float) -> np.float32:
    """max − n·σ of a row's finite logits (token-id order), in llama.cpp's float32 steps."""
    count = F32(values.size)
    mean = F32(seq_sum(values) / count)
    deviation = f32(values - mean)
    # llama.cpp squares in double and adds into a float32 sum; squaring here is exact in
    # float64, rounded to float32 before the float32 sum (a last-bit difference at most).
    acc = seq_sum(f32(deviation.astype(np.float64) ** 2))
    std = F32(np.sqrt(np.float64(F32(acc / count))))
    return F32(values.max() - F32(F32(n) * std))


class TopNSigma(LogitsProcessor):
    """Keep the logits within n standard deviations of the best (Tang et al. 2024)."""

    name = "top_n_sigma"

    def __init__(self, n: float):
        self.n = check_float("top_n_sigma", n, 0.0, low_open=True)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        for row in range(logits.shape[0]):
            values = logits[row].detach().float().cpu().numpy()
            finite = values[values != -np.inf]
            if finite.size <= 1:
                continue
            threshold = top_n_sigma_threshold(finite, self.n)
            out[row] = logits[row].masked_fill(logits[row] < float(threshold), NEG_INF)
        return out

    def describe(self) -> str:
        return f"top_n_sigma={self.n:g}"


def dynamic_temperature(values: np.ndarray, temperature: float, delta: float, exponent: float) -> np.float32:
    """T' for one row's finite logits sorted best first (the module docstring's formula)."""
    t, d = F32(temperature), F32(delta)
    low, high = max(F32(0.0), F32(t - d)), F32(t + d)
    max_entropy = F32(-logf(F32(F32(1.0) / F32(values.size))))
    probs = softmax_sorted(values)
    probs = probs[probs > 0]
    entropy = F32(-seq_sum(f32(probs * logf(probs))))
    normalised = F32(entropy / max_entropy)
    return F32(low + F32(F32(high - low) * powf(normalised, exponent)))


class DynamicTemperature(LogitsProcessor):
    """Entropy-scaled temperature (llama.cpp's temp_ext); see the module docstring."""

    name = "temperature"

    def __init__(self, temperature: float, delta: float, exponent: float):
        self.temperature = check_float("temperature", temperature, 0.0, low_open=True)
        self.delta = check_float("dynatemp_range", delta, 0.0, low_open=True)
        self.exponent = check_float("dynatemp_exponent", exponent, 0.0)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        for row in range(logits.shape[0]):
            ids, values = sorted_candidates(logits[row])
            if len(ids) <= 1:
                continue
            t = dynamic_temperature(values, self.temperature, self.delta, self.exponent)
            if t <= 0:  # llama.cpp's temperature 0: the best token only
                keep = torch.full_like(logits[row], NEG_INF)
                keep[int(ids[0])] = logits[row, int(ids[0])]
                out[row] = keep
            else:
                out[row] = logits[row] / torch.tensor(float(t), dtype=torch.float32)
        return out

    def describe(self) -> str:
        return (f"dynamic temperature {self.temperature:g} ± {self.delta:g} "
                f"(exponent {self.exponent:g})")


def mirostat_k(probs: np.ndarray, mu: np.float32, vocab_size: int) -> int:
    """Mirostat v1's k from the sorted probabilities and μ, with llama.cpp's float32 steps."""
    n = min(MIROSTAT_M - 1, probs.size - 1)
    i = np.arange(n, dtype=np.float32)
    t = logf(f32(f32(i + 2) / f32(i + 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        b = logf(f32(probs[:n] / probs[1:n + 1]))
        s_hat = F32(seq_sum(f32(t * b)) / seq_sum(f32(t * t)))
        eps = F32(s_hat - F32(1.0))
        k = powf(F32(F32(eps * powf(2.0, mu)) / F32(F32(1.0) - powf(F32(vocab_size), -eps))), F32(F32(1.0) / s_hat))
    # C++'s int(k) on x86 gives INT_MIN for NaN and out-of-range values; max(.., 1) makes that 1
    whole = int(k) if np.isfinite(k) and -2.0**31 <= k < 2.0**31 else INT_MIN
    return max(whole, 1)


class Mirostat(LogitsProcessor):
    """Mirostat v1 or v2 (see the module docstring). A selector's partner: the sampler calls
    `accept` with the drawn tokens so that each row's μ follows its own output."""

    name = "mirostat"

    def __init__(self, version: int, tau: float, eta: float, vocab_size: int):
        self.version = check_int("mirostat", version, 1, 2)
        self.tau = check_float("mirostat_tau", tau, 0.0)
        self.eta = check_float("mirostat_eta", eta, 0.0)
        self.vocab_size = check_int("vocab_size", vocab_size, 1)

    def mu(self, history: TokenHistory, row: int) -> np.float32:
        return history.states[row].get("mirostat_mu", F32(F32(2.0) * F32(self.tau)))

    def kept(self, values: np.ndarray, mu: np.float32) -> int:
        """How many of the sorted candidates survive."""
        probs = softmax_sorted(values)
        if self.version == 1:
            return min(mirostat_k(probs, mu, self.vocab_size), values.size)
        surprise = -log2f(probs)
        over = np.nonzero(surprise > mu)[0]
        return max(int(over[0]) if over.size else values.size, 1)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        for row in range(logits.shape[0]):
            ids, values = sorted_candidates(logits[row])
            if len(ids):
                _drop(out, row, ids[self.kept(values, self.mu(history, row)):])
        return out

    def accept(self, history: TokenHistory, scores: torch.Tensor, tokens: torch.Tensor) -> None:
        """μ ← μ − η·(surprise of the chosen token − τ), surprise over the kept tokens."""
        for row, token in enumerate(tokens.tolist()):
            ids, values = sorted_candidates(scores[row])
            where = np.nonzero(ids == token)[0]
            if not where.size:
                continue
            surprise = F32(-log2f(softmax_sorted(values)[where[0]]))
            error = F32(surprise - F32(self.tau))
            history.states[row]["mirostat_mu"] = F32(self.mu(history, row) - F32(F32(self.eta) * error))

    def describe(self) -> str:
        return f"mirostat v{self.version} tau={self.tau:g}, eta={self.eta:g} (μ per sequence)"


class LlamaTypical(LogitsProcessor):
    """llama.cpp's typical sampling: rank by |−ln P_i − H|, keep the shortest prefix of that
    ranking whose mass exceeds p (at least min_keep), in llama.cpp's float32 steps."""

    name = "typical_p"
    value_only = True

    def __init__(self, p: float, min_keep: int = 0):
        self.p = check_float("typical_p", p, 0.0, 1.0, low_open=True)
        self.min_keep = check_int("min_keep", min_keep, 0)

    def keep(self, values: np.ndarray) -> np.ndarray:
        """Positions (into the sorted candidates) that survive, most typical first."""
        probs = softmax_sorted(values)
        entropy = seq_sum(f32(-probs * logf(probs)))
        shifted = np.abs(f32(-logf(probs) - entropy))
        order = np.argsort(shifted, kind="stable")
        mass = np.add.accumulate(probs[order])
        over = np.nonzero((mass > F32(self.p)) & (np.arange(mass.size) >= self.min_keep - 1))[0]
        return order[: int(over[0]) + 1 if over.size else mass.size]

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, NEG_INF)
        for row in range(logits.shape[0]):
            ids, values = sorted_candidates(logits[row])
            if len(ids):
                keep = torch.as_tensor(ids[self.keep(values)], dtype=torch.long)
                out[row, keep] = logits[row, keep]
        return out

    def describe(self) -> str:
        return f"typical_p={self.p:g} (llama.cpp: stops once the mass exceeds p)"


class Penalties(LogitsProcessor):
    """llama.cpp's penalties step: repetition, frequency and presence over one window."""

    name = "penalties"

    def __init__(self, last_n: int, repetition: float, frequency: float, presence: float):
        self.last_n = check_int("penalty_last_n", last_n, -1, note=" (-1 = the whole context)")
        self.repetition = check_float("repetition_penalty", repetition, 0.0, low_open=True)
        self.frequency = check_float("frequency_penalty", frequency)
        self.presence = check_float("presence_penalty", presence)

    def counts(self, history: TokenHistory, vocab_size: int) -> torch.Tensor:
        """(B, V) how often each token occurs in each row's window of prompt + output."""
        rows = []
        for row in range(history.batch_size):
            sequence = history.sequence(row)
            window = sequence if self.last_n == -1 else sequence[-self.last_n:] if self.last_n else []
            rows.append(torch.bincount(torch.tensor(window, dtype=torch.long), minlength=vocab_size))
        return torch.stack(rows)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        counts = self.counts(history, logits.shape[-1]).to(logits.device)  # (B, V)
        seen = counts > 0  # (B, V)
        theta = float(F32(self.repetition))
        scaled = torch.where(logits <= 0, logits * theta, logits / theta)  # (B, V)
        # c·frequency + presence in float32, each operation rounded (llama.cpp's build does not fuse them)
        penalty = counts.float() * float(F32(self.frequency)) + seen.float() * float(F32(self.presence))  # (B, V)
        return torch.where(seen, scaled - penalty, logits)

    def describe(self) -> str:
        window = "whole context" if self.last_n == -1 else f"last {self.last_n} tokens"
        return (f"penalties repetition={self.repetition:g}, frequency={self.frequency:g}, "
                f"presence={self.presence:g} ({window} of prompt + output)")
