"""Logits processors: one small class per way of reshaping the next-token scores.

Every processor has the same batched signature

    processor(history: TokenHistory, logits: Tensor (B, V) float32) -> Tensor (B, V)

checks its arguments in `__init__` (InvalidArgument says what is allowed), never
modifies its input in place, and marks a removed token with -inf, so that the
distribution the selector draws from is P_i = exp(s_i) / Σ_j exp(s_j) over the
surviving scores s. Every processor can explain what it did to one row
(`explain`): how many tokens it kept, the probability mass of those tokens before
the step, and the top candidates before and after.

Tie rules are explicit. `ties="lowest_id"` keeps exactly the count a rule asks
for and, among tokens with equal scores, the lowest ids first (stable sorts).
`ties="all"` keeps every token tied with the last one kept, as Hugging Face and
vLLM do for top-k (their threshold test `l < kth value` keeps the whole tie).
"""

from collections.abc import Sequence
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.columns import narrow, nucleus_probe
from tokenloom.generation.explain import StepExplanation, explain_change, top_tokens  # noqa: F401 (re-exported)
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import check_float, check_int, check_token_ids

NEG_INF = float("-inf")
TIE_RULES = ("lowest_id", "all")
TYPICAL_STOPS = ("reaches", "exceeds")


class LogitsProcessor:
    """Base class: a named, explainable (history, logits) -> logits step.

    value_only: the step looks at scores alone, never at which token a column is (no
    history, no token ids), and breaks ties by column order; it then gives the same
    result on the columns that are still finite, kept in ascending id order, as on the
    whole row (the sampler narrows the row to those after a step that `narrows`).
    """

    name = "processor"
    value_only = False
    narrows = False

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        """One line with the step's parameters, e.g. 'top_k=50 (ties: lowest_id)'."""
        return self.name

    def explain(self, history: TokenHistory, logits_row: torch.Tensor, top: int = 10) -> StepExplanation:
        """Run the step on one row (history of batch size 1, logits (V,)) and report the change."""
        before = logits_row.reshape(1, -1).float()  # (1, V)
        return explain_change(self.name, self.describe(), before[0], self(history, before)[0], top)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def _check_ties(ties: str) -> str:
    if ties not in TIE_RULES:
        raise InvalidArgument(f"ties must be one of {', '.join(TIE_RULES)}, got {ties!r}")
    return ties


class LogitBias(LogitsProcessor):
    """s_i = l_i + bias_i for the listed tokens (OpenAI `logit_bias`).

    bias={2: -100.0}: token 2 becomes practically impossible; {7: 5.0} multiplies
    its odds by e^5 ≈ 148.
    """

    name = "logit_bias"

    def __init__(self, bias: dict[int, float], vocab_size: int):
        if not bias:
            raise InvalidArgument("logit_bias must map at least one token id to a bias")
        vocab_size = check_int("vocab_size", vocab_size, 1)
        ids = [check_int("logit_bias token id", t, 0, vocab_size - 1) for t in bias]
        self.ids = torch.tensor(ids, dtype=torch.long)  # (K,)
        self.values = torch.tensor([check_float(f"logit_bias[{t}]", bias[t]) for t in ids])  # (K,)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        ids, values = self.ids.to(logits.device), self.values.to(logits.device, logits.dtype)
        return logits.index_add(1, ids, values.expand(logits.shape[0], -1))  # (B, V)

    def describe(self) -> str:
        return f"logit_bias on {len(self.ids)} token(s)"


class MinTokens(LogitsProcessor):
    """Ban the end-of-sequence ids and stop_token_ids while fewer than min_tokens were generated.

    min_tokens=2, banned_ids=[0]: steps 0 and 1 cannot pick token 0; step 2 can.
    """

    name = "min_tokens"

    def __init__(self, min_tokens: int, banned_ids: Sequence[int], vocab_size: int):
        self.min_tokens = check_int("min_tokens", min_tokens, 1)
        vocab_size = check_int("vocab_size", vocab_size, 1)
        ids = check_token_ids("banned_ids", banned_ids)
        if not ids or max(ids) >= vocab_size:
            raise InvalidArgument(f"min_tokens needs EOS or stop token ids in [0, {vocab_size - 1}], got {ids}")
        self.banned = torch.zeros(vocab_size, dtype=torch.bool)  # (V,)
        self.banned[list(ids)] = True

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        lengths = torch.tensor([len(ids) for ids in history.output_ids], device=logits.device)  # (B,)
        active = lengths < self.min_tokens  # (B,)
        ban = active[:, None] & self.banned.to(logits.device)[None, :]  # (B, V)
        return logits.masked_fill(ban, NEG_INF)

    def describe(self) -> str:
        return f"min_tokens={self.min_tokens} (bans {int(self.banned.sum())} end id(s))"


def banned_ngram_tokens(sequence: list[int], n: int) -> torch.Tensor:
    """Tokens that would repeat an n-gram of `sequence`: every t with (last n-1 tokens, t) seen before.

    sequence=[5, 6, 7, 5, 6], n=3: the tail (5, 6) was followed by 7, so -> [7].
    n=1 bans every token already in the sequence.
    """
    if len(sequence) < n:
        return torch.empty(0, dtype=torch.long)
    ids = torch.tensor(sequence, dtype=torch.long)  # (L,)
    windows = ids.unfold(0, n, 1)  # (L-n+1, n)
    tail = ids[len(sequence) - n + 1:]  # (n-1,)
    hits = (windows[:, :-1] == tail).all(dim=-1)  # (L-n+1,)
    return windows[hits, -1]


class NoRepeatNGram(LogitsProcessor):
    """Forbid any token that would complete an n-gram already present in prompt + output.

    Covers the prompt as Hugging Face does for decoder-only models.
    """

    name = "no_repeat_ngram"

    def __init__(self, n: int):
        self.n = check_int("no_repeat_ngram_size", n, 1)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        ban = torch.zeros_like(logits, dtype=torch.bool)  # (B, V)
        for row in range(logits.shape[0]):
            ban[row, banned_ngram_tokens(history.sequence(row), self.n).to(logits.device)] = True
        return logits.masked_fill(ban, NEG_INF)

    def describe(self) -> str:
        return f"no_repeat_ngram_size={self.n}"


class RepetitionPenalty(LogitsProcessor):
    """CTRL repetition penalty θ on every token seen in the prompt or the output.

    s_i = l_i / θ if l_i > 0 else l_i · θ (a 0 logit stays 0), once per token however
    often it occurred. θ > 1 discourages repeats, θ < 1 encourages them. Coverage is
    prompt + output, as in Hugging Face (decoder-only) and vLLM.
    θ=2: logits [4, -1] of seen tokens -> [2, -2].
    """

    name = "repetition_penalty"

    def __init__(self, penalty: float):
        self.penalty = check_float("repetition_penalty", penalty, 0.0, None, low_open=True)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)  # (B, V)
        return torch.where(history.seen_mask().to(logits.device), penalised, logits)

    def describe(self) -> str:
        return f"repetition_penalty={self.penalty:g} (prompt + output)"


class PresencePenalty(LogitsProcessor):
    """s_i = l_i − α · [count_i > 0], count_i over the generated tokens only (OpenAI, vLLM)."""

    name = "presence_penalty"

    def __init__(self, penalty: float):
        self.penalty = check_float("presence_penalty", penalty)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        present = history.output_counts.to(logits.device) > 0  # (B, V)
        return logits - self.penalty * present.to(logits.dtype)

    def describe(self) -> str:
        return f"presence_penalty={self.penalty:g} (output only)"


class FrequencyPenalty(LogitsProcessor):
    """s_i = l_i − β · count_i, count_i over the generated tokens only (OpenAI, vLLM).

    β=0.5, a token generated 3 times: its logit drops by 1.5.
    """

    name = "frequency_penalty"

    def __init__(self, penalty: float):
        self.penalty = check_float("frequency_penalty", penalty)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        counts = history.output_counts.to(logits.device, logits.dtype)  # (B, V)
        return logits - self.penalty * counts

    def describe(self) -> str:
        return f"frequency_penalty={self.penalty:g} (output only)"


class Temperature(LogitsProcessor):
    """s_i = l_i / T, so P_i = exp(l_i/T) / Σ_j exp(l_j/T).

    Logits [10, 5, 1]: T=1 -> P ≈ [0.9932, 0.0067, 0.0001]; T=2 -> [0.9148, 0.0751, 0.0102].
    T → 0 approaches argmax (greedy is handled by the sampler, not here).
    """

    name = "temperature"
    value_only = True

    def __init__(self, temperature: float):
        self.temperature = check_float("temperature", temperature, 0.0, None, low_open=True)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature

    def describe(self) -> str:
        return f"temperature={self.temperature:g}"


class TopK(LogitsProcessor):
    """Keep the k highest scores (torch.topk, no full sort).

    ties="lowest_id": exactly k tokens; at the k-th value the lowest ids win.
    ties="all": every token equal to the k-th value survives (Hugging Face, vLLM).
    k=2, logits [3, 1, 3, 3]: lowest_id keeps ids {0, 2}; all keeps {0, 2, 3}.
    """

    name = "top_k"
    narrows = True  # k ≪ V scores survive: what follows can run on those columns alone

    def __init__(self, k: int, ties: str = "lowest_id"):
        self.k = check_int("top_k", k, 1)
        self.ties = _check_ties(ties)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        k = min(self.k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
        if self.ties == "all":
            return logits.masked_fill(logits < kth, NEG_INF)
        tied = logits == kth  # (B, V)
        # count_nonzero: a bool tensor's sum would first copy it to int64
        room = k - torch.count_nonzero(logits > kth, dim=-1)[:, None]  # (B, 1) places left for tied tokens
        if bool((torch.count_nonzero(tied, dim=-1)[:, None] <= room).all()):  # no row has more ties than room
            return logits.masked_fill(logits < kth, NEG_INF)
        keep = (logits > kth) | (tied & (tied.cumsum(dim=-1) <= room))  # (B, V)
        return logits.masked_fill(~keep, NEG_INF)

    def narrowed(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The kept scores as (B, k) columns with their ids ascending, when no tie crosses the k-th
        place in any row (the (k+1)-th best strictly below the k-th: exactly the top k survive under
        either tie rule); None otherwise, and the full step decides."""
        k = self.k
        if k >= logits.shape[-1]:
            return None
        top = torch.topk(logits, k + 1, dim=-1)  # (B, k + 1) best first
        if not bool((top.values[:, k] < top.values[:, k - 1]).all()):
            return None
        ids = top.indices[:, :k].sort(dim=-1).values  # (B, k): the k best, whatever their order in top
        return logits.gather(-1, ids), ids

    def describe(self) -> str:
        return f"top_k={self.k} (ties: {self.ties})"


def _drop_sorted(logits: torch.Tensor, drop: torch.Tensor, order: torch.Tensor,
                 ids: torch.Tensor | None) -> torch.Tensor:
    """Set to -inf the tokens marked in `drop`, a mask in sorted order (order indexes the candidates)."""
    positions = order if ids is None else ids.gather(-1, order)  # (B, m) token ids in sorted order
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, positions, ~drop)  # (B, V)
    return logits.masked_fill(~keep, NEG_INF)


class TopP(LogitsProcessor):
    """Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches p.

    With tokens ranked best first, token r is kept iff Σ_{j≥r} P_(j) > 1 − p (its
    tail, itself included, still exceeds 1 − p), i.e. iff the mass strictly above it
    is below p: the token that crosses p is kept, the best token always is, and so are
    the min_keep best. Masses are float64 sums of float64 probabilities, so the kept set
    is the exact one up to float64 rounding; Hugging Face's and vLLM's test is the same
    on float32 sums, which can differ when the mass above a token is within ~1e-7 of p.
    Ties at the boundary: lowest ids win (HF and vLLM leave that to an unstable sort).
    p=1 keeps everything.
    P=[0.5, 0.3, 0.2], p=0.7 -> keeps the first two (0.5 < 0.7, 0.8 ≥ 0.7).
    """

    name = "top_p"
    value_only = True
    narrows = True  # when the probe decides, at most max(NUCLEUS_PROBES) columns survive

    def __init__(self, p: float, min_keep: int = 0):
        self.p = check_float("top_p", p, 0.0, 1.0, low_open=True)
        self.min_keep = check_int("min_keep", min_keep, 0)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:
            return logits
        probs = logits.double().softmax(dim=-1)  # (B, V) float64
        probe = nucleus_probe(probs, self.p, self.min_keep)
        if probe is not None:
            probs, order, ids, rest = probe
            return _drop_sorted(logits, self._drop(probs, rest), order, ids)
        return self._full_rows(logits, probs)

    def narrowed(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The same step as (B, M) columns (ids ascending, dropped ones -inf) when the probe decides
        every row, so that what follows (the draw above all) reads M columns, not V; else the full
        step, narrowed where few survive (columns.narrow). The kept set is the one __call__ keeps."""
        if self.p == 1.0:
            return None
        probs = logits.double().softmax(dim=-1)  # (B, V) float64
        probe = nucleus_probe(probs, self.p, self.min_keep)
        if probe is None:
            return narrow(self._full_rows(logits, probs))
        probs, order, ids, rest = probe
        keep = torch.zeros_like(order, dtype=torch.bool).scatter_(-1, order, ~self._drop(probs, rest))
        return logits.gather(-1, ids).masked_fill(~keep, NEG_INF), ids

    def _full_rows(self, logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        values, ids = narrow(logits)  # (B, m)
        order = torch.sort(values, dim=-1, descending=True, stable=True).indices  # (B, m) best first
        chosen = probs if ids is None else probs.gather(-1, ids)  # (B, m)
        return _drop_sorted(logits, self._drop(chosen.gather(-1, order).flip(-1)), order.flip(-1), ids)

    def _drop(self, probs: torch.Tensor, rest: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Which candidates go, in sorted order. probs: (B, m) float64 worst first (ties: highest id
        first); rest: the mass outside the candidates."""
        drop = probs.cumsum(dim=-1) + rest <= 1 - self.p  # (B, m): the tail mass from here down
        drop[:, max(drop.shape[-1] - max(self.min_keep, 1), 0):] = False
        return drop

    def describe(self) -> str:
        return f"top_p={self.p:g}"


class MinP(LogitsProcessor):
    """Keep tokens with P_i ≥ p · max_j P_j: the cut follows the model's confidence.

    p=0.1, P=[0.6, 0.1, 0.05, ...]: the threshold is 0.06, so 0.05 goes. The best token
    (and all tied with it) always stays. Same test as Hugging Face and vLLM.
    """

    name = "min_p"
    value_only = True

    def __init__(self, p: float, min_keep: int = 0):
        self.p = check_float("min_p", p, 0.0, 1.0)
        self.min_keep = check_int("min_keep", min_keep, 0)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)  # (B, V)
        threshold = self.p * probs.amax(dim=-1, keepdim=True)  # (B, 1)
        remove = probs < threshold  # (B, V)
        if self.min_keep > 1:  # spare the min_keep best
            kth = torch.topk(logits, min(self.min_keep, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
            remove &= logits < kth
        return logits.masked_fill(remove, NEG_INF)

    def describe(self) -> str:
        return f"min_p={self.p:g}"


class Typical(LogitsProcessor):
    """Locally typical sampling (Meister et al. 2022) with mass p.

    Rank tokens by |−log P_i − H| (H = −Σ P log P, the entropy): how far each token's
    surprise is from the expected surprise. Keep the smallest prefix of that ranking
    whose mass reaches p (the crossing token included; stop="reaches", ours and Hugging
    Face's), or, with stop="exceeds" (llama.cpp's `cum_sum > p`), the shortest prefix
    whose mass exceeds p: on a flat row of 4 tokens and p = 0.5 that is 3 tokens, not 2.
    At least min_keep tokens stay. Unlike top-p it may drop the most likely token when
    that token is far less surprising than usual.
    ties="all": every token as typical as the last kept one survives (Hugging Face);
    ties="lowest_id": exactly the prefix, equal distances broken by lowest id.
    """

    name = "typical_p"
    value_only = True

    def __init__(self, p: float, ties: str = "lowest_id", stop: str = "reaches", min_keep: int = 0):
        self.p = check_float("typical_p", p, 0.0, 1.0, low_open=True)
        self.ties = _check_ties(ties)
        if stop not in TYPICAL_STOPS:
            raise InvalidArgument(f"stop must be one of {', '.join(TYPICAL_STOPS)}, got {stop!r}")
        self.stop = stop
        self.min_keep = check_int("min_keep", min_keep, 0)

    def __call__(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:
            return logits
        values, ids = narrow(logits)  # (B, m)
        log_p = torch.log_softmax(values, dim=-1)  # (B, m)
        entropy = -(log_p * log_p.exp()).nansum(dim=-1, keepdim=True)  # (B, 1)
        distance = (-log_p - entropy).abs()  # (B, m)
        sorted_distance, order = torch.sort(distance, dim=-1, stable=True)  # (B, m) most typical first
        mass = values.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)  # (B, m)
        short = mass < self.p if self.stop == "reaches" else mass <= self.p  # (B, m) prefixes still short of p
        last = short.sum(dim=-1, keepdim=True).clamp(min=self.min_keep - 1, max=values.shape[-1] - 1)  # (B, 1)
        if self.ties == "all":
            drop = sorted_distance > sorted_distance.gather(-1, last)  # (B, m)
        else:
            drop = torch.arange(values.shape[-1], device=logits.device) > last  # (B, m)
        # last >= 0, so the most typical token always survives
        return _drop_sorted(logits, drop, order, ids)

    def describe(self) -> str:
        return f"typical_p={self.p:g} (ties: {self.ties}; stops once the mass {self.stop} p)"
