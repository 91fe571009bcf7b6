"""The sampler: an explicit chain of processors ending in a selector.

    logits ──processors, in the order below──▶ scores ──select──▶ next ids
    select: greedy  -> argmax (ties go to the lowest id)
            sampled -> one draw per row from P = softmax(scores) (inverse CDF),
                       with that row's own torch.Generator

Default order, "tokenloom" (tie rule: lowest id wins):

    logit_bias, min_tokens, no_repeat_ngram,
    repetition_penalty, presence_penalty, frequency_penalty, dry,
    temperature, top_k, top_p, typical_p, min_p

Why this order:
1. The user's edits and hard bans come first: they decide which tokens may appear
   at all, before anything measures probabilities.
2. Penalties act on raw logits, where their formulas are defined (CTRL divides a
   logit, OpenAI and DRY subtract from it), so a penalty means the same at any
   temperature.
3. Temperature comes before the truncation filters, as in Hugging Face, vLLM and the
   OpenAI API: top_p=0.9 then keeps 90% of the mass of the distribution that is
   actually drawn from. (llama.cpp scales last, so there a high temperature never
   lets more tokens through its filters.)
4. Filters go from coarse and cheap to fine: top_k (torch.topk, no full sort) shrinks
   the set; top_p and typical_p need a sort; min_p runs last so that its threshold
   is relative to the best token still standing (typical_p can remove the argmax).
5. Greedy (temperature 0) takes the argmax of the scores after the steps that come
   before temperature; temperature and the filters after it are left out. That is
   what HF (no warpers without do_sample) and vLLM (argmax before temperature) do;
   in llama.cpp's order temperature is last, so its filters still run first.

Peer orders (`SamplingParams(order=...)`), from their sources:
- "hf": transformers' `_get_logits_processor`: sequence bias, repetition penalty,
  no-repeat n-gram, min new tokens; when sampling: temperature, top_k, top_p, min_p,
  typical_p. top_k keeps every token tied at the k-th value; so does typical_p.
  dry (ours) after the penalties.
- "vllm": v1 sampler: min_tokens, logit_bias, repetition, frequency and presence
  penalties; greedy argmax here; then temperature, min_p, top_k, top_p. Ties as HF.
  dry (ours) after the penalties.
- "llama.cpp": the default chain: logit bias, penalties, dry, top_k, typical, top_p,
  min_p, (xtc), temperature, dist. top_k keeps exactly k; we break its ties by lowest
  id (llama.cpp leaves them to an unstable partial sort).
Steps a peer lacks (presence/frequency in HF, dry in HF and vLLM, no-repeat n-gram and
typical_p in vLLM, min_tokens and no-repeat n-gram in llama.cpp) are placed by us;
`Order.describe()` marks them with `*`. Not reproduced: llama.cpp's penalty window
(penalty_last_n=64), its min_p test in logit space (l_i ≥ l_max + ln p, the same set
up to rounding) and its float accumulation order for top_p; HF's and vLLM's choice of
tied tokens at the top_p boundary, which an unstable sort decides.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.dry import dry_from_params
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams, check_int, check_token_ids
from tokenloom.generation.processors import (
    NEG_INF, FrequencyPenalty, LogitBias, LogitsProcessor, MinP, MinTokens, NoRepeatNGram,
    PresencePenalty, RepetitionPenalty, StepExplanation, Temperature, TopK, TopP, Typical,
    explain_change,
)


@dataclass(frozen=True)
class Order:
    """A named processor order: steps in application order, the tie rule of top_k and
    typical_p, and the steps the peer itself does not have (placed by us)."""

    name: str
    steps: tuple[str, ...]
    ties: str
    extensions: frozenset[str] = frozenset()

    def describe(self) -> str:
        return " → ".join(s + ("*" if s in self.extensions else "") for s in self.steps)


ORDERS: dict[str, Order] = {order.name: order for order in (
    Order("tokenloom", ("logit_bias", "min_tokens", "no_repeat_ngram", "repetition_penalty",
                        "presence_penalty", "frequency_penalty", "dry", "temperature", "top_k", "top_p",
                        "typical_p", "min_p"), ties="lowest_id"),
    Order("hf", ("logit_bias", "repetition_penalty", "presence_penalty", "frequency_penalty", "dry",
                 "no_repeat_ngram", "min_tokens", "temperature", "top_k", "top_p", "min_p",
                 "typical_p"), ties="all",
          extensions=frozenset({"presence_penalty", "frequency_penalty", "dry"})),
    Order("vllm", ("min_tokens", "logit_bias", "repetition_penalty", "frequency_penalty",
                   "presence_penalty", "dry", "no_repeat_ngram", "temperature", "min_p", "top_k", "top_p",
                   "typical_p"), ties="all",
          extensions=frozenset({"dry", "no_repeat_ngram", "typical_p"})),
    Order("llama.cpp", ("logit_bias", "min_tokens", "repetition_penalty", "frequency_penalty",
                        "presence_penalty", "no_repeat_ngram", "dry", "top_k", "typical_p", "top_p",
                        "min_p", "temperature"), ties="lowest_id",
          extensions=frozenset({"min_tokens", "no_repeat_ngram"})),
)}


@dataclass(frozen=True)
class _Build:
    """What a step builder may read besides the params."""

    vocab_size: int
    end_ids: tuple[int, ...]
    ties: str
    tokenizer: object | None = None  # token texts, for DRY's sequence breakers


Builder = Callable[[SamplingParams, _Build], LogitsProcessor | None]

# One line per step: the processor for these params, or None when the step is a no-op.
BUILDERS: dict[str, Builder] = {
    "logit_bias": lambda p, b: LogitBias(p.logit_bias, b.vocab_size) if p.logit_bias else None,
    "min_tokens": lambda p, b: MinTokens(p.min_tokens, b.end_ids, b.vocab_size)
    if p.min_tokens and b.end_ids else None,
    "no_repeat_ngram": lambda p, b: NoRepeatNGram(p.no_repeat_ngram_size) if p.no_repeat_ngram_size else None,
    "repetition_penalty": lambda p, b: RepetitionPenalty(p.repetition_penalty)
    if p.repetition_penalty != 1.0 else None,
    "presence_penalty": lambda p, b: PresencePenalty(p.presence_penalty) if p.presence_penalty else None,
    "frequency_penalty": lambda p, b: FrequencyPenalty(p.frequency_penalty) if p.frequency_penalty else None,
    "dry": lambda p, b: dry_from_params(p, b.tokenizer),
    "temperature": lambda p, b: Temperature(p.temperature) if p.temperature not in (0.0, 1.0) else None,
    "top_k": lambda p, b: TopK(p.top_k, b.ties) if 0 < p.top_k < b.vocab_size else None,
    "top_p": lambda p, b: TopP(p.top_p) if p.top_p < 1.0 else None,
    "typical_p": lambda p, b: Typical(p.typical_p, b.ties) if p.typical_p < 1.0 else None,
    "min_p": lambda p, b: MinP(p.min_p) if p.min_p > 0.0 else None,
}


def seeded_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A torch.Generator seeded with `seed`, or None (the global RNG) when seed is None."""
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


class Sampler:
    """Turns (B, V) logits into (B,) next ids under one SamplingParams.

    tokenizer: needed only by DRY's sequence breakers (strings found in the vocabulary).
    sampler.processors is the chain actually applied, no-op steps left out:
    >>> Sampler(SamplingParams(top_k=50, temperature=0.8), vocab_size=100).describe()
    'temperature=0.8 → top_k=50 (ties: lowest_id) → draw'
    """

    def __init__(self, params: SamplingParams, vocab_size: int, eos_token_ids: Sequence[int] = (),
                 tokenizer=None):
        self.params = params
        self.vocab_size = check_int("vocab_size", vocab_size, 1)
        self.eos_token_ids = check_token_ids("eos_token_ids", eos_token_ids)
        end_ids = tuple(dict.fromkeys(self.eos_token_ids + params.stop_token_ids))
        if any(t >= vocab_size for t in end_ids):
            raise InvalidArgument(f"eos_token_ids and stop_token_ids must be < vocab_size {vocab_size}, "
                                  f"got {end_ids}")
        self.order = ORDERS[params.order]
        steps = self.order.steps
        if params.greedy:  # greedy: argmax before temperature; later steps left out
            steps = steps[:steps.index("temperature")]
        build = _Build(self.vocab_size, end_ids, self.order.ties, tokenizer)
        self.processors: list[LogitsProcessor] = [
            proc for proc in (BUILDERS[step](params, build) for step in steps) if proc is not None]

    def describe(self) -> str:
        """The chain in one line, e.g. 'repetition_penalty=1.2 (prompt + output) → greedy'."""
        return " → ".join([p.describe() for p in self.processors] + [self._selector_name()])

    def _selector_name(self) -> str:
        return "greedy" if self.params.greedy else "draw"

    def process(self, history: TokenHistory, logits: torch.Tensor) -> torch.Tensor:
        """Apply the chain: (B, V) logits -> (B, V) float32 scores, removed tokens at -inf."""
        scores = logits.float()  # (B, V)
        for processor in self.processors:
            scores = processor(history, scores)  # (B, V)
        return scores

    def select(self, scores: torch.Tensor, generators: Sequence[torch.Generator | None] | None = None
               ) -> torch.Tensor:
        """Pick one id per row: argmax when greedy (lowest id on ties), else a seeded draw.

        The draw is by inverse CDF: u ~ U[0, 1) from the row's own generator, then the
        first token i with Σ_{j≤i} P_j > u (float64 sums), P = softmax(scores[row]). It is
        the same categorical distribution torch.multinomial samples, one batched pass
        instead of a kernel per row, and a row's token never depends on the other rows.
        P = [0.2, 0.5, 0.3], u = 0.6: cumulative [0.2, 0.7, 1.0] -> token 1.
        """
        if self.params.greedy:
            return scores.argmax(dim=-1)  # (B,) first maximum = lowest id
        generators = [None] * scores.shape[0] if generators is None else list(generators)
        if len(generators) != scores.shape[0]:
            raise InvalidArgument(f"select needs one generator (or None) per row: "
                                  f"{scores.shape[0]} rows, got {len(generators)}")
        cdf = scores.softmax(dim=-1).double().cumsum(dim=-1)  # (B, V)
        u = torch.cat([torch.rand(1, generator=gen, dtype=torch.float64, device=scores.device)
                       for gen in generators])  # (B,)
        picks = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True)  # (B, 1)
        last_possible = (cdf < cdf[:, -1:]).sum(dim=-1, keepdim=True)  # (B, 1) rounding guard
        return torch.minimum(picks, last_possible).squeeze(-1)  # (B,)

    def __call__(self, history: TokenHistory, logits: torch.Tensor,
                 generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
        """process then select: (B, V) logits -> (B,) next ids."""
        return self.select(self.process(history, logits), generators)

    def explain(self, history: TokenHistory, logits_row: torch.Tensor, top: int = 10) -> list[StepExplanation]:
        """What each step of the chain does to one row, then what the selector does.

        history: of batch size 1 (use history.rows([i]) for row i); logits_row: (V,).
        Returns one StepExplanation per processor plus a last one, 'greedy' or 'draw'.
        """
        if history.batch_size != 1:
            raise InvalidArgument(f"explain takes the history of one row (history.rows([i])), "
                                  f"got batch size {history.batch_size}")
        scores = logits_row.reshape(1, -1).float()  # (1, V)
        steps = []
        for processor in self.processors:
            after = processor(history, scores)  # (1, V)
            steps.append(explain_change(processor.name, processor.describe(), scores[0], after[0], top))
            scores = after
        steps.append(self._explain_selector(scores[0], top))
        return steps

    def _explain_selector(self, scores: torch.Tensor, top: int) -> StepExplanation:
        if self.params.greedy:
            after = torch.full_like(scores, NEG_INF)  # (V,)
            after[scores.argmax()] = 0.0
            return explain_change("greedy", "argmax; ties go to the lowest id", scores, after, top)
        seed = self.params.seed
        detail = "draw from softmax(scores)" + ("" if seed is None else f" with seed {seed}")
        return explain_change("draw", detail, scores, scores, top)
