"""The sampler: an explicit chain of processors ending in a selector.

    logits ──processors, in the order below──▶ scores ──select──▶ next ids
    select: greedy  -> argmax (ties go to the lowest id)
            sampled -> one draw per row from P = softmax(scores) (inverse CDF),
                       with that row's own torch.Generator

Default order, "tokenloom" (tie rule: lowest id wins):

    logit_bias, min_tokens, no_repeat_ngram,
    repetition_penalty, presence_penalty, frequency_penalty, dry,
    temperature, top_n_sigma, top_k, top_p, typical_p, epsilon_cutoff, eta_cutoff,
    min_p, xtc

`SamplingParams(samplers=[...])` replaces the order with one of the user's choosing
(chains.py: names, rules, errors); mirostat = 1|2 replaces it by temperature → mirostat.
A structured-output constraint (json_schema, regex, ...; structured.py) masks the
forbidden tokens before every chain, whichever it is: the steps after it see only
tokens the constraint allows, so none can leave a row with nothing to draw.

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
4. Filters go from coarse and cheap to fine: top_n_sigma (a threshold on logits) and
   top_k (torch.topk, no full sort) shrink the set; top_p and typical_p need a sort;
   the absolute cutoffs (epsilon, eta) follow; min_p runs after them so that its
   threshold is relative to the best token still standing (typical_p can remove the
   argmax); XTC comes last, since "the top choices" means those still standing.
5. Greedy (temperature 0) takes the argmax of the scores after the steps that come
   before temperature; temperature and the filters after it are left out. That is
   what HF (no warpers without do_sample) and vLLM (argmax before temperature) do;
   in llama.cpp's order temperature is last, so its filters still run first.

Peer orders (`SamplingParams(order=...)`) are presets of chains.py, from their sources:
- "hf": transformers' `_get_logits_processor`: sequence bias, repetition penalty,
  no-repeat n-gram, min new tokens; when sampling: temperature, top_k, top_p, min_p,
  typical_p, epsilon, eta. top_k keeps every token tied at the k-th value; so does
  typical_p. An unset top_k is 50, as transformers' GenerationConfig has it.
- "vllm": v1 sampler: min_tokens, logit_bias, repetition, frequency and presence
  penalties; greedy argmax here; then temperature, min_p, top_k, top_p. Ties as HF.
- "llama.cpp": its common sampler's default chain: logit bias, penalties, dry,
  top_n_sigma, top_k, typical, top_p, min_p, xtc, temperature (dynamic when
  dynatemp_range > 0), dist; mirostat = 1|2 makes it temperature → mirostat. Its rules:
  penalties over the last penalty_last_n = 64 tokens of prompt + output in one step;
  typical_p stops once the mass exceeds p; top_k keeps exactly k, ties by lowest id
  (llama.cpp leaves them to an unstable sort).
Steps a peer lacks are placed by us; `Preset.describe()` marks them with `*`. Not
reproduced: llama.cpp's min_p test in logit space (l_i ≥ l_max + ln p, the same set up
to rounding) and its float32 accumulation for top_p; HF's and vLLM's choice of tied
tokens at the top_p boundary, which an unstable sort decides.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.chains import PRESETS, Preset, chain_steps
from tokenloom.generation.columns import narrow, widen
from tokenloom.generation.constraints import constraint_of
from tokenloom.generation.cutoffs import EpsilonCutoff, EtaCutoff
from tokenloom.generation.dry import dry_from_params
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.llamacpp_samplers import (
    XTC, DynamicTemperature, LlamaTypical, Mirostat, Penalties, TopNSigma,
)
from tokenloom.generation.params import SamplingParams, check_int, check_token_ids
from tokenloom.generation.processors import (
    NEG_INF, FrequencyPenalty, LogitBias, LogitsProcessor, MinP, MinTokens, NoRepeatNGram,
    PresencePenalty, RepetitionPenalty, StepExplanation, Temperature, TopK, TopP, Typical,
    explain_change,
)
from tokenloom.generation.structured import StructuredOutput

ORDERS: dict[str, Preset] = PRESETS  # the presets, by the name SamplingParams.order takes
Order = Preset


@dataclass(frozen=True)
class _Build:
    """What a step builder may read besides the params."""

    vocab_size: int
    end_ids: tuple[int, ...]
    preset: Preset
    tokenizer: object | None = None  # token texts, for DRY's sequence breakers

    @property
    def ties(self) -> str:
        return self.preset.ties


def top_k_of(params: SamplingParams, preset: Preset) -> int:
    """The top_k in force: the params' own, or the preset's default when unset."""
    return preset.top_k if params.top_k is None else params.top_k


def penalty_window(params: SamplingParams, preset: Preset) -> int:
    """The penalties' window in force: the params' own, or the preset's default when unset."""
    return preset.penalty_last_n if params.penalty_last_n is None else params.penalty_last_n


def _temperature(p: SamplingParams, b: _Build) -> LogitsProcessor | None:
    if p.dynatemp_range > 0.0 and p.temperature > 0.0 and not p.mirostat:
        return DynamicTemperature(p.temperature, p.dynatemp_range, p.dynatemp_exponent)
    return Temperature(p.temperature) if p.temperature not in (0.0, 1.0) else None


def _penalties(p: SamplingParams, b: _Build) -> LogitsProcessor | None:
    window = penalty_window(p, b.preset)
    if window == 0 or (p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty):
        return None
    return Penalties(window, p.repetition_penalty, p.frequency_penalty, p.presence_penalty)


Builder = Callable[[SamplingParams, _Build], LogitsProcessor | None]

# One line per step: the processor for these params, or None when the step is a no-op.
BUILDERS: dict[str, Builder] = {
    "structured": lambda p, b: StructuredOutput(constraint_of(p), b.tokenizer, b.end_ids)
    if constraint_of(p) is not None else None,
    "logit_bias": lambda p, b: LogitBias(p.logit_bias, b.vocab_size) if p.logit_bias else None,
    "min_tokens": lambda p, b: MinTokens(p.min_tokens, b.end_ids, b.vocab_size)
    if p.min_tokens and b.end_ids else None,
    "no_repeat_ngram": lambda p, b: NoRepeatNGram(p.no_repeat_ngram_size) if p.no_repeat_ngram_size else None,
    "repetition_penalty": lambda p, b: RepetitionPenalty(p.repetition_penalty)
    if p.repetition_penalty != 1.0 else None,
    "presence_penalty": lambda p, b: PresencePenalty(p.presence_penalty) if p.presence_penalty else None,
    "frequency_penalty": lambda p, b: FrequencyPenalty(p.frequency_penalty) if p.frequency_penalty else None,
    "penalties": _penalties,
    "dry": lambda p, b: dry_from_params(p, b.tokenizer),
    "temperature": _temperature,
    "top_n_sigma": lambda p, b: TopNSigma(p.top_n_sigma) if p.top_n_sigma > 0.0 else None,
    "top_k": lambda p, b: TopK(top_k_of(p, b.preset), b.ties)
    if 0 < top_k_of(p, b.preset) < b.vocab_size else None,
    "top_p": lambda p, b: TopP(p.top_p, p.min_keep) if p.top_p < 1.0 else None,
    "typical_p": lambda p, b: (LlamaTypical(p.typical_p, p.min_keep) if b.preset.typical_stop == "exceeds"
                               else Typical(p.typical_p, b.ties, b.preset.typical_stop, p.min_keep))
    if p.typical_p < 1.0 else None,
    "min_p": lambda p, b: MinP(p.min_p, p.min_keep) if p.min_p > 0.0 else None,
    "epsilon_cutoff": lambda p, b: EpsilonCutoff(p.epsilon_cutoff, p.min_keep) if p.epsilon_cutoff else None,
    "eta_cutoff": lambda p, b: EtaCutoff(p.eta_cutoff, p.min_keep) if p.eta_cutoff else None,
    "xtc": lambda p, b: XTC(p.xtc_probability, p.xtc_threshold, p.min_keep)
    if p.xtc_probability > 0.0 and p.xtc_threshold <= 0.5 else None,
    "mirostat": lambda p, b: Mirostat(p.mirostat, p.mirostat_tau, p.mirostat_eta, b.vocab_size)
    if p.mirostat else None,
}


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
        self.preset = self.order = PRESETS[params.order]
        build = _Build(self.vocab_size, end_ids, self.preset, tokenizer)
        self.steps = chain_steps(params.samplers, self.preset, params.mirostat, params.greedy)
        self.processors: list[LogitsProcessor] = [
            proc for proc in (BUILDERS[step](params, build) for step in self.steps) if proc is not None]

    def describe(self) -> str:
        """The chain in one line, e.g. 'repetition_penalty=1.2 (prompt + output) → greedy'."""
        return " → ".join([p.describe() for p in self.processors] + [self._selector_name()])

    def _selector_name(self) -> str:
        return "greedy" if self.params.greedy else "draw"

    def process(self, history: TokenHistory, logits: torch.Tensor,
                generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
        """Apply the chain: (B, V) logits -> (B, V) float32 scores, removed tokens at -inf.

        generators: one per row (None: torch's global one), for the steps that draw (XTC).
        """
        scores, ids = self._chain(history, logits, generators)
        return scores if ids is None else widen(scores, ids, self.vocab_size)

    def _chain(self, history: TokenHistory, logits: torch.Tensor,
               generators: Sequence[torch.Generator | None] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The chain's scores, narrowed where it can be: (B, m) scores and their ids (B, m), or (B, V), None.

        After top-k 40 a row of 49,152 has 40 finite scores (after top-p's probe, at most its
        8192 candidates), and every later step of the usual chains (top-p, min-p, typical,
        temperature) and the draw look at scores alone: those run on the m surviving
        columns, ids ascending so that ties still go to the lowest id,
        instead of full rows (docs/performance.md, "Serving", measures the saving). A step that
        needs token ids or the history gets full rows back first.
        """
        if generators is not None:
            history.generators = list(generators)
        scores, ids = logits.float(), None  # (B, V)
        steps = self.processors
        for i, processor in enumerate(steps):
            if ids is not None and not processor.value_only:
                scores, ids = widen(scores, ids, self.vocab_size), None
            later = steps[i + 1:]
            if ids is None and processor.narrows and all(p.value_only for p in later):  # the draw reads columns too
                quick = processor.narrowed(scores)  # top-k's survivors straight from its own ranking
                scores, ids = quick if quick is not None else narrow(processor(history, scores))
                continue
            scores = processor(history, scores)
        return scores, ids

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
        """process then select: (B, V) logits -> (B,) next ids; stateful steps (mirostat) then
        accept the chosen ids, as llama.cpp's samplers do. A narrowed chain selects among its
        columns: the same token, since removed tokens add exact zeros to the draw's sums."""
        scores, ids = self._chain(history, logits, generators)  # (B, m) or (B, V)
        picks = self.select(scores, generators)  # (B,)
        tokens = picks if ids is None else ids.gather(-1, picks[:, None]).squeeze(-1)
        accepting = [p for p in self.processors if getattr(p, "accept", None) is not None]
        if accepting:
            full = scores if ids is None else widen(scores, ids, self.vocab_size)
            for processor in accepting:
                processor.accept(history, full, tokens)
        return tokens

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
